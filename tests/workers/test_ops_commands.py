"""``natsbus jobs`` and ``natsbus dlq`` print the true state of a scene on a real nats-server.

The scene: two workers (``payments``, on two replicas, and ``inventory``), a request waiting
for a worker nobody runs (``ledger``), and a request given up after its last attempt.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, JobError, JobParams, job

from helpers.process import Peer
from helpers.workers import Requester, running, within

# One attempt: a request whose bus stops before answering is given up on its next delivery.
OPTIONS = JetStreamOptions(ack_wait=5, max_attempts=1)


class Gate(BaseWorker):
    """``pay`` waits until the test opens the gate."""

    def __init__(self, name: str = "payments") -> None:
        super().__init__(name)
        self.took: list[str] = []
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    @job(name="pay")
    async def pay(self, message: BusJobRequestMessage) -> Payload:
        self.took.append(message.job_id)
        self.waiting.set()
        await self.gate.wait()
        return {"paid": True}


async def run_cli(*argv: str) -> str:
    """Run ``natsbus ARGV`` in a process of its own, as an operator would; its output."""
    command = Peer("natsbus", *argv, merge_stderr=False)
    await command.start(ready=None)
    assert await command.wait(30) == 0, command.lines
    return "\n".join(command.lines) + "\n"


def table(output: str) -> dict[str, list[str]]:
    lines = output.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:]}


async def test_jobs_and_dlq_show_waiting_running_and_dead_lettered_requests(
    nats_url: str,
) -> None:
    channel = f"ops-{uuid.uuid4().hex[:8]}"
    where = ["--nats-url", nats_url, "--channel", channel]

    def bus() -> NatsBus:
        return NatsBus(servers=nats_url, channel=channel, jetstream_options=OPTIONS)

    first, second, client = Gate(), Gate(), Requester("checkout")
    first_bus = bus()
    async with (
        running(Gate("inventory"), bus=bus()),
        running(first, bus=first_bus) as first_runner,
        running(client, bus=bus()),
    ):
        # Nobody runs "ledger": its request waits in the stream.
        waiting = asyncio.ensure_future(
            client.request_job("ledger", params=JobParams(name="post", wait_ready=False))
        )
        # The only replica takes "pay"; a second one joins; the first's bus goes away before
        # it answers, and the next delivery, to the second, is past max_attempts: given up.
        asking = asyncio.ensure_future(_ask(client))
        await within(first.waiting.wait())
        running_jobs = table(await run_cli("jobs", *where))
        assert running_jobs["payments"][1:5] == ["1", "0", "1", "0"]  # stored, waiting, running
        status = (await run_cli("status", *where)).splitlines()
        assert status[0].split()[:2] == ["worker", "runner"]
        by_worker = {line.split()[0]: line.split() for line in status[1:]}
        assert sorted(by_worker) == ["checkout", "inventory", "payments"]
        assert by_worker["payments"][1] == first_runner.name
        assert by_worker["payments"][-1] == "1"  # its one job running
        assert by_worker["inventory"][-2] != "no"  # pulling: a live bus asks for its jobs
        assert by_worker["checkout"][-3:] == ["no", "consumer", "0"]  # runs no jobs
        async with running(second, bus=bus()):
            await first_bus.stop()
            with pytest.raises(JobError, match="not completed after 1 deliveries"):
                await within(asking, 15)
            job_id = first.took[0]
            await waiting

            rows = table(await run_cli("jobs", *where))
            assert sorted(rows) == ["inventory", "ledger", "payments"]
            # Delivered twice, then given up: nothing stored or running, one dead letter.
            assert rows["payments"][1:] == ["0", "0", "0", "0", "-", "1"]
            assert rows["ledger"][1:4] == ["1", "no", "consumer"]
            assert rows["inventory"][1:3] == ["0", "0"]
            report = json.loads(await run_cli("jobs", *where, "--json"))
            ledger = next(r for r in report if r["worker"] == "ledger")
            assert ledger["waiting"] is None and ledger["oldest_age"] >= 0

            letters = (await run_cli("dlq", "list", *where)).splitlines()
            assert len(letters) == 2 and job_id in letters[1] and "checkout" in letters[1]
            sequence = letters[1].split()[0]
            shown = json.loads(await run_cli("dlq", "show", sequence, *where))
            assert shown["job_id"] == job_id and shown["payload"] == {"amount": 7}
            assert shown["deliveries"] == 1 and shown["job_name"] == "pay"
            # Sent again: the remaining replica runs it, and the dead letter is gone.
            assert "replayed" in await run_cli("dlq", "replay", sequence, *where)
            await within(second.waiting.wait())
            second.gate.set()
            assert second.took == [job_id]
            assert "no dead letters" in await run_cli("dlq", "list", *where)


async def _ask(client: Requester) -> Any:
    async with client.job("payments", name="pay", payload={"amount": 7}) as j:
        pass
    return j.response
