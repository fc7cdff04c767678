"""SubscriberDispatcher: the per-subscriber system and data lanes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from time import perf_counter

import pytest

from natsbus.bus import Lane, NoOpDispatchObserver, SubscriberDispatcher
from natsbus.messages import BusCancelMessage, BusMessage, BusTTSSpeakMessage
from natsbus.tasks import cancel_and_wait
from natsbus.testing.contract import TIMEOUT, Recorder, data, system, unique


@pytest.fixture
def tag() -> str:
    return unique("dispatch")


async def test_a_blocked_data_handler_does_not_delay_system_messages(tag: str) -> None:
    gate = asyncio.Event()
    blocked = asyncio.Event()

    async def block_on_data(message: BusMessage) -> None:
        if isinstance(message, BusTTSSpeakMessage):
            blocked.set()
            await gate.wait()

    recorder = Recorder(behaviour=block_on_data)
    dispatcher = SubscriberDispatcher(recorder)
    dispatcher.start()
    for seq in range(3):
        dispatcher.put(data(tag, seq))
    await asyncio.wait_for(blocked.wait(), TIMEOUT)
    dispatcher.put(system(tag, "first"))
    dispatcher.put(system(tag, "second"))
    await recorder.wait_until(lambda: recorder.count(tag) == 3)
    assert [type(m) for m in recorder.received] == [
        BusTTSSpeakMessage,
        BusCancelMessage,
        BusCancelMessage,
    ]
    assert [m.reason for m in recorder.received[1:]] == [f"{tag}:first", f"{tag}:second"]  # type: ignore[attr-defined]
    assert dispatcher.statistics().data.queued == 2
    gate.set()
    await recorder.wait_until(lambda: recorder.count(tag) == 5)
    assert recorder.texts(tag) == [f"{tag}:{seq}" for seq in range(3)]
    await dispatcher.stop()


async def test_a_system_message_put_mid_drain_is_handled_at_once(tag: str) -> None:
    # The data handlers never suspend, so only the lane's own yield lets the system lane in.
    dispatcher_box: list[SubscriberDispatcher] = []

    async def inject(message: BusMessage) -> None:
        if getattr(message, "text", "") == f"{tag}:5000":
            dispatcher_box[0].put(system(tag))

    recorder = Recorder(behaviour=inject)
    dispatcher = SubscriberDispatcher(recorder)
    dispatcher_box.append(dispatcher)
    for seq in range(10_000):
        dispatcher.put(data(tag, seq))
    dispatcher.start()
    await recorder.wait_until(lambda: recorder.count(tag) == 10_001)
    position = next(i for i, m in enumerate(recorder.received) if isinstance(m, BusCancelMessage))
    assert 5001 <= position <= 5002
    await dispatcher.stop()


async def test_a_long_drain_yields_to_the_loop_every_time_slice(tag: str) -> None:
    # Each data handler spins for 0.6 ms without suspending: past the 0.5 ms slice, so the
    # lane must yield after every message, and another task must run between them.
    ticks = 0
    ticker_running = True

    async def ticker() -> None:
        nonlocal ticks
        while ticker_running:
            ticks += 1
            await asyncio.sleep(0)

    ticks_seen: list[int] = []

    async def spin(message: BusMessage) -> None:
        ticks_seen.append(ticks)
        end = perf_counter() + 0.0006
        while perf_counter() < end:
            pass

    recorder = Recorder(behaviour=spin)
    dispatcher = SubscriberDispatcher(recorder, time_slice=0.0005)
    for seq in range(50):
        dispatcher.put(data(tag, seq))
    ticker_task = asyncio.create_task(ticker())
    dispatcher.start()
    await recorder.wait_until(lambda: recorder.count(tag) == 50)
    ticker_running = False
    await ticker_task
    await dispatcher.stop()
    # The ticker ran between every two messages.
    assert all(later > earlier for earlier, later in itertools.pairwise(ticks_seen))


async def test_statistics_count_per_lane(tag: str) -> None:
    async def fail_odd(message: BusMessage) -> None:
        if getattr(message, "text", "0")[-1] in "13579" or isinstance(message, BusCancelMessage):
            raise ValueError("odd")

    recorder = Recorder(behaviour=fail_odd)
    dispatcher = SubscriberDispatcher(recorder)
    for seq in range(10):
        dispatcher.put(data(tag, seq))
    dispatcher.put(system(tag))
    before = dispatcher.statistics()
    assert before.subscriber == recorder.name
    assert not before.running
    assert (before.data.queued, before.system.queued) == (10, 1)
    assert (before.data.handled, before.system.handled) == (0, 0)
    dispatcher.start()
    await recorder.wait_until(lambda: recorder.count(tag) == 11)
    after = dispatcher.statistics()
    assert after.running
    assert (after.data.queued, after.data.handled, after.data.failed) == (0, 10, 5)
    assert (after.system.queued, after.system.handled, after.system.failed) == (0, 1, 1)
    await dispatcher.stop()
    assert not dispatcher.statistics().running


async def test_stop_drops_what_is_queued_and_later_puts(tag: str) -> None:
    recorder = Recorder()
    dispatcher = SubscriberDispatcher(recorder)
    for seq in range(4):
        dispatcher.put(data(tag, seq))
    dispatcher.put(system(tag))
    await dispatcher.stop()
    dispatcher.put(data(tag, 99))
    stats = dispatcher.statistics()
    assert stats.dropped == 6
    assert (stats.data.queued, stats.system.queued) == (0, 0)
    with pytest.raises(RuntimeError, match="stopped"):
        dispatcher.start()
    await dispatcher.stop()  # twice is fine
    assert recorder.received == []


async def test_a_handler_leaking_cancelled_error_does_not_end_dispatch(tag: str) -> None:
    async def leak(message: BusMessage) -> None:
        if getattr(message, "text", "") == f"{tag}:0":
            raise asyncio.CancelledError  # e.g. awaited a future someone else cancelled

    recorder = Recorder(behaviour=leak)
    dispatcher = SubscriberDispatcher(recorder)
    dispatcher.start()
    dispatcher.put(data(tag, 0))
    dispatcher.put(data(tag, 1))
    await recorder.wait_until(lambda: recorder.count(tag) == 2)
    assert dispatcher.running
    await dispatcher.stop()
    assert dispatcher.statistics().data.failed == 1


async def test_stop_does_not_swallow_the_callers_cancellation(tag: str) -> None:
    entered = asyncio.Event()
    dying = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_die(message: BusMessage) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            dying.set()
            await release.wait()  # cleanup that takes a while
            raise

    dispatcher = SubscriberDispatcher(Recorder(behaviour=slow_to_die))
    dispatcher.start()
    dispatcher.put(data(tag, 0))
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    stopper = asyncio.create_task(dispatcher.stop())
    await asyncio.wait_for(dying.wait(), TIMEOUT)  # stopper cancelled the lane and waits for it
    assert not stopper.done()
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert stopper.cancelled()
    release.set()
    await dispatcher.stop()  # the lane task still ends, and a second stop() returns normally


async def test_stop_ends_a_lane_whose_handler_swallows_cancellation(tag: str) -> None:
    entered = asyncio.Event()

    async def stubborn(message: BusMessage) -> None:
        entered.set()
        # A handler bug: it returns as if nothing happened when cancelled.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    recorder = Recorder(behaviour=stubborn)
    dispatcher = SubscriberDispatcher(recorder)
    dispatcher.start()
    dispatcher.put(data(tag, 0))
    dispatcher.put(data(tag, 1))
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    await asyncio.wait_for(dispatcher.stop(), TIMEOUT)  # the lane sees it is closed and ends
    assert recorder.texts(tag) == [f"{tag}:0"]
    assert dispatcher.statistics().dropped == 1


async def test_cancel_and_wait_returns_normally_when_only_the_tasks_were_cancelled() -> None:
    tasks = [asyncio.create_task(asyncio.Event().wait()) for _ in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert all(task.cancelled() for task in tasks)


async def test_cancel_and_wait_ends_a_task_that_lost_its_first_cancel() -> None:
    # What CPython 3.11's wait_for does when a cancel lands as its inner future completes: the
    # cancel is swallowed and a loop around it runs on. Seen stopping 500 pull loops at once.
    cancels = 0

    async def swallows_the_first_cancel() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise

    task = asyncio.create_task(swallows_the_first_cancel())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), TIMEOUT)
    assert task.cancelled() and cancels == 2


async def test_observer_hooks_wrap_every_handler_call(tag: str) -> None:
    events: list[tuple[object, ...]] = []

    class Observer:
        def on_dispatch_start(self, subscriber: str, lane: Lane, message: BusMessage) -> object:
            events.append(("start", subscriber, lane, message.source))
            return ("token", len(events))

        def on_dispatch_error(
            self,
            token: object,
            subscriber: str,
            lane: Lane,
            message: BusMessage,
            error: BaseException,
        ) -> None:
            events.append(("error", token, lane, type(error).__name__))

        def on_dispatch_end(
            self, token: object, subscriber: str, lane: Lane, message: BusMessage, duration: float
        ) -> None:
            assert duration >= 0
            events.append(("end", token, lane))

    async def fail_system(message: BusMessage) -> None:
        if isinstance(message, BusCancelMessage):
            raise KeyError("boom")

    recorder = Recorder(behaviour=fail_system)
    dispatcher = SubscriberDispatcher(recorder, observer=Observer())
    dispatcher.put(data(tag, 0))
    dispatcher.start()
    await recorder.wait_until(lambda: recorder.count(tag) == 1)
    dispatcher.put(system(tag))
    await recorder.wait_until(lambda: recorder.count(tag) == 2)
    await dispatcher.stop()
    name = recorder.name
    assert events == [
        ("start", name, Lane.DATA, tag),
        ("end", ("token", 1), Lane.DATA),
        ("start", name, Lane.SYSTEM, tag),
        ("error", ("token", 3), Lane.SYSTEM, "KeyError"),
        ("end", ("token", 3), Lane.SYSTEM),
    ]
    assert dispatcher.statistics().system.failed == 1


async def test_a_failing_observer_does_not_break_dispatch(
    tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(NoOpDispatchObserver):
        def on_dispatch_start(self, subscriber: str, lane: Lane, message: BusMessage) -> object:
            raise RuntimeError("observer bug")

    class BrokenSubclass(Broken):
        pass

    recorder = Recorder()
    dispatcher = SubscriberDispatcher(recorder, observer=BrokenSubclass())
    dispatcher.start()
    with caplog.at_level(logging.ERROR):
        dispatcher.put(data(tag, 0))
        dispatcher.put(data(tag, 1))
        await recorder.wait_until(lambda: recorder.count(tag) == 2)
    await dispatcher.stop()
    assert dispatcher.statistics().data.failed == 0
    assert sum("observer" in r.getMessage() for r in caplog.records) == 2


async def test_time_slice_must_be_positive() -> None:
    with pytest.raises(ValueError, match="time_slice"):
        SubscriberDispatcher(Recorder(), time_slice=0)
