"""Per-subscriber priority dispatch: a system lane and a data lane, each with its own task.

Every subscriber gets two lanes. A lane is a :class:`collections.deque` plus one waiter future
that the lane's task parks on when the deque is empty; this costs less per message than an
:class:`asyncio.Queue`. System messages go to the system lane and data messages to the data
lane, so a slow or blocked data handler never delays a system message, and data messages are
handled in FIFO order.

An ``await`` on a coroutine that does not suspend never returns control to the event loop. A
data lane draining a deep queue with handlers that never suspend would hold the loop for the
whole backlog: the system lane's task (and, on a NatsBus, the socket reader) could not run.
So a lane yields to the loop after a message whenever the system lane has work waiting, and
whenever it has run for longer than a short time slice without yielding.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from time import time as _wall
from typing import Final, Protocol

from natsbus.bus.lanes import LaneQueue, LaneStatistics
from natsbus.bus.limits import QueueLimits
from natsbus.bus.subscriber import BusSubscriber
from natsbus.bus.tally import TIMING_BUCKETS, BusTally
from natsbus.messages import BusMessage, BusSystemMessage, Lane
from natsbus.tasks import cancel_and_wait

__all__ = [
    "DEEP_BACKLOG",
    "DEFAULT_TIME_SLICE",
    "SAMPLE_EVERY",
    "DispatchObserver",
    "DispatcherStatistics",
    "Lane",
    "LaneQueue",
    "LaneStatistics",
    "NoOpDispatchObserver",
    "SubscriberDispatcher",
]

logger = logging.getLogger(__name__)

DEFAULT_TIME_SLICE: Final = 0.0002
"""Seconds a lane may hold the event loop before it yields (0.2 ms).

Every hop of a callback chain that ends in a lane (a timer, then a task that sends, say, or a
socket read, a reader task and a subscription callback on a NatsBus) waits up to one slice
while a flooded lane drains, so the slice bounds latency per hop. A yield costs about 5 us, so
0.2 ms costs a draining lane at most ~2.5% of its throughput and keeps a 3-hop chain under
1 ms (``bench/bus_local.py`` measures both).
"""

DEEP_BACKLOG: Final = 64
"""Queue depth from which a lane's dispatch timings are sampled (see :data:`SAMPLE_EVERY`)."""

SAMPLE_EVERY: Final = 64
"""While a lane drains a backlog deeper than :data:`DEEP_BACKLOG`, one message in this many
has its latency and handler duration timed, and counts for all of them in the histograms
(a message is timed only with that many behind it, so a backlog that drains is counted in
full; a lane stopped mid-backlog may over-count by less than this). Timing a message costs
about as much as a no-op in-process dispatch: 1 in 16 cost a flood ~6% of its throughput,
1 in 64 ~1.5% (``bench/overhead.py``)."""

_NOTHING_URGENT: Final[deque[BusMessage]] = deque(maxlen=0)
"""Stands in for "the other lane" of the system lane: always empty, so never urgent."""
_STEP_ASIDE: Final = 3
"""Turns of the event loop the data lane gives, at most, to other ready work after a slice."""


class DispatchObserver(Protocol):
    """Hooks called around every handler call; the seam for metrics and tracing.

    All three run in the lane's task, synchronously, immediately around the handler, so a
    context variable set in :meth:`on_dispatch_start` (an OpenTelemetry context, say) is the
    handler's context. Dispatch latency is ``time.time() - message.sent_at`` at start. An
    exception raised by a hook is logged and does not disturb dispatch.

    An observer may also have a class attribute ``observes_untraced_messages = False``: its
    hooks are then called only for messages that carry a ``trace_context``, and the others take
    the dispatcher's fast path (a tracing observer needs no more, and costs nothing on untraced
    traffic). Without the attribute every message is observed.
    """

    def on_dispatch_start(self, subscriber: str, lane: Lane, message: BusMessage) -> object:
        """Called just before the handler runs.

        Returns:
            Any token; it is passed back to the other two hooks for this dispatch.
        """
        ...

    def on_dispatch_error(
        self, token: object, subscriber: str, lane: Lane, message: BusMessage, error: BaseException
    ) -> None:
        """Called when the handler raised (before :meth:`on_dispatch_end`)."""
        ...

    def on_dispatch_end(
        self, token: object, subscriber: str, lane: Lane, message: BusMessage, duration: float
    ) -> None:
        """Called after every handler call, even a failed or cancelled one.

        ``duration`` is the handler's run time in seconds (``time.perf_counter`` clock).
        """
        ...


class NoOpDispatchObserver:
    """The default observer: does nothing, and dispatchers skip it entirely (zero cost)."""

    def on_dispatch_start(self, subscriber: str, lane: Lane, message: BusMessage) -> object:
        """Do nothing."""
        return None

    def on_dispatch_error(
        self, token: object, subscriber: str, lane: Lane, message: BusMessage, error: BaseException
    ) -> None:
        """Do nothing."""

    def on_dispatch_end(
        self, token: object, subscriber: str, lane: Lane, message: BusMessage, duration: float
    ) -> None:
        """Do nothing."""


@dataclass(frozen=True, slots=True)
class DispatcherStatistics:
    """A snapshot of one subscriber's dispatcher.

    Attributes:
        subscriber: The subscriber's name.
        running: Whether its lane tasks are running.
        system: The system lane.
        data: The data lane.
        dropped: Messages still queued when the dispatcher stopped, never handled.
    """

    subscriber: str
    running: bool
    system: LaneStatistics
    data: LaneStatistics
    dropped: int


class SubscriberDispatcher:
    """Delivers one subscriber's messages through a system lane and a data lane.

    Messages can be put before :meth:`start`; they wait in the lanes. :meth:`halt` pauses
    (queued messages wait for the next :meth:`start`); :meth:`stop` is final: queued messages
    are dropped (and counted) and later puts are ignored.

    Args:
        subscriber: The subscriber to deliver to.
        observer: Hooks called around every handler call; None (the default) or a
            :class:`NoOpDispatchObserver` costs nothing.
        time_slice: Seconds a lane may hold the event loop before yielding to it.
        tally: Where to count dispatch timings, handler errors and drops for metrics; None
            (the default) counts nothing.
        limits: The bounds of the two lanes (``system_lane``, ``data_lane``).
    """

    def __init__(
        self,
        subscriber: BusSubscriber,
        *,
        observer: DispatchObserver | None = None,
        time_slice: float = DEFAULT_TIME_SLICE,
        tally: BusTally | None = None,
        limits: QueueLimits | None = None,
    ) -> None:
        if time_slice <= 0:
            raise ValueError(f"time_slice must be positive, got {time_slice!r}")
        self._subscriber = subscriber
        self._name = subscriber.name
        # Exactly the no-op class (not a subclass that overrides a hook) takes the fast path.
        self._observer = None if type(observer) is NoOpDispatchObserver else observer
        self._observe_all: bool = getattr(observer, "observes_untraced_messages", True)
        self._tally = tally
        self._time_slice = time_slice
        limits = limits or QueueLimits()
        name = self._name
        self._system = LaneQueue(Lane.SYSTEM, limits.system_lane, subscriber=name, tally=tally)
        self._data = LaneQueue(Lane.DATA, limits.data_lane, subscriber=name, tally=tally)
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        self._generation = 0  # bumped by halt(): a lane task of an older one returns
        self._closed = False
        self._dropped = 0

    @property
    def name(self) -> str:
        """The subscriber's name, read once when the dispatcher was made."""
        return self._name

    @property
    def subscriber(self) -> BusSubscriber:
        """The subscriber this dispatcher delivers to."""
        return self._subscriber

    @property
    def lanes(self) -> tuple[LaneQueue, LaneQueue]:
        """The system lane and the data lane, for a bus's fan-out (see :meth:`put`)."""
        return self._system, self._data

    @property
    def running(self) -> bool:
        """Whether the lane tasks are running."""
        return bool(self._tasks) and not self._closed

    def put(self, message: BusMessage) -> None:
        """Queue a message on the lane its priority selects (ignored once stopped).

        Args:
            message: The message to deliver.
        """
        if self._closed:
            self._dropped += 1
            return
        (self._system if isinstance(message, BusSystemMessage) else self._data).put(message)

    def start(self) -> None:
        """Start both lane tasks (a no-op if started); needs a running event loop.

        Raises:
            RuntimeError: The dispatcher was stopped.
        """
        if self._closed:
            raise RuntimeError(f"the dispatcher of {self._name!r} was stopped")
        if self._tasks:
            return
        # The system task is created first so that, given the same wake-up, it runs first.
        self._tasks = (
            asyncio.create_task(
                self._run(self._system, _NOTHING_URGENT),
                name=f"natsbus-dispatch-system[{self._name}]",
            ),
            asyncio.create_task(
                self._run(self._data, self._system.queue),
                name=f"natsbus-dispatch-data[{self._name}]",
            ),
        )

    def cancel(self) -> None:
        """Stop dispatching now, without waiting: cancel the tasks, drop what is queued.

        Idempotent. Call :meth:`stop` (or await :func:`cancel_and_wait`) to wait for the tasks.
        A handler that stops its own dispatcher is not cancelled: it runs to its end, and
        nothing is handled after it.
        """
        if self._closed:
            return
        self._closed = True
        for lane in (self._system, self._data):
            self._dropped += len(lane.queue)
            if self._tally is not None and lane.queue:
                self._tally.count_drop("unhandled_at_stop", len(lane.queue))
            lane.queue.clear()
            lane.wake()  # a parked task wakes, finds the lane empty and closed, and returns
        if self._tasks:  # started, so there is a running loop to ask for the current task
            current = asyncio.current_task()
            for task in self._tasks:
                if task is not current:
                    task.cancel()

    async def halt(self) -> None:
        """Stop the lane tasks but keep what is queued: :meth:`start` resumes from there.

        Raises:
            asyncio.CancelledError: The *caller* was cancelled while waiting.
        """
        tasks, self._tasks = self._tasks, ()
        self._generation += 1
        await cancel_and_wait(tasks)

    async def stop(self) -> None:
        """Stop dispatching and wait for both lane tasks to end. Safe to call twice.

        Raises:
            asyncio.CancelledError: The *caller* was cancelled while waiting.
        """
        self.cancel()
        await cancel_and_wait(self._tasks)

    def statistics(self) -> DispatcherStatistics:
        """Return a snapshot of the lane depths and counters."""
        return DispatcherStatistics(
            self._name,
            self.running,
            self._system.statistics(),
            self._data.statistics(),
            self._dropped,
        )

    async def _run(self, lane: LaneQueue, urgent: deque[BusMessage]) -> None:  # noqa: PLR0912, PLR0915
        """Handle the lane's messages one by one until cancelled (one long loop, inlined for speed).

        Yields to the loop after a message when ``urgent`` (the system lane, for the data lane)
        has work, or when the time slice is used up, and once more before a message while
        ``urgent`` has work (the system lane may be scheduled behind this one in the turn).
        While a system handler is suspended with more system messages queued, the data lane
        thus yields twice per message: slower, never wrong.
        """
        # Everything the loop touches per message is bound to a local once.
        queue = lane.queue
        popleft = queue.popleft
        handler = self._subscriber.on_bus_message
        observer = self._observer
        observe_all = self._observe_all
        tally = self._tally
        # Metrics: the lane's timings by message class, or None when nothing is counted.
        timings = (
            None if tally is None else (tally.system if lane.kind is Lane.SYSTEM else tally.data)
        )
        bounds = TIMING_BUCKETS
        first_bound = bounds[0]  # most in-process timings fall below it: skip the bisect
        skip = 0  # messages left before the next timed one, while sampling a backlog
        weight = 0
        time_slice = self._time_slice
        sleep = asyncio.sleep
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        generation = self._generation
        deadline = perf_counter() + time_slice
        # Wall time is perf_counter() + offset, re-measured every slice: one clock call per
        # message then serves the latency, the handler's duration and the slice's deadline.
        offset = _wall() - perf_counter() if timings is not None else 0.0
        deferred = False
        # The loop's queue of callbacks ready to run (CPython's event loop: other loops have
        # none to look at, and the data lane then yields once per slice, as the system lane).
        ready: deque[object] | None = getattr(loop, "_ready", None)
        step_aside = _STEP_ASIDE if lane.kind is Lane.DATA and ready is not None else 0
        if ready is None:
            ready = deque()
        while True:
            if not queue:
                if self._closed:
                    return
                if lane.slow:
                    lane.drained()
                skip = 0  # the backlog is drained: time the next message again
                waiter = loop.create_future()
                lane.waiter = waiter
                await waiter
                deadline = perf_counter() + time_slice
                if timings is not None:
                    offset = _wall() - perf_counter()
                continue
            if urgent and not deferred:
                # A system message is queued and its lane has not run yet this turn: let it
                # go first. Once per message, so a suspended system handler cannot make the
                # data lane spin.
                deferred = True
                await sleep(0)
                continue
            deferred = False
            message = popleft()
            if skip:
                # Sampling a backlog: counted by the weight of the last timed message.
                skip -= 1
                weight = 0
            elif timings is not None:
                # Inline rather than through a hook: this runs once per message per subscriber.
                started = perf_counter()
                # Draining a deep backlog, time one message in SAMPLE_EVERY and count it for
                # all of them: timing a message costs about as much as an in-process dispatch.
                # A shallow lane is timed message by message.
                weight = SAMPLE_EVERY if len(queue) >= DEEP_BACKLOG else 1
                skip = weight - 1
                record = timings[message.__class__]
                # Wall clocks: the sender's and ours; skew between hosts shows in it.
                latency = started + offset - message.sent_at
                record.latency[0 if latency < first_bound else bisect_left(bounds, latency)] += (
                    weight
                )
                record.latency_sum += latency * weight
            if observer is None or not (observe_all or message.trace_context is not None):
                # A subscriber's exception must not end its dispatch: the subscriber would
                # silently stop receiving everything, cancels included. Log, count, go on.
                try:
                    await handler(message)
                except Exception:
                    self._failed(lane, message)
                except asyncio.CancelledError:
                    if task.cancelling():
                        raise  # we are being stopped
                    self._failed(lane, message)  # the handler leaked a CancelledError
            else:
                await self._handle_observed(lane, message, observer, task)
            now = perf_counter()
            if weight:  # this message was timed
                duration = now - started
                record.duration[0 if duration < first_bound else bisect_left(bounds, duration)] += (
                    weight
                )
                record.duration_sum += duration * weight
            lane.handled += 1
            if self._generation != generation:
                return  # halted by the handler just run: the next start() takes over
            if urgent or now >= deadline:
                await sleep(0)
                # What I/O woke meanwhile (a connection's reader with a cancel, say) is queued
                # behind this lane in the loop's turn: let it run before the next data handler,
                # a few turns at most, so that nothing else can starve this lane.
                for _ in range(step_aside):
                    if not ready:
                        break
                    await sleep(0)
                deadline = perf_counter() + time_slice
                if timings is not None:
                    offset = _wall() - perf_counter()

    async def _handle_observed(
        self,
        lane: LaneQueue,
        message: BusMessage,
        observer: DispatchObserver,
        task: asyncio.Task[None],
    ) -> None:
        """Run the handler between the observer's hooks (the slower, instrumented path)."""
        name = self._name
        kind = lane.kind
        token = _call_hook(observer.on_dispatch_start, name, kind, message)
        started = perf_counter()
        try:
            await self._subscriber.on_bus_message(message)
        except Exception as error:  # survive, as in _run
            _call_hook(observer.on_dispatch_error, token, name, kind, message, error)
            self._failed(lane, message)
        except asyncio.CancelledError as error:
            if task.cancelling():
                raise
            _call_hook(observer.on_dispatch_error, token, name, kind, message, error)
            self._failed(lane, message)
        finally:
            _call_hook(
                observer.on_dispatch_end, token, name, kind, message, perf_counter() - started
            )

    def _failed(self, lane: LaneQueue, message: BusMessage) -> None:
        """Log and count a handler that raised; called from inside the ``except`` block."""
        lane.failed += 1
        if self._tally is not None:
            self._tally.count_handler_error(lane.kind, message.__class__)
        logger.exception(
            "subscriber %r raised handling %s on the %s lane; dispatch continues",
            self._name,
            type(message).__name__,
            lane.kind.value,
        )


def _call_hook(hook: Callable[..., object], *args: object) -> object:
    """Call an observer hook; its failure is logged, never allowed to break dispatch."""
    try:
        return hook(*args)
    except Exception:
        logger.exception("dispatch observer hook %r raised; ignored", hook)
        return None
