"""Fast copies: a stored message also travels on core NATS, and is delivered once.

Each test waits until the receiving bus has seen both copies (the stored one is counted in
``fast_copies`` when its fast copy came first), then checks what its subscribers got.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
from nats.aio.msg import Msg

from natsbus.bus.nats import NatsBus
from natsbus.bus.nats.ledger import JobLedger, TakenJob
from natsbus.codec import decode, encode
from natsbus.messages import (
    BusCancelMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateMessage,
    BusMessage,
    JobStatus,
    Lane,
)
from natsbus.testing import NatsServer

from helpers.nats import running_bus
from helpers.recorders import Inbox
from helpers.workers import within


def counts(bus: NatsBus) -> Any:
    network = bus.statistics().network
    assert network is not None
    return network.counts


async def settle(bus: NatsBus, predicate: Any) -> None:
    async def wait() -> None:
        while not predicate(counts(bus)):  # noqa: ASYNC110  (counts have no event)
            await asyncio.sleep(0.02)

    await within(wait())


async def test_a_cancel_is_delivered_once_though_two_copies_arrive(nats_url: str) -> None:
    channel = f"copies-{uuid.uuid4().hex[:8]}"
    busy, sender = Inbox("busy"), Inbox("tx")
    async with (
        running_bus(nats_url, busy, channel=channel) as rx_bus,
        running_bus(nats_url, sender, channel=channel) as tx_bus,
    ):
        for i in range(5):
            await tx_bus.send(BusCancelMessage(f"stop {i}", source="tx", target="busy"))
        # Every stored copy reached the receiver after its fast copy, and was dropped.
        await settle(rx_bus, lambda c: c.fast_copies == 5)
        await asyncio.sleep(0.1)
        assert [m.reason for m in busy.of_type(BusCancelMessage)] == [f"stop {i}" for i in range(5)]
        assert counts(rx_bus).duplicates == 0


async def test_a_job_s_replies_and_cancel_are_delivered_once(nats_url: str) -> None:
    channel = f"copies-{uuid.uuid4().hex[:8]}"
    buses: list[NatsBus] = []

    async def answer(message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage):
            worker_bus = buses[0]
            await worker_bus.send(
                BusJobUpdateMessage(message.job_id, {"half": 1}, source="w", target="client")
            )
            await worker_bus.send(
                BusJobResponseMessage(
                    message.job_id, JobStatus.COMPLETED, {"ok": 1}, source="w", target="client"
                )
            )

    worker, client = Inbox("w", behaviour=answer), Inbox("client")
    async with (
        running_bus(nats_url, worker, channel=channel) as worker_bus,
        running_bus(nats_url, client, channel=channel) as client_bus,
    ):
        buses.append(worker_bus)
        await client_bus.send(BusJobRequestMessage("j1", source="client", target="w"))
        await client.wait_until(lambda: len(client.of_type(BusJobResponseMessage)) == 1)
        await settle(client_bus, lambda c: c.fast_copies == 2)  # the update and the response
        await client_bus.send(BusJobCancelMessage("j1", source="client", target="w"))
        await settle(worker_bus, lambda c: c.fast_copies == 1)
        await asyncio.sleep(0.1)
        assert [type(m) for m in client.received] == [BusJobUpdateMessage, BusJobResponseMessage]
        assert len(worker.of_type(BusJobCancelMessage)) == 1
        assert counts(client_bus).duplicates == counts(worker_bus).duplicates == 0


async def test_without_fast_copies_the_stored_copy_alone_delivers(nats_url: str) -> None:
    channel = f"copies-{uuid.uuid4().hex[:8]}"
    busy, sender = Inbox("busy"), Inbox("tx")
    async with (
        running_bus(nats_url, busy, channel=channel) as rx_bus,
        running_bus(nats_url, sender, channel=channel, fast_copies=False) as tx_bus,
    ):
        await tx_bus.send(BusCancelMessage("stop", source="tx", target="busy"))
        await busy.wait_until(lambda: len(busy.received) == 1)
        await asyncio.sleep(0.2)
        assert len(busy.received) == 1
        assert counts(rx_bus).fast_copies == 0


async def test_a_forged_fast_copy_is_dropped_and_counted(nats_url: str) -> None:
    channel = f"copies-{uuid.uuid4().hex[:8]}"
    busy = Inbox("busy")
    async with running_bus(nats_url, busy, channel=channel) as rx_bus:
        cancel = BusCancelMessage("forged", source="tx", target="busy")
        cancel.id = "forged-1"
        raw = await nats.connect(nats_url)
        try:
            # Claims source 'tx' under the sender token of 'mallory'.
            subject = rx_bus.layout.targeted(Lane.SYSTEM, "busy", "mallory")
            await raw.publish(subject, encode(cancel))
            await raw.flush()
        finally:
            await raw.close()
        await settle(rx_bus, lambda c: c.forged_source == 1)
        assert busy.received == []


def test_jobs_taken_before_a_reconnect_are_no_longer_held() -> None:
    # Their deliveries may have gone to another bus meanwhile: their answers get no fast
    # copy, so that a requester can only ever see the stored answer.
    ledger = JobLedger(ack_wait=30, max_in_flight=4)
    delivery: Any = SimpleNamespace()  # never used: nothing is acknowledged here
    ledger.take(TakenJob("j1", "w", reply_to="i", message_id="m1", delivery=delivery))
    job = ledger.get(("w", "j1"))
    assert job is not None and job.held
    ledger.loosen()
    assert not job.held
    ledger.take(TakenJob("j2", "w", reply_to="i", message_id="m2", delivery=delivery))
    later = ledger.get(("w", "j2"))
    assert later is not None and later.held


class ReplyCopies:
    """Records the job ids of the fast copies of one bus instance's replies, as they arrive.

    It has a connection of its own, so it sees every copy sent, whether the bus keeps it or
    not.
    """

    def __init__(self) -> None:
        self.job_ids: list[str] = []
        self._arrived = asyncio.Event()
        self._back = asyncio.Event()
        self._client: Any = None

    async def watch(self, url: str, bus: NatsBus) -> None:
        self._client = await nats.connect(
            url, reconnect_time_wait=0.1, reconnected_cb=self._reconnected
        )
        for lane in (Lane.SYSTEM, Lane.DATA):
            subject = bus.layout.reply_copies(bus.instance_id, lane)
            await self._client.subscribe(subject, cb=self._on_copy)
        await self._client.flush()

    async def arrival(self, job_id: str) -> None:
        """Wait until a copy of the answer to ``job_id`` arrived."""
        while job_id not in self.job_ids:
            self._arrived.clear()
            await self._arrived.wait()

    async def back(self) -> None:
        """Wait until the connection is back and the server has its subscriptions again."""
        await self._back.wait()
        await self._client.flush()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _reconnected(self) -> None:
        self._back.set()

    async def _on_copy(self, msg: Msg) -> None:
        message = decode(msg.data)
        self.job_ids.append(getattr(message, "job_id", type(message).__name__))
        self._arrived.set()


async def test_an_answer_after_a_reconnect_goes_without_a_fast_copy(tmp_path: Path) -> None:
    # The worker's bus takes a job, its connections drop and come back (the server restarts),
    # then it answers: the delivery may have gone to another bus meanwhile, so only the stored
    # answer may reach the requester. The jobs answered before and after have fast copies,
    # sent on the same connection: they show that the watched subjects are the right ones and,
    # since core messages of one connection arrive in order, that no copy is still on its way.
    release = asyncio.Event()
    buses: list[NatsBus] = []

    async def answer(message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage):
            if message.job_id == "across":
                await release.wait()  # taken before the restart, answered after it
            await buses[0].send(
                BusJobResponseMessage(
                    message.job_id, JobStatus.COMPLETED, {"ok": 1}, source="w", target="client"
                )
            )

    worker, client = Inbox("w", behaviour=answer), Inbox("client")

    def answers() -> list[str]:
        return [m.job_id for m in client.of_type(BusJobResponseMessage)]

    channel = f"copies-{uuid.uuid4().hex[:8]}"
    copies = ReplyCopies()
    async with (
        NatsServer(store_dir=tmp_path / "nats-server") as server,
        running_bus(server.url, worker, channel=channel) as worker_bus,
        running_bus(server.url, client, channel=channel) as client_bus,
    ):
        buses.append(worker_bus)

        async def job(job_id: str) -> None:
            await client_bus.send(BusJobRequestMessage(job_id, source="client", target="w"))

        try:
            await copies.watch(server.url, client_bus)
            await job("before")
            await within(copies.arrival("before"))
            await client.wait_until(lambda: answers() == ["before"])

            await job("across")
            await worker.wait_until(lambda: len(worker.of_type(BusJobRequestMessage)) == 2)
            await server.restart()
            # Both lanes of both buses are back (the worker's bus no longer holds its job once
            # one is), and the watcher with its subscriptions.
            for bus in (worker_bus, client_bus):
                await settle(bus, lambda c: c.reconnects[Lane.SYSTEM] and c.reconnects[Lane.DATA])
            await within(copies.back())
            release.set()
            await client.wait_until(lambda: answers() == ["before", "across"], timeout=30)

            await job("after")
            await within(copies.arrival("after"))
            await client.wait_until(lambda: answers() == ["before", "across", "after"])
            assert copies.job_ids == ["before", "after"]
            assert counts(client_bus).duplicates == 0
        finally:
            await copies.close()
