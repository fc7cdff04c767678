"""``natsbus.pipecat.NatsBus``: a pipecat ``WorkerBus`` whose transport is natsbus's NatsBus.

A pipecat app swaps ``RedisBus(redis=..., channel=...)`` for
``NatsBus(servers=..., channel=...)`` and nothing else. Inside, a
:class:`natsbus.bus.nats.NatsBus` does the transport: system and data messages on their own
subjects and connections, targeted delivery, job messages on JetStream (stored, taken by one
replica, acknowledged when answered, redelivered after a crash), natsbus's metrics and traces.

Each pipecat subscriber (a worker, the runner, a bridge) is represented on the inner bus by a
natsbus subscriber of the same name, so it gets natsbus's per-subscriber priority lanes: a
system message (a cancel) is handled ahead of the data messages queued for it, and what it
receives is handed to it as the pipecat message, after its own ``accepts_bus_message``. A
pipecat worker's name is the target it answers to and takes jobs for, while it is active.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pipecat.bus.messages as pm
from pipecat.bus.bus import WorkerBus as PipecatWorkerBus
from pipecat.bus.subscriber import BusSubscriber as PipecatSubscriber
from pipecat.workers.base_worker import BaseWorker as PipecatWorker

from natsbus import messages as nm
from natsbus.bus.base import BusMetricsProvider
from natsbus.bus.nats.bus import NatsBus as CoreNatsBus
from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.bus.subscriber import BusSubscriber
from natsbus.errors import CodecError, DecodeError
from natsbus.pipecat._messages import MessageMap, default_messages

__all__ = ["NatsBus"]

logger = logging.getLogger("natsbus.pipecat")


@dataclass(kw_only=True)
class _LocalSystem(nm.BusSystemMessage, nm.BusLocalMessage):
    """A pipecat local-only system message, carried as it is through the inner bus's lanes."""

    message: Any = None


@dataclass(kw_only=True)
class _LocalData(nm.BusDataMessage, nm.BusLocalMessage):
    """A pipecat local-only data message, carried as it is through the inner bus's lanes."""

    message: Any = None


_LOCAL = (_LocalSystem, _LocalData)

_CONVERTED_KEPT: Final = 256
"""How many arrivals the bus keeps the pipecat message of, for its other subscribers."""


class _Member(BusSubscriber):
    """A pipecat subscriber as the inner bus sees it: same name, pipecat messages handed on."""

    def __init__(self, subscriber: PipecatSubscriber, bus: NatsBus) -> None:
        self._subscriber = subscriber
        self._name = subscriber.name
        self._bus = bus
        self._worker = subscriber if isinstance(subscriber, PipecatWorker) else None
        self._taking = self.bus_taking_jobs
        if self._worker is not None:
            # A worker takes jobs while active: when that changes, the inner bus pulls (or
            # stops pulling) its requests, which otherwise wait in the stream for a replica.
            self._worker.add_event_handler("on_activated", self._activity_changed)
            self._worker.add_event_handler("on_deactivated", self._activity_changed)

    def detach(self) -> None:
        """Stop following the worker's activity (it was unsubscribed)."""
        if self._worker is not None:
            self._worker.remove_event_handler("on_activated", self._activity_changed)
            self._worker.remove_event_handler("on_deactivated", self._activity_changed)

    @property
    def subscriber(self) -> PipecatSubscriber:
        return self._subscriber

    @property
    def name(self) -> str:
        return self._name

    @property
    def bus_job_targets(self) -> frozenset[str]:
        # Only workers run jobs; the runner and bridges cost the server no consumer.
        return frozenset((self._name,)) if self._worker is not None else frozenset()

    @property
    def bus_taking_jobs(self) -> bool:
        # Started, not only active: pipecat makes a worker active when it is made, and a
        # runner that meets another announces all its workers, set up or not; a request
        # pulled before setup() would find no TaskManager. It waits in the stream instead.
        worker = self._worker
        return worker is not None and worker.active and worker.started_at is not None

    async def _activity_changed(self, *_: object) -> None:
        taking = self.bus_taking_jobs
        if taking != self._taking:
            self._taking = taking
            await self._bus.core.refresh_interest()

    async def on_bus_message(self, message: nm.BusMessage) -> None:
        converted = message.message if isinstance(message, _LOCAL) else self._bus.converted(message)
        if converted is None:
            return  # no pipecat counterpart: counted by converted()
        subscriber = self._subscriber
        if subscriber.accepts_bus_message(converted):
            await subscriber.on_bus_message(converted)
        if self._worker is not None and self._taking != self.bus_taking_jobs:
            await self._activity_changed()


class NatsBus(PipecatWorkerBus):
    """A pipecat ``WorkerBus`` over NATS and JetStream, for pipecat apps across processes.

    Use it where a pipecat app uses ``RedisBus``::

        bus = NatsBus(servers="nats://nats:4222", channel="session-42")
        runner = WorkerRunner(bus=bus)

    pipecat's own ``Bus*`` messages and frames travel in natsbus's protobuf schema, so a
    natsbus worker on the same channel exchanges lifecycle, job and frame messages with
    pipecat workers. Frame classes travel through a closed table
    (:func:`natsbus.pipecat.register_frame_type` adds an app's own); an unmapped frame or
    message is refused at the sender with an :class:`~natsbus.errors.EncodeError`.

    Args:
        servers: NATS server URL or URLs; overrides ``connect_options.servers``.
        channel: The isolated namespace this bus talks in (a session, a tenant).
        connect_options: Authentication, TLS and reconnect settings.
        jetstream_options: Stream, consumer and retry settings for job messages.
        metrics: Where the inner bus counts for Prometheus
            (:class:`natsbus.observability.BusMetrics`).
        core: A :class:`natsbus.NatsBus` made by the caller, not started, to carry the
            messages instead of one made from the arguments above (for its other settings:
            prefix, codec, tracing observer, lane limits...). Give one or the other.
        messages: The message table (default: the process-wide one).
        **kwargs: Passed to pipecat's ``WorkerBus`` (``name``...).

    Raises:
        ValueError: ``core`` was given with connection arguments.
    """

    def __init__(
        self,
        *,
        servers: str | Sequence[str] | None = None,
        channel: str = "default",
        connect_options: NatsConnectOptions | None = None,
        jetstream_options: JetStreamOptions | None = None,
        metrics: BusMetricsProvider | None = None,
        core: CoreNatsBus | None = None,
        messages: MessageMap | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.messages: MessageMap = messages or default_messages
        """The table pipecat messages go through."""
        if core is None:
            core = CoreNatsBus(
                servers=servers,
                channel=channel,
                connect_options=connect_options,
                jetstream_options=jetstream_options,
                metrics=metrics,
                name=self.name,
            )
        elif servers or connect_options or jetstream_options or metrics or channel != "default":
            raise ValueError("give NatsBus either core= or the connection arguments, not both")
        self._core = core
        self._members: dict[str, _Member] = {}
        # id -> (natsbus message, its pipecat message); the message is kept so its id is not
        # reused while it is here.
        self._converted: dict[int, tuple[nm.BusMessage, pm.BusMessage | None]] = {}

    @property
    def core(self) -> CoreNatsBus:
        """The natsbus NatsBus that carries the messages (statistics, readiness, flush)."""
        return self._core

    @property
    def channel(self) -> str:
        """The channel this bus talks in."""
        return self._core.channel

    async def start(self) -> None:
        """Connect, subscribe for the workers hosted here, and start dispatching.

        Raises:
            BusUnavailableError: No server could be reached, or JetStream is missing there.
            BusPermissionError: The server refused a subscription or JetStream call.
            BusClosedError: The bus was stopped: make a new one.
        """
        if self._running:
            return
        await self._core.start()
        await super().start()

    async def stop(self) -> None:
        """Store what was sent, release the jobs not answered, close and stop. Safe twice."""
        await super().stop()
        await self._core.stop()

    async def subscribe(self, subscriber: PipecatSubscriber) -> None:
        """Register a pipecat subscriber; a network bus then listens for its name.

        Idempotent for the same subscriber.

        Raises:
            ValueError: Another subscriber with the same name is registered.
        """
        member = self._members.get(subscriber.name)
        if member is not None and member.subscriber is subscriber:
            return
        member = _Member(subscriber, self)
        await self._core.subscribe(member)
        self._members[subscriber.name] = member

    async def unsubscribe(self, subscriber: PipecatSubscriber) -> None:
        """Remove a subscriber: it receives nothing more, and its targets are let go."""
        member = self._members.get(subscriber.name)
        if member is None or member.subscriber is not subscriber:
            return
        del self._members[subscriber.name]
        member.detach()
        await self._core.unsubscribe(member)

    async def publish(self, message: pm.BusMessage) -> None:
        """Send a pipecat message over natsbus's transport.

        Raises:
            EncodeError: The message's class, or its frame's, has no wire form (counted in
                ``natsbus_messages_dropped_total{reason="unmapped_type"}``).
            UnsupportedValueError: A payload value cannot travel losslessly.
            MessageTooLargeError: The encoded message exceeds the server's max payload.
        """
        try:
            converted = self.messages.to_natsbus(message)
        except CodecError:
            self.count_drop("unmapped_type")
            raise
        await self._core.send(converted)

    def on_message_received(self, message: pm.BusMessage) -> None:
        """Deliver a pipecat local-only message to this process's subscribers, in its lane."""
        cls = _LocalSystem if isinstance(message, pm.BusSystemMessage) else _LocalData
        carrier = cls(source=message.source, target=message.target, message=message)
        self._core.stamp(carrier)
        self._core.on_message_received(carrier)

    def converted(self, message: nm.BusMessage) -> pm.BusMessage | None:
        """The pipecat message a natsbus message that arrived here is; None if it has none.

        Every subscriber that has one message gets one pipecat object, as in pipecat (and
        the conversion runs once), while the subscribers' lanes are within
        ``_CONVERTED_KEPT`` messages of each other. A message with no pipecat counterpart (a
        natsbus application type this process did not map) is counted and logged once, and
        dropped, as an unknown wire type is: the bus keeps serving.
        """
        kept = self._converted.get(id(message))
        if kept is not None and kept[0] is message:
            return kept[1]
        try:
            converted: pm.BusMessage | None = self.messages.to_pipecat(message)
        except DecodeError:
            converted = None
            self.count_drop("unknown_type")
            logger.info("%s: %s has no pipecat counterpart; dropped", self.name, message)
        if len(self._converted) >= _CONVERTED_KEPT:
            del self._converted[next(iter(self._converted))]  # the oldest
        self._converted[id(message)] = (message, converted)
        return converted

    def count_drop(self, reason: str) -> None:
        """Count a message refused or dropped for ``reason`` (when metrics are on)."""
        tally = self._core.tally
        if tally is not None:
            tally.count_drop(reason)
