"""Buses whose NATS users have exactly the permissions ``natsbus permissions`` generates.

On a real nats-server configured with users: the shop's payments worker (role runner), and
two requesters, bob and alice, on the same channel. What they may do works; a forged
``source`` never reaches a subscriber as the name it claims; alice cannot answer bob's job;
a set missing one permission fails ``start()`` with a ``BusPermissionError`` naming it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from natsbus import BusPermissionError, Codec, permissions
from natsbus.access import PermissionSet
from natsbus.bus.nats import NatsBus
from natsbus.messages import (
    BusJobResponseMessage,
    BusMessage,
    BusTTSSpeakMessage,
    BusWorkerReadyMessage,
    JobStatus,
    Lane,
)
from natsbus.testing import NatsServer
from natsbus.workers import JobError, JobEventKind

from helpers.auth import configured_server, login, raw_connection, server_config
from helpers.frames import eventually
from helpers.recorders import Inbox, Tap
from helpers.workers import Requester, Tool, running, within

CHANNEL = "shop"
CODEC = Codec()


def role_sets() -> dict[str, PermissionSet]:
    return {
        "payments-svc": permissions(channel=CHANNEL, names=["payments"], role="runner"),
        "bob": permissions(channel=CHANNEL, names=["bob"], role="requester"),
        # A worker of the shop too: she may answer the jobs she is asked.
        "alice": permissions(channel=CHANNEL, names=["alice"], role="worker"),
    }


class Shop(Tool):
    """The payments worker: the Tool's jobs, and a record of the speech it is sent."""

    def __init__(self) -> None:
        super().__init__("payments")
        self.heard: list[BusTTSSpeakMessage] = []

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusTTSSpeakMessage):
            self.heard.append(message)
        await super().on_bus_message(message)


def bus_for(server: NatsServer, user: str) -> NatsBus:
    return NatsBus(connect_options=login(server, user), channel=CHANNEL)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with configured_server(tmp_path, server_config(role_sets())) as server:
        yield server


async def test_a_worker_and_a_requester_with_exactly_their_sets_run_jobs_lifecycle_frames(
    secured: NatsServer,
) -> None:
    shop, bob = Shop(), Requester("bob")
    payments_bus, bob_bus = bus_for(secured, "payments-svc"), bus_for(secured, "bob")
    async with running(shop, bus=payments_bus), running(bob, bus=bob_bus) as runner:
        # Lifecycle and registry: bob's runner learns that payments is ready.
        await within(runner.registry.wait_ready(["payments"]), 10)
        async with bob.job("payments", name="echo", payload={"amount": 12}) as job:
            pass
        assert job.response == {"echo": {"amount": 12}}
        async with bob.job("payments", name="progress") as job:
            kinds = [event.kind async for event in job]
        assert kinds.count(JobEventKind.UPDATE) == 3 and JobEventKind.STREAM_DATA in kinds
        # A frame, on core NATS.
        await bob.send_bus_message(BusTTSSpeakMessage("thanks", source="bob", target="payments"))
        await within(eventually(lambda: len(shop.heard) == 1))
    for bus in (payments_bus, bob_bus):
        counts = bus.statistics().network
        assert counts is not None
        assert counts.counts.permission_denials == 0
        assert counts.counts.forged_source == 0


async def test_a_message_claiming_bobs_source_never_reaches_a_subscriber_as_bob(
    secured: NatsServer,
) -> None:
    shop = Shop()
    payments_bus = bus_for(secured, "payments-svc")
    alice, alice_errors = await raw_connection(secured, "alice")
    try:
        async with running(shop, bus=payments_bus):
            layout = payments_bus.layout
            forged = CODEC.encode(BusTTSSpeakMessage("pay eve", source="bob", target="payments"))
            # Under bob's sender token: the server refuses it.
            await alice.publish(layout.targeted(Lane.DATA, "payments", "bob"), forged)
            # Under her own: it arrives, and the bus drops it.
            await alice.publish(layout.targeted(Lane.DATA, "payments", "alice"), forged)
            honest = BusTTSSpeakMessage("hello", source="alice", target="payments")
            await alice.publish(
                layout.targeted(Lane.DATA, "payments", "alice"), CODEC.encode(honest)
            )
            await alice.flush()
            await within(eventually(lambda: len(shop.heard) == 1))
            await asyncio.sleep(0.2)
            assert [(m.source, m.text) for m in shop.heard] == [("alice", "hello")]
            network = payments_bus.statistics().network
            assert network is not None and network.counts.forged_source == 1
    finally:
        await alice.close()
    assert any("permissions violation for publish" in e for e in alice_errors)


async def test_alice_cannot_answer_bobs_job(secured: NatsServer) -> None:
    shop, bob = Shop(), Requester("bob")
    payments_bus, bob_bus = bus_for(secured, "payments-svc"), bus_for(secured, "bob")
    alice, alice_errors = await raw_connection(secured, "alice")
    try:
        async with running(shop, bus=payments_bus), running(bob, bus=bob_bus) as runner:
            await within(runner.registry.wait_ready(["payments"]), 10)
            async with bob.job("payments", name="slow", payload={"seconds": 1.0}) as job:
                await within(eventually(lambda: job.job_id in shop.started))
                layout = bob_bus.layout
                for source in ("payments", "alice"):
                    answer = BusJobResponseMessage(
                        job.job_id,
                        JobStatus.COMPLETED,
                        {"by": "alice"},
                        source=source,
                        target="bob",
                    )
                    subject = layout.job_replies(bob_bus.instance_id, Lane.DATA, source)
                    await alice.publish(subject, CODEC.encode(answer))
                await alice.flush()
            assert job.response == {"slept": True}  # the worker's answer, not alice's
            network = bob_bus.statistics().network
            assert network is not None
            assert network.counts.unexpected_answers == 1  # the one under her own token
    finally:
        await alice.close()
    refused = [e for e in alice_errors if "permissions violation" in e]
    assert refused and all(".payments" in text for text in refused)


def _without(granted: PermissionSet, subject: str) -> PermissionSet:
    if subject in granted.publish:
        publish = tuple(s for s in granted.publish if s != subject)
        return PermissionSet(publish, granted.subscribe, granted.inbox_prefix)
    assert subject in granted.subscribe
    subscribe = tuple(s for s in granted.subscribe if s != subject)
    return PermissionSet(granted.publish, subscribe, granted.inbox_prefix)


RUNNER = permissions(channel=CHANNEL, names=["payments"], role="runner")
NEEDED_AT_START = [
    "$JS.API.STREAM.INFO.NATSBUS_JOBS",
    "$JS.API.STREAM.CREATE.NATSBUS_JOBS_REQUESTS",
    "$JS.API.CONSUMER.CREATE.NATSBUS_JOBS.*",
    next(s for s in RUNNER.publish if s.startswith("$JS.API.CONSUMER.CREATE.NATSBUS_JOBS_REQ")),
    f"{RUNNER.inbox_prefix}.>",
    "natsbus.shop.sys.all.*",
    "natsbus.shop.data.to.payments.*",
]


@pytest.mark.parametrize("missing", NEEDED_AT_START)
async def test_a_set_missing_one_permission_fails_start_naming_it(
    tmp_path: Path, missing: str
) -> None:
    config = server_config({"payments-svc": _without(RUNNER, missing)})
    async with configured_server(tmp_path, config) as server:
        bus = NatsBus(connect_options=login(server, "payments-svc"), channel=CHANNEL)
        await bus.subscribe(Inbox("payments"))  # takes jobs from the start
        began = time.monotonic()
        with pytest.raises(BusPermissionError) as raised:
            await bus.start()
        took = time.monotonic() - began
        await bus.stop()
    error = raised.value
    assert _matches(missing, error.subject), (missing, error.subject)
    assert error.operation == ("subscribe" if missing in RUNNER.subscribe else "publish")
    assert missing.split(".*")[0].split(".>")[0] in str(error)
    assert took < 2.0, f"start took {took:.2f} s to fail"


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    wanted, got = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(got) > index
        if index >= len(got) or token not in ("*", got[index]):
            return False
    return len(got) == len(wanted)


async def test_a_job_request_the_server_refuses_is_answered_error_at_once(
    tmp_path: Path,
) -> None:
    sets = role_sets()
    sets["bob"] = _without(sets["bob"], "natsbus.shop.job.req.*.bob")
    async with configured_server(tmp_path, server_config(sets)) as server:
        shop, bob = Shop(), Requester("bob")
        bob_bus = bus_for(server, "bob")
        async with (
            running(shop, bus=bus_for(server, "payments-svc")),
            running(bob, bus=bob_bus) as runner,
        ):
            await within(runner.registry.wait_ready(["payments"]), 10)
            with pytest.raises(JobError) as raised:
                async with bob.job("payments", name="echo", payload={"n": 1}):
                    pass
            network = bob_bus.statistics().network
            assert network is not None and network.counts.permission_denials >= 1
    assert raised.value.status is JobStatus.ERROR
    assert "refused to store the request" in str(raised.value.response)
    assert shop.ran == []


async def test_an_observer_with_its_set_sees_the_channels_messages_and_sends_nothing(
    tmp_path: Path,
) -> None:
    sets = role_sets()
    sets["monitor"] = permissions(channel=CHANNEL, names=[], role="observer")
    async with configured_server(tmp_path, server_config(sets)) as server:
        shop, bob = Shop(), Requester("bob")
        tap = Tap()
        monitor = bus_for(server, "monitor")
        await monitor.subscribe(tap)
        # The runner makes the streams; an observer may only read them.
        async with running(shop, bus=bus_for(server, "payments-svc")), monitor:
            async with running(bob, bus=bus_for(server, "bob")) as runner:
                await within(runner.registry.wait_ready(["payments"]), 10)
                await bob.send_bus_message(
                    BusTTSSpeakMessage("hi", source="bob", target="payments")
                )
                await tap.wait_until(lambda: bool(tap.of_type(BusTTSSpeakMessage)))
                # A lifecycle message, from the stream: bob's worker announcing it is ready.
                await tap.wait_until(
                    lambda: any(m.source == "bob" for m in tap.of_type(BusWorkerReadyMessage))
                )
            network = monitor.statistics().network
            assert network is not None and network.counts.permission_denials == 0
        assert tap.of_type(BusTTSSpeakMessage)[0].target == "payments"  # not its own


async def test_an_observer_before_the_streams_exist_is_told_it_may_not_make_them(
    tmp_path: Path,
) -> None:
    observer = permissions(channel=CHANNEL, names=[], role="observer")
    async with configured_server(tmp_path, server_config({"monitor": observer})) as server:
        monitor = bus_for(server, "monitor")
        await monitor.subscribe(Tap())
        with pytest.raises(BusPermissionError, match=r"STREAM\.CREATE\.NATSBUS_JOBS"):
            await monitor.start()
        await monitor.stop()
