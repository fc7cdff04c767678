"""A NatsBus takes a worker's job requests only while that worker is ready to run them."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.messages import BusJobRequestMessage, JobStatus, Payload
from natsbus.workers import BaseWorker, JobParams, job

from helpers.workers import Client, running, within

QUEUED = 500


class SlowStart(BaseWorker):
    """Loads a model for ``setup_seconds`` before it can run anything."""

    def __init__(self, name: str, setup_seconds: float, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.setup_seconds = setup_seconds
        self.set_up = False
        self.ran: list[str] = []
        self.ran_before_set_up = 0

    async def setup(self) -> None:
        await asyncio.sleep(self.setup_seconds)
        self.set_up = True

    @job(name="work")
    async def work(self, message: BusJobRequestMessage) -> Payload:
        self.ran.append(message.job_id)
        self.ran_before_set_up += not self.set_up
        return {"n": message.payload["n"]}


def nats_bus(url: str, channel: str) -> NatsBus:
    return NatsBus(servers=url, channel=channel, jetstream_options=JetStreamOptions(ack_wait=10))


async def ask_all(client: Client, count: int) -> Counter[JobStatus]:
    """Send ``count`` jobs to ``model`` without waiting for it to be known, and collect them."""
    params = JobParams(wait_ready=False, timeout=60)

    async def one(n: int) -> JobStatus:
        async with client.job("model", name="work", payload={"n": n}, params=params) as handle:
            pass
        return handle.status

    return Counter(await asyncio.gather(*(one(n) for n in range(count))))


async def test_a_replica_still_setting_up_leaves_the_backlog_alone(nats_url: str) -> None:
    channel = f"ready-{uuid.uuid4().hex[:8]}"
    client = Client()
    async with running(client, bus=nats_bus(nats_url, channel)):
        asking = asyncio.create_task(ask_all(client, QUEUED))
        await asyncio.sleep(0.5)  # the requests are stored and wait
        model = SlowStart("model", setup_seconds=2.0)
        async with running(model, bus=nats_bus(nats_url, channel)):
            statuses = await within(asking, 60)
    assert statuses == {JobStatus.COMPLETED: QUEUED}
    assert model.ran_before_set_up == 0
    assert len(set(model.ran)) == len(model.ran) == QUEUED  # each once


async def test_an_inactive_worker_takes_no_request_until_activated(nats_url: str) -> None:
    channel = f"ready-{uuid.uuid4().hex[:8]}"
    client = Client()
    model = SlowStart("model", setup_seconds=0.0, active=False)
    async with (
        running(client, bus=nats_bus(nats_url, channel)),
        running(model, bus=nats_bus(nats_url, channel)),
    ):
        asking = asyncio.create_task(ask_all(client, 20))
        await asyncio.sleep(1.0)
        assert model.ran == [] and not asking.done()  # waiting in the stream, not refused
        await client.activate_worker("model")
        statuses = await within(asking, 30)
        assert statuses == {JobStatus.COMPLETED: 20}
        # Deactivated: new requests wait again, rather than being answered 'error'.
        await client.deactivate_worker("model")
        await asyncio.sleep(0.5)
        late = asyncio.create_task(ask_all(client, 5))
        await asyncio.sleep(1.0)
        assert not late.done() and len(model.ran) == 20
        await client.activate_worker("model")
        assert await within(late, 30) == {JobStatus.COMPLETED: 5}
