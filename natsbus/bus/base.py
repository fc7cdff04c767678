"""The abstract :class:`WorkerBus`: subscriptions, lifecycle, routing of sent messages."""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
from collections import defaultdict
from time import time as _now
from types import TracebackType
from typing import ClassVar, Protocol, Self, cast, runtime_checkable

from natsbus._events import EventHandlers
from natsbus._ids import new_id
from natsbus.bus.dispatch import (
    DEFAULT_TIME_SLICE,
    DispatchObserver,
    SubscriberDispatcher,
)
from natsbus.bus.lanes import LaneQueue
from natsbus.bus.limits import QueueLimits
from natsbus.bus.statistics import BusState, BusStatistics, ConsumerStatistics
from natsbus.bus.subscriber import BusSubscriber
from natsbus.bus.tally import BusTally
from natsbus.messages import BusLocalMessage, BusMessage, BusSystemMessage
from natsbus.tasks import TaskManager

__all__ = [
    "BusMetricsProvider",
    "BusObserverFactory",
    "BusState",
    "BusStatistics",
    "SendObserver",
    "WorkerBus",
]

logger = logging.getLogger(__name__)

_bus_numbers = itertools.count(1)


class BusMetricsProvider(Protocol):
    """Gives each bus the :class:`~natsbus.bus.tally.BusTally` it counts into.

    :class:`natsbus.observability.BusMetrics` is one; the bus layer knows only this shape.
    """

    def tally_for(self, bus: WorkerBus) -> BusTally:
        """Return the tally ``bus`` counts into (buses of one kind may share one)."""
        ...


def _has_methods(obj: object, *names: str) -> bool:
    return obj is not None and all(callable(getattr(obj, name, None)) for name in names)


@runtime_checkable
class BusObserverFactory(Protocol):
    """Makes the dispatch observer of one bus (which may then label what it sees by bus)."""

    def observer_for(self, bus: WorkerBus) -> DispatchObserver:
        """Return the observer for ``bus``; called once, when the bus is made."""
        ...


@runtime_checkable
class SendObserver(Protocol):
    """Hooks around every ``send()``: the seam for producer spans.

    A dispatch observer that also has these methods gets them called by the bus.
    :meth:`on_send` runs before the message is published, so it may set
    ``message.trace_context``.
    """

    def on_send(self, bus: WorkerBus, message: BusMessage) -> object:
        """Called after the message is stamped, before it is published.

        Returns:
            A token passed back to :meth:`on_send_end`; None to skip that call.
        """
        ...

    def on_send_end(self, token: object, error: BaseException | None) -> None:
        """Called when the publish returned, or raised ``error``."""
        ...


class WorkerBus(EventHandlers, abc.ABC):
    """Abstract base for inter-worker and runner-worker communication.

    Pub/sub messaging where each subscriber receives messages independently through its own
    pair of priority lanes: system messages (a cancel, say) are handled ahead of queued data
    messages, and data messages in FIFO order. On a local bus every subscriber receives every
    message and filters on ``message.target`` itself.

    Subclasses implement :meth:`publish` for their transport. :meth:`send` stamps the message
    and keeps local-only messages in the process. A network bus overrides :meth:`start` and
    :meth:`stop` to manage its connection (calling ``super()``) and calls
    :meth:`on_message_received` for every message that arrives.

    Lifecycle: messages sent before :meth:`start` wait and are delivered once started;
    :meth:`start` and :meth:`stop` are safe to call twice; messages sent to a stopped bus are
    dropped and counted (as pipecat does, ``send()`` does not raise then), and an in-process
    bus may be started again. The bus is an async context manager that starts and stops it.
    As in pipecat, a runner hands the bus its :class:`~natsbus.TaskManager` with
    :meth:`setup` before starting it; a bus that gets none makes its own.

    Args:
        name: A name for logs; defaults to the class name and a number.
        observer: Hooks called around every handler call (tracing), or a
            :class:`BusObserverFactory` that makes them for this bus. If the observer is also
            a :class:`SendObserver`, its hooks run around every ``send()``.
        time_slice: Seconds a dispatch lane may hold the event loop before yielding.
        metrics: Where to count messages, timings and drops for metrics
            (:class:`natsbus.observability.BusMetrics`); None (the default) counts nothing.
        limits: The bounds of the subscribers' lanes (and of a network bus's subscriptions);
            :class:`~natsbus.bus.limits.QueueLimits` says what happens at each.
    """

    kind: ClassVar[str] = "local"
    """The kind of bus, as metrics and spans label it."""

    loops_back: ClassVar[bool] = False
    """Whether :meth:`publish` hands every message straight to this bus's own subscribers
    (by :meth:`_deliver`), as an in-process bus does. Such a bus counts a message it sends once,
    in ``BusTally.looped``, which metrics report as both published and received."""

    def __init__(
        self,
        *,
        name: str | None = None,
        observer: DispatchObserver | BusObserverFactory | None = None,
        time_slice: float = DEFAULT_TIME_SLICE,
        metrics: BusMetricsProvider | None = None,
        limits: QueueLimits | None = None,
    ) -> None:
        if time_slice <= 0:
            raise ValueError(f"time_slice must be positive, got {time_slice!r}")
        self._limits = limits or QueueLimits()
        self._name = name if name is not None else f"{type(self).__name__}#{next(_bus_numbers)}"
        # What isinstance() against the runtime-checkable protocols checks, without their
        # cost (about 50 us each on Python 3.11: a bus is made per session).
        if _has_methods(observer, "observer_for"):
            observer = cast(BusObserverFactory, observer).observer_for(self)
        self._observer: DispatchObserver | None = cast(DispatchObserver | None, observer)
        self._sender = (
            cast(SendObserver, observer)
            if _has_methods(observer, "on_send", "on_send_end")
            else None
        )
        self._tally = metrics.tally_for(self) if metrics is not None else None
        # Where send() counts a message: bound once, as send() is the hot path.
        self._sent_counts: defaultdict[type[BusMessage], int] | None = None
        if self._tally is not None:
            self._tally.buses.add(self)
            self._sent_counts = self._tally.looped if self.loops_back else self._tally.published
        # Where a local-only message goes: a bus that loops back has counted it as received.
        self._receive_sent = self._deliver if self.loops_back else self.on_message_received
        self._time_slice = time_slice
        self._state = BusState.CREATED
        # The hot paths test this bool: comparing an enum member costs ten times more.
        self._stopped = False
        self._dispatchers: dict[str, SubscriberDispatcher] = {}
        # Snapshots of every dispatcher's lanes, rebuilt on (un)subscribe, so the fan-out in
        # on_message_received() iterates a tuple that cannot change under it.
        self._system_lanes: tuple[LaneQueue, ...] = ()
        self._data_lanes: tuple[LaneQueue, ...] = ()
        self._dropped = 0
        self._task_manager: TaskManager | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._state.value}>"

    @property
    def name(self) -> str:
        """The bus's name, for logs."""
        return self._name

    @property
    def state(self) -> BusState:
        """The bus's lifecycle state."""
        return self._state

    @property
    def task_manager(self) -> TaskManager:
        """The task manager given by :meth:`setup` (one of the bus's own if none was)."""
        if self._task_manager is None:
            self._task_manager = TaskManager()
        return self._task_manager

    async def setup(self, task_manager: TaskManager) -> None:
        """Hand the bus the task manager it makes its tasks with (pipecat's runner calls it).

        Args:
            task_manager: The runner's task manager.
        """
        self._task_manager = task_manager

    @property
    def tally(self) -> BusTally | None:
        """What this bus counts for metrics, or None when metrics are off."""
        return self._tally

    @property
    def subscribers(self) -> tuple[BusSubscriber, ...]:
        """The subscribers currently registered, in subscription order."""
        return tuple(dispatcher.subscriber for dispatcher in self._dispatchers.values())

    async def start(self) -> None:
        """Start dispatch tasks for all registered subscribers. A no-op if already started.

        After :meth:`stop`, this starts the bus again: what was queued when it stopped is
        handled then (a network bus refuses, see its own :meth:`start`).
        """
        if self._state is BusState.STARTED:
            return
        self._state = BusState.STARTED
        self._stopped = False
        for dispatcher in self._dispatchers.values():
            dispatcher.start()
        # Let the new tasks run their first step before start() returns.
        await asyncio.sleep(0)

    async def stop(self) -> None:
        """Stop all dispatch tasks. Safe to call twice.

        Messages still queued stay in their lanes until the bus is started again (or the
        subscriber is unsubscribed); messages sent from now on are dropped and counted.
        Called from inside a handler, it lets that handler finish (nothing else is handled).

        Raises:
            asyncio.CancelledError: The caller was cancelled while waiting for the tasks.
        """
        if self._state is BusState.STOPPED:
            return
        self._state = BusState.STOPPED
        self._stopped = True
        for dispatcher in list(self._dispatchers.values()):
            await dispatcher.halt()

    async def subscribe(self, subscriber: BusSubscriber) -> None:
        """Register a subscriber to receive messages from the bus.

        Idempotent: re-subscribing an already-registered subscriber is a no-op. On a started
        bus the subscriber's dispatch starts at once. It receives messages sent from now on.

        Args:
            subscriber: The :class:`BusSubscriber` to register.

        Raises:
            ValueError: Another subscriber with the same name is registered, or the name is
                empty.
        """
        name = subscriber.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"a subscriber name must be a non-empty str, got {name!r}")
        existing = self._dispatchers.get(name)
        if existing is not None:
            if existing.subscriber is subscriber:
                return
            # The reference keys subscribers by name; silently ignoring a second object with
            # the same name would leave it deaf without anyone noticing.
            raise ValueError(f"another subscriber named {name!r} is already subscribed")
        dispatcher = SubscriberDispatcher(
            subscriber,
            observer=self._observer,
            time_slice=self._time_slice,
            tally=self._tally,
            limits=self._limits,
        )
        self._dispatchers[name] = dispatcher
        self._rebuild_lanes()
        if self._state is BusState.STARTED:
            dispatcher.start()
            await asyncio.sleep(0)

    async def unsubscribe(self, subscriber: BusSubscriber) -> None:
        """Remove a subscriber and cancel its dispatch tasks; it receives nothing more.

        A no-op for a subscriber that is not registered. Its queued messages are dropped.

        Args:
            subscriber: The :class:`BusSubscriber` to remove.
        """
        existing = self._dispatchers.get(subscriber.name)
        if existing is None or existing.subscriber is not subscriber:
            return
        del self._dispatchers[existing.name]
        self._rebuild_lanes()
        await existing.stop()

    async def send(self, message: BusMessage) -> None:
        """Send a message through the bus.

        Stamps ``message.id`` (unique across processes) and ``message.sent_at`` (Unix time),
        then delivers local-only messages (:class:`~natsbus.BusLocalMessage`) straight to the
        local subscribers and passes every other message to :meth:`publish`.

        Args:
            message: The bus message to send.

        A stopped bus drops the message and counts it (``statistics().dropped`` and the
        ``bus_stopped`` drop reason), as pipecat's buses do not raise there either.

        Raises:
            TypeError: ``message`` is not a :class:`~natsbus.BusMessage`.
        """
        if self._stopped:
            self._drop_stopped(message)
            return
        if not isinstance(message, BusMessage):
            raise TypeError(f"expected a BusMessage, got {message!r}")
        # WorkerBus.stamp, inlined: this is the hot path.
        message.id = new_id()
        message.sent_at = _now()
        counts = self._sent_counts
        if counts is not None:
            counts[message.__class__] += 1
        sender = self._sender
        if sender is not None:
            try:
                token = sender.on_send(self, message)
            except Exception:
                logger.exception("send observer hook %r raised; ignored", sender.on_send)
                token = None
            if token is not None:  # None: nothing to follow up (an untraced message)
                await self._send_observed(message, sender, token)
                return
        if isinstance(message, BusLocalMessage):
            self._receive_sent(message)
        else:
            await self.publish(message)

    async def _send_observed(
        self, message: BusMessage, sender: SendObserver, token: object
    ) -> None:
        """Publish, then call the send observer's end hook (the slower, traced path)."""
        try:
            if isinstance(message, BusLocalMessage):
                self._receive_sent(message)
            else:
                await self.publish(message)
        except BaseException as error:
            self._send_ended(sender, token, error)
            raise
        self._send_ended(sender, token, None)

    @staticmethod
    def _send_ended(sender: SendObserver, token: object, error: BaseException | None) -> None:
        try:
            sender.on_send_end(token, error)
        except Exception:
            logger.exception("send observer hook %r raised; ignored", sender.on_send_end)

    def stamp(self, message: BusMessage) -> None:
        """Stamp the envelope metadata that :meth:`send` stamps, for a message made inside a bus.

        A transport that answers on a user's behalf (an error response, say) stamps its
        message with this before handing it on.

        Args:
            message: The message to stamp with a fresh ``id`` and ``sent_at``.
        """
        message.id = new_id()
        message.sent_at = _now()

    @abc.abstractmethod
    async def publish(self, message: BusMessage) -> None:
        """Publish a message to the transport.

        Subclasses implement this for their transport. Called by :meth:`send` for every
        message that is not local-only, already stamped.

        Args:
            message: The bus message to publish.
        """

    def on_message_received(self, message: BusMessage) -> None:
        """Deliver a message to all local subscribers via their priority lanes.

        Called by bus implementations when a message arrives, from a local :meth:`send` or
        from a network transport. Never blocks. After :meth:`stop` the message is dropped
        (and counted), since a transport may still hand over a message while shutting down.

        Args:
            message: The bus message to deliver.
        """
        tally = self._tally
        if tally is not None and not self._stopped:
            tally.received[message.__class__] += 1
        self._deliver(message)

    def _deliver(self, message: BusMessage) -> None:
        """Queue a message on every local subscriber's lane; dropped once the bus stopped.

        Not counted as received: a bus that :attr:`loops_back` counted it when it was sent.
        """
        if self._stopped:
            self._drop_stopped(message)
            return
        lanes = self._system_lanes if isinstance(message, BusSystemMessage) else self._data_lanes
        for lane in lanes:
            # LaneQueue.put, inlined: this runs once per message per subscriber.
            queue = lane.queue
            if len(queue) >= lane.limit and not lane.overflow(message):
                continue
            queue.append(message)
            if lane.waiter is not None:
                lane.wake()

    def destination_of(self, message: BusMessage) -> str:
        """Where a message goes, for spans and logs: here its target (or ``(broadcast)``).

        A network bus names the subject it publishes the message on.
        """
        return message.target if message.target is not None else "(broadcast)"

    def _drop_stopped(self, message: BusMessage) -> None:
        self._dropped += 1
        if self._tally is not None:
            self._tally.count_drop("bus_stopped")
        if self._dropped == 1 or logger.isEnabledFor(logging.DEBUG):
            logger.info("%r is stopped: %s dropped", self, type(message).__name__)

    @property
    def redelivers_jobs(self) -> bool:
        """Whether a job request left unanswered when the bus stops goes to another replica.

        False here: an in-process bus has no replicas. A network bus that keeps jobs durable
        (:class:`~natsbus.bus.nats.NatsBus`) says True, and a draining worker then leaves a
        request it will not run unanswered instead of answering it ``cancelled``.
        """
        return False

    def not_ready_reasons(self) -> list[str]:
        """Say why the bus cannot serve now (empty when it can): for readiness probes.

        Here: not started, or stopped. A network bus adds its connections and consumers.
        """
        if self._state is BusState.STARTED:
            return []
        return [f"bus {self._name!r} is {self._state.value}"]

    async def pause_jobs(self) -> None:
        """Stop taking new job requests, for a drain; every other message keeps flowing.

        A no-op here: an in-process bus delivers job requests like any message, and a draining
        worker answers them itself. :class:`~natsbus.bus.nats.NatsBus` stops pulling requests
        from JetStream, so that another replica takes them.
        """
        return None  # deliberately nothing: see above

    async def refresh_interest(self) -> None:
        """Tell the bus that a subscriber's targets, or whether it takes jobs, changed.

        A no-op in process (every subscriber sees every message); a network bus subscribes
        and pulls again accordingly.
        """
        return None  # deliberately nothing: see above

    async def consumer_statistics(self, timeout: float = 2.0) -> list[ConsumerStatistics]:
        """Ask the server how far behind each of the bus's consumers is: none in process.

        Args:
            timeout: Seconds to wait for each answer.
        """
        del timeout  # nothing to ask
        return []

    @property
    def limits(self) -> QueueLimits:
        """The bounds of this bus's queues."""
        return self._limits

    def statistics(self) -> BusStatistics:
        """Return a snapshot of the bus: state, drops, limits, and every subscriber's lanes."""
        return BusStatistics(
            self._state,
            self._dropped,
            {name: dispatcher.statistics() for name, dispatcher in self._dispatchers.items()},
            self._limits,
        )

    def _rebuild_lanes(self) -> None:
        lanes = [dispatcher.lanes for dispatcher in self._dispatchers.values()]
        self._system_lanes = tuple(system for system, _ in lanes)
        self._data_lanes = tuple(data for _, data in lanes)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
