"""The behavioural contract of every WorkerBus, as a reusable abstract test suite (needs pytest).

A concrete test module subclasses :class:`BusContract` and overrides the ``bus`` fixture to
yield a fresh, *unstarted* bus (the contract stops it afterwards; ``stop()`` is idempotent)::

    class TestAsyncQueueBus(BusContract):
        @pytest.fixture
        async def bus(self) -> AsyncIterator[WorkerBus]:
            yield AsyncQueueBus()

Only library message classes that cross a network are used (broadcast ``BusTTSSpeakMessage``
as data, ``BusCancelMessage`` as system), so that a network bus can run the same suite. Every
test tags its messages and names its subscribers with a fresh uuid, so tests sharing a server
never see each other's traffic. Synchronisation waits on events with a timeout, never sleeps.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from natsbus.bus import BusState, BusSubscriber, WorkerBus
from natsbus.errors import BusClosedError
from natsbus.messages import (
    BusCancelMessage,
    BusMessage,
    BusTTSSpeakMessage,
    BusWorkerLocalErrorMessage,
)

TIMEOUT = 10.0
"""Seconds to wait for an expected delivery before the test fails."""


def unique(prefix: str) -> str:
    """A fresh name: ``prefix`` and a random suffix (tests sharing a server stay apart)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _has(recorder: Recorder, tag: str, count: int) -> bool:
    return recorder.count(tag) == count


def _state(bus: WorkerBus) -> BusState:
    # Read through a call, so that type checkers do not narrow it across awaits.
    return bus.state


def data(tag: str, seq: int) -> BusTTSSpeakMessage:
    """A broadcast data message numbered ``seq``."""
    return BusTTSSpeakMessage(text=f"{tag}:{seq}", source=tag)


def system(tag: str, reason: str = "cancel") -> BusCancelMessage:
    """A broadcast system message."""
    return BusCancelMessage(reason=f"{tag}:{reason}", source=tag)


Behaviour = Callable[[BusMessage], Awaitable[None]]


class Recorder(BusSubscriber):
    """A subscriber that records what it receives and lets a test wait for a condition.

    ``behaviour`` runs after the message is recorded and conditions are checked, so it may
    block or raise without hiding the delivery from the test.
    """

    def __init__(self, prefix: str = "recorder", behaviour: Behaviour | None = None) -> None:
        self._name = unique(prefix)
        self.received: list[BusMessage] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self.behaviour = behaviour
        self._conditions: list[tuple[Callable[[], bool], asyncio.Event]] = []

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        self.received.append(message)
        self._counts[message.source] += 1
        for predicate, event in self._conditions:
            if predicate():
                event.set()
        if self.behaviour is not None:
            await self.behaviour(message)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        if predicate():
            return
        event = asyncio.Event()
        entry = (predicate, event)
        self._conditions.append(entry)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._conditions.remove(entry)

    def texts(self, tag: str) -> list[str]:
        """Texts of the data messages with this tag, in the order received."""
        return [
            message.text
            for message in self.received
            if isinstance(message, BusTTSSpeakMessage) and message.source == tag
        ]

    def count(self, tag: str) -> int:
        """How many messages from ``tag`` arrived (O(1): predicates run on every delivery)."""
        return self._counts[tag]

    async def wait_for_text(self, text: str) -> None:
        await self.wait_until(
            lambda: any(getattr(message, "text", None) == text for message in self.received)
        )


class BusContract:
    """Behaviour every WorkerBus must show; subclasses provide the ``bus`` fixture.

    Run it against a bus of your own (it needs pytest and pytest-asyncio in auto mode)::

        from natsbus.testing.contract import BusContract

        class TestMyBus(BusContract):
            restarts = False  # if your bus cannot be started again after stop()

            @pytest.fixture
            async def bus(self):
                yield MyBus()
    """

    restarts: bool = True
    """Whether the bus can be started again after stop() (in process: yes, as in pipecat)."""

    @pytest.fixture
    async def bus(self) -> AsyncIterator[WorkerBus]:
        raise NotImplementedError("a BusContract subclass must provide the 'bus' fixture")
        yield  # pragma: no cover

    @pytest.fixture
    async def started(self, bus: WorkerBus) -> AsyncIterator[WorkerBus]:
        await bus.start()
        yield bus
        await bus.stop()

    async def test_every_subscriber_receives_data_and_system(self, started: WorkerBus) -> None:
        tag = unique("fanout")
        first, second = Recorder(), Recorder()
        await started.subscribe(first)
        await started.subscribe(second)
        await started.send(data(tag, 0))
        await started.send(system(tag))
        for recorder in (first, second):
            await recorder.wait_until(functools.partial(_has, recorder, tag, 2))
            assert {type(m) for m in recorder.received} == {BusTTSSpeakMessage, BusCancelMessage}

    async def test_subscribe_is_idempotent(self, started: WorkerBus) -> None:
        tag = unique("idem")
        recorder = Recorder()
        await started.subscribe(recorder)
        await started.subscribe(recorder)
        assert started.subscribers.count(recorder) == 1
        await started.send(data(tag, 0))
        await started.send(data(tag, 1))  # FIFO: once this arrives, any duplicate of 0 has too
        await recorder.wait_for_text(f"{tag}:1")
        assert recorder.texts(tag) == [f"{tag}:0", f"{tag}:1"]

    async def test_another_subscriber_with_the_same_name_is_refused(
        self, started: WorkerBus
    ) -> None:
        recorder = Recorder()
        impostor = Recorder()
        impostor._name = recorder.name
        await started.subscribe(recorder)
        with pytest.raises(ValueError, match="already subscribed"):
            await started.subscribe(impostor)

    async def test_unsubscribe_stops_delivery(self, started: WorkerBus) -> None:
        tag = unique("unsub")
        leaving, staying = Recorder("leaving"), Recorder("staying")
        await started.subscribe(leaving)
        await started.subscribe(staying)
        await started.send(data(tag, 0))
        await leaving.wait_for_text(f"{tag}:0")
        await started.unsubscribe(leaving)
        assert leaving not in started.subscribers
        await started.send(data(tag, 1))
        await started.send(system(tag))
        await staying.wait_until(lambda: staying.count(tag) == 3)
        assert leaving.texts(tag) == [f"{tag}:0"]
        assert leaving.count(tag) == 1

    async def test_data_messages_are_handled_in_fifo_order(self, started: WorkerBus) -> None:
        tag = unique("fifo")
        recorder = Recorder()
        await started.subscribe(recorder)
        for seq in range(1000):
            await started.send(data(tag, seq))
        await recorder.wait_until(lambda: recorder.count(tag) == 1000)
        assert recorder.texts(tag) == [f"{tag}:{seq}" for seq in range(1000)]

    async def test_system_message_overtakes_queued_data(self, started: WorkerBus) -> None:
        tag = unique("prio")
        recorder = Recorder()
        await started.subscribe(recorder)
        for seq in range(10_000):
            await started.send(data(tag, seq))
        await started.send(system(tag))
        await recorder.wait_until(lambda: recorder.count(tag) == 10_001)
        position = next(
            i for i, m in enumerate(recorder.received) if isinstance(m, BusCancelMessage)
        )
        # Handled before at least 9,990 of the 10,000 data messages sent ahead of it.
        assert position <= 10, f"system message handled after {position} data messages"

    async def test_raising_handler_does_not_stop_dispatch(
        self, started: WorkerBus, caplog: pytest.LogCaptureFixture
    ) -> None:
        tag = unique("raise")

        async def explode(message: BusMessage) -> None:
            if isinstance(message, BusCancelMessage) or message.text.endswith(("0", "2", "4")):  # type: ignore[attr-defined]
                raise RuntimeError("handler bug")

        recorder = Recorder("fragile", behaviour=explode)
        await started.subscribe(recorder)
        with caplog.at_level(logging.ERROR):
            await started.send(system(tag))
            for seq in range(6):
                await started.send(data(tag, seq))
            await started.send(system(tag, "again"))
            await recorder.wait_until(lambda: recorder.count(tag) == 8)
        assert recorder.texts(tag) == [f"{tag}:{seq}" for seq in range(6)]
        stats = started.statistics().subscribers[recorder.name]
        assert (stats.data.failed, stats.system.failed) == (3, 2)
        failures = [r for r in caplog.records if recorder.name in r.getMessage()]
        assert len(failures) == 5
        assert any("BusCancelMessage" in r.getMessage() for r in failures)
        assert all(r.exc_info is not None for r in failures)

    async def test_stop_halts_dispatch(self, bus: WorkerBus) -> None:
        tag = unique("stop")
        entered = asyncio.Event()
        cancelled = asyncio.Event()

        async def block(message: BusMessage) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()  # never set: only stop() ends this
            except asyncio.CancelledError:
                cancelled.set()
                raise

        recorder = Recorder("blocked", behaviour=block)
        await bus.subscribe(recorder)
        await bus.start()
        for seq in range(100):
            await bus.send(data(tag, seq))
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        await bus.stop()
        assert cancelled.is_set()
        assert _state(bus) is BusState.STOPPED
        handled_at_stop = len(recorder.received)
        # A transport may still hand over a message while stopping: it must be dropped.
        bus.on_message_received(system(tag))
        for _ in range(20):  # give any stray task many turns of the loop; none may deliver
            await asyncio.sleep(0)
        assert len(recorder.received) == handled_at_stop == 1
        assert bus.statistics().dropped >= 1

    async def test_send_stamps_unique_id_and_sent_at(self, started: WorkerBus) -> None:
        tag = unique("stamp")
        recorder = Recorder()
        await started.subscribe(recorder)
        messages = [data(tag, seq) for seq in range(500)] + [system(tag)]
        assert all(m.id == "" and m.sent_at == 0.0 for m in messages)
        before = time.time()
        for message in messages:
            await started.send(message)
        after = time.time()
        ids = [m.id for m in messages]
        assert all(ids) and len(set(ids)) == len(ids)
        assert all(before <= m.sent_at <= after for m in messages)
        await recorder.wait_until(lambda: recorder.count(tag) == len(messages))
        assert sorted(m.id for m in recorder.received) == sorted(ids)
        assert all(before <= m.sent_at <= after for m in recorder.received)

    async def test_local_only_messages_stay_local(
        self, started: WorkerBus, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tag = unique("local")
        published: list[BusMessage] = []
        real_publish = started.publish

        async def spy(message: BusMessage) -> None:
            published.append(message)
            await real_publish(message)

        monkeypatch.setattr(started, "publish", spy)
        recorder = Recorder()
        await started.subscribe(recorder)
        local = BusWorkerLocalErrorMessage(error=f"{tag}:local", source=tag)
        await started.send(local)
        await started.send(data(tag, 0))
        await recorder.wait_until(lambda: recorder.count(tag) == 2)
        assert local in recorder.received
        assert local not in published
        assert [m.source for m in published] == [tag]  # the data message did go to publish()

    async def test_messages_sent_before_start_are_delivered_after_start(
        self, bus: WorkerBus
    ) -> None:
        tag = unique("early")
        recorder = Recorder()
        await bus.subscribe(recorder)
        assert _state(bus) is BusState.CREATED
        await bus.send(data(tag, 0))
        await bus.send(system(tag))
        for _ in range(20):  # not started: nothing may be dispatched however long we wait
            await asyncio.sleep(0)
        assert recorder.received == []
        await bus.start()
        await recorder.wait_until(lambda: recorder.count(tag) == 2)
        await bus.stop()

    async def test_send_after_stop_is_dropped_and_counted(self, bus: WorkerBus) -> None:
        # pipecat's buses do not raise on a send after stop; natsbus counts what it drops.
        recorder = Recorder()
        await bus.subscribe(recorder)
        await bus.start()
        await bus.stop()
        before = bus.statistics().dropped
        await bus.send(data(unique("late"), 0))
        assert bus.statistics().dropped == before + 1
        assert recorder.received == []
        await bus.subscribe(Recorder())  # allowed, as in pipecat: it waits for a start

    async def test_start_and_stop_are_idempotent(self, bus: WorkerBus) -> None:
        assert _state(bus) is BusState.CREATED
        await bus.start()
        await bus.start()
        assert _state(bus) is BusState.STARTED
        await bus.stop()
        await bus.stop()
        assert _state(bus) is BusState.STOPPED
        if self.restarts:
            await bus.start()
            assert _state(bus) is BusState.STARTED
            await bus.stop()
        else:
            with pytest.raises(BusClosedError, match="cannot be started again"):
                await bus.start()
            assert _state(bus) is BusState.STOPPED

    async def test_subscribing_to_a_started_bus_dispatches_at_once(
        self, started: WorkerBus
    ) -> None:
        tag = unique("late-sub")
        recorder = Recorder()
        await started.subscribe(recorder)
        await started.send(system(tag))
        await recorder.wait_until(lambda: recorder.count(tag) == 1)

    async def test_async_with_starts_and_stops(self, bus: WorkerBus) -> None:
        tag = unique("ctx")
        recorder = Recorder()
        async with bus as entered:
            assert entered is bus
            assert _state(bus) is BusState.STARTED
            await bus.subscribe(recorder)
            await bus.send(data(tag, 0))
            await recorder.wait_for_text(f"{tag}:0")
        assert _state(bus) is BusState.STOPPED
