"""TestBus: NatsBus's wire and job semantics in one process, for unit tests of workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from natsbus import AsyncQueueBus, BusJobRequestMessage, BusTTSSpeakMessage, JobStatus, WorkerBus
from natsbus.errors import UnsupportedValueError
from natsbus.testing import TestBus, TestNetwork
from natsbus.testing.contract import BusContract
from natsbus.workers import BaseWorker, JobError, job

from helpers.recorders import Inbox
from helpers.workers import Client, running, within


class Replica(BaseWorker):
    """One replica of "charger": records the jobs it took; ``hang`` answers only if told to."""

    def __init__(self, *, hangs: bool = True) -> None:
        super().__init__("charger")
        self.hangs = hangs
        self.took: list[tuple[str, int]] = []
        self.started = asyncio.Event()

    @job(name="charge")
    async def charge(self, message: BusJobRequestMessage) -> dict[str, object]:
        self.took.append((message.job_id, message.attempt))
        return {"charged": True, "attempt": message.attempt}

    @job(name="hang")
    async def hang(self, message: BusJobRequestMessage) -> dict[str, object]:
        self.took.append((message.job_id, message.attempt))
        self.started.set()
        if self.hangs:
            await asyncio.sleep(3600)
        return {"attempt": message.attempt}


async def test_a_payload_natsbus_refuses_is_refused() -> None:
    bus = TestBus()
    await bus.subscribe(Inbox("rx"))
    async with bus:
        with pytest.raises(UnsupportedValueError, match="set"):
            await bus.send(BusJobRequestMessage("j", "x", {"ids": {1, 2}}, source="t", target="rx"))
        await bus.send(BusTTSSpeakMessage("fine", source="t", target="rx"))


async def test_each_job_is_taken_by_one_replica() -> None:
    network = TestNetwork()
    replicas = [Replica(), Replica()]
    client = Client()
    async with (
        running(replicas[0], bus=TestBus(network)),
        running(replicas[1], bus=TestBus(network)),
        running(client, bus=TestBus(network)),
    ):
        for _ in range(6):
            async with client.job("charger", name="charge") as j:
                pass
            assert j.response == {"charged": True, "attempt": 1}
    took = [job_id for replica in replicas for job_id, _ in replica.took]
    assert len(took) == 6 and len(set(took)) == 6  # once each
    assert all(replica.took for replica in replicas)  # both served
    assert network.taken == 0


async def test_a_crashed_replicas_job_is_delivered_again_to_another() -> None:
    network = TestNetwork()
    first, second = Replica(), Replica(hangs=False)
    client = Client()
    first_bus = TestBus(network)
    async with running(client, bus=TestBus(network)), running(first, bus=first_bus):
        handle = client.job("charger", name="hang")
        entering = asyncio.ensure_future(handle.__aenter__())
        await within(first.started.wait())  # the only replica took it
        async with running(second, bus=TestBus(network)):
            assert second.took == []  # taken: not offered again while its taker lives
            await first_bus.crash()
            await within(entering)
            await within(handle.wait())
    assert first.took == [(handle.job_id, 1)]
    assert second.took == [(handle.job_id, 2)]
    assert handle.response == {"attempt": 2}


async def test_a_job_past_max_attempts_is_answered_error() -> None:
    network = TestNetwork(max_attempts=2)
    client = Client()
    async with running(client, bus=TestBus(network)):
        handle = client.job("charger", name="hang")
        entering = asyncio.ensure_future(handle.__aenter__())
        for attempt in (1, 2):
            replica = Replica()
            bus = TestBus(network)
            async with running(replica, bus=bus):
                await within(replica.started.wait())
                assert replica.took == [(handle.job_id, attempt)]
                await bus.crash()
        await within(entering)
        with pytest.raises(JobError) as raised:
            await within(handle.wait())
    assert raised.value.status is JobStatus.ERROR
    assert "not completed after 2 deliveries" in str(raised.value.response)


class TestTestBusContract(BusContract):
    """The bus contract every bus meets, on TestBus too (and with check_wire on the local one)."""

    @pytest.fixture(params=["test_bus", "checked_local"])
    async def bus(self, request: pytest.FixtureRequest) -> AsyncIterator[WorkerBus]:
        bus: WorkerBus = (
            TestBus() if request.param == "test_bus" else AsyncQueueBus(check_wire=True)
        )
        yield bus
        await bus.stop()
