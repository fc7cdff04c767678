"""One wire: a natsbus worker and a pipecat worker (another OS process) on one channel.

The natsbus side runs here, on natsbus's own NatsBus, BaseWorker and BusClient; the pipecat
side is tests/peers/pipecat_peer.py on natsbus.pipecat.NatsBus. Each answers the other's job,
with its updates and stream, through the same proto/ schema.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from natsbus import (
    BaseWorker,
    BusActivateWorkerMessage,
    BusEndWorkerMessage,
    BusFrameMessage,
    BusJobRequestMessage,
    BusMessage,
    BusSubscriber,
    NatsBus,
    WorkerRunner,
    connect,
    job,
)
from natsbus.frames import (
    FrameDirection,
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
)

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


class FrameWatcher(BusSubscriber):
    def __init__(self) -> None:
        self.frames: list[BusFrameMessage] = []
        self.arrived = asyncio.Event()

    @property
    def name(self) -> str:
        return "nb-watcher"

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusFrameMessage) and message.source != "nb-sender":
            self.frames.append(message)
            self.arrived.set()


async def test_frames_and_lifecycle_cross_between_natsbus_and_a_pipecat_pipeline(
    peers: PipecatPeers,
) -> None:
    listener = await peers.start("listener", ready="READY")
    watcher = FrameWatcher()
    async with NatsBus(servers=peers.url, channel=peers.channel) as bus:
        await bus.subscribe(watcher)
        down = FrameDirection.DOWNSTREAM
        frames = [
            TranscriptionFrame("heard", "user-9", "2026-12-02T00:00:00Z", language="fr-FR"),
            TextFrame("from natsbus"),
            OutputAudioRawFrame(b"\x07" * 320, 16000, 1),
        ]
        for frame in frames:
            await bus.send(BusFrameMessage(frame, down, source="nb-sender"))
        await listener.wait_for("FRAME OutputAudioRawFrame", 20)
        assert listener.found("FRAME") == [
            "FRAME TranscriptionFrame heard|user-9|fr-FR",
            "FRAME TextFrame from natsbus",
            "FRAME OutputAudioRawFrame 320|16000|1|b'\\x07'",
        ]
        # The pipecat pipeline's answer comes back upstream as natsbus's own TextFrame.
        await asyncio.wait_for(watcher.arrived.wait(), 20)
        [echo] = watcher.frames
        assert (echo.source, echo.direction) == ("listener", FrameDirection.UPSTREAM)
        assert echo.frame == TextFrame("echo: from natsbus")
        # A natsbus message ends the pipecat worker; its runner then ends its process.
        await bus.send(BusEndWorkerMessage(source="nb-sender", target="listener", reason="done"))
        assert await listener.wait(30) == 0


async def test_an_inactive_pipecat_worker_takes_its_job_once_activated(
    peers: PipecatPeers,
) -> None:
    worker = await peers.start("worker", "--inactive", ready="RUNNING")
    async with connect(peers.url, channel=peers.channel) as client:
        payload = {"text": "wait for it"}
        async with client.job("translator", name="translate", payload=payload) as handle:
            # Stored, not taken: an inactive worker does not pull (pipecat would drop it).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(aiter(handle)), 1.5)
            assert worker.count("READY") == 0
            await client.publish(BusActivateWorkerMessage(source=client.name, target="translator"))
            events = [event.type async for event in handle]
    assert worker.count("READY") == 1
    assert events == ["update", "stream_start", *["stream_data"] * 3, "stream_end"]
    assert handle.response == {"text": "WAIT FOR IT", "pid": worker.pid}
