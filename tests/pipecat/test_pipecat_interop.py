"""One wire: a natsbus worker and a pipecat worker (another OS process) on one channel.

The natsbus side runs here, on natsbus's own NatsBus, BaseWorker and BusClient; the pipecat
side is tests/peers/pipecat_peer.py on natsbus.pipecat.NatsBus. Each answers the other's job,
with its updates and stream, through the same proto/ schema.
"""

from __future__ import annotations

import asyncio
import json

from natsbus import BaseWorker, BusJobRequestMessage, NatsBus, WorkerRunner, connect, job

from helpers.pipecat import PipecatPeers


class NatsbusTranslator(BaseWorker):
    @job(name="translate")
    async def translate(self, message: BusJobRequestMessage) -> dict[str, object]:
        assert message.payload is not None
        await self.send_job_update(message.job_id, {"progress": 0.5, "big": 2**40})
        return {"text": message.payload["text"].upper(), "by": "natsbus"}


async def test_a_natsbus_worker_answers_a_pipecat_workers_job(peers: PipecatPeers) -> None:
    bus = NatsBus(servers=peers.url, channel=peers.channel)
    runner = WorkerRunner(bus=bus, handle_signals=False)
    await runner.add_workers(NatsbusTranslator("nb-translator"))
    serving = asyncio.create_task(runner.run())
    try:
        await runner.registry.wait_ready(["nb-translator"])
        requester = await peers.start("requester", "--target", "nb-translator")
        response = await requester.wait_for("RESPONSE", 30)
        assert requester.found("EVENT") == ['EVENT update {"big": 1099511627776, "progress": 0.5}']
        assert json.loads(response.removeprefix("RESPONSE ")) == {
            "text": "HELLO BIG WORLD",
            "by": "natsbus",
        }
    finally:
        await runner.end("done")
        await asyncio.wait_for(serving, 20)


async def test_a_pipecat_worker_answers_a_natsbus_clients_job(peers: PipecatPeers) -> None:
    worker = await peers.start("worker", ready="READY")
    async with connect(peers.url, channel=peers.channel) as client:
        payload = {"text": "hello big world"}
        async with client.job("translator", name="translate", payload=payload) as handle:
            events = [(event.type, event.data) async for event in handle]
    assert events == [
        ("update", {"progress": 0.5, "big": 2**40}),
        ("stream_start", {"kind": "words"}),
        ("stream_data", {"word": "HELLO"}),
        ("stream_data", {"word": "BIG"}),
        ("stream_data", {"word": "WORLD"}),
        ("stream_end", {"text": "HELLO BIG WORLD", "pid": worker.pid}),
    ]
    assert handle.response == {"text": "HELLO BIG WORLD", "pid": worker.pid}
