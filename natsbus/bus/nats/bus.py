"""NatsBus: the WorkerBus that connects processes and pods through NATS and JetStream.

Core messages travel on core NATS, one subject per lane and target (see
:mod:`natsbus.bus.nats.layout`), and the system lane has a connection of its own so that a
backlog of data bytes never sits in front of a cancel. Job messages travel on JetStream: a job
request is stored, taken by exactly one of the buses hosting its worker, acknowledged only when
answered, and redelivered to another bus if the one handling it dies.

What reaches whom:

* a core message reaches every local subscriber of the sending bus once, and every remote bus
  that listens for its target (or for everything);
* a job message reaches the subscribers it is addressed to once, through the stream, even
  when sender and receiver share a bus; its replies reach the bus instance that asked.

While the server is away, core messages are buffered by the client up to
``NatsConnectOptions.pending_size`` bytes (then ``send()`` raises
:class:`~natsbus.errors.BusUnavailableError`), and job messages wait in the outbox and are
stored when the server is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import secrets
from collections.abc import Iterator, Sequence
from typing import ClassVar, Final

from nats.aio.client import Client
from nats.errors import (
    OutboundBufferLimitError,
)
from nats.js.client import JetStreamContext

from natsbus.bus.base import BusMetricsProvider, BusObserverFactory, BusState, WorkerBus
from natsbus.bus.dispatch import DEFAULT_TIME_SLICE, DispatchObserver
from natsbus.bus.limits import QueueLimits
from natsbus.bus.nats.connection import close_connection, open_connection
from natsbus.bus.nats.consumers import ConsumerStatistics
from natsbus.bus.nats.inbound import InboundDecoder
from natsbus.bus.nats.interest import Interest
from natsbus.bus.nats.jobs import JobChannel, mapped
from natsbus.bus.nats.layout import DEFAULT_PREFIX, SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.bus.nats.reader import read_frames
from natsbus.bus.nats.routes import Route, route_of
from natsbus.bus.nats.senders import sender_name
from natsbus.bus.nats.shared import NatsConnections
from natsbus.bus.nats.subjects import encode_token
from natsbus.bus.nats.watch import ConnectionWatch
from natsbus.bus.nats.writes import publish_soon
from natsbus.bus.statistics import BusStatistics, NetworkCounts, NetworkStatistics
from natsbus.bus.subscriber import BusSubscriber
from natsbus.codec import Codec
from natsbus.errors import BusClosedError, BusUnavailableError, MessageTooLargeError
from natsbus.messages import (
    BusJobMessage,
    BusJobRequestMessage,
    BusMessage,
    JobRole,
    Lane,
)

__all__ = ["ConsumerStatistics", "NatsBus"]

logger = logging.getLogger("natsbus.bus.nats")

_SUBJECT_CACHE_SIZE: Final = 10_000


class NatsBus(WorkerBus):
    """A WorkerBus over NATS, with job messages on JetStream.

    Args:
        servers: NATS server URL or URLs; overrides ``connect_options.servers``.
        channel: The isolated namespace this bus talks in (a session, a tenant). Buses on
            different channels never see each other's messages, even on one server.
        connect_options: Authentication, TLS and reconnect settings.
        jetstream_options: Stream, consumer and retry settings for job messages.
        prefix: First token of every subject; one per deployment.
        codec: Encodes and decodes messages (its size limit applies on both sides).
        clients: Existing ``(system, data)`` connections to use instead of connecting; the
            bus then neither connects nor closes them. Pass the same client twice to share one
            connection between the lanes (a cancel may then queue behind data bytes).
        connections: A :class:`NatsConnections` pair shared with other buses of the process
            (a bus per session, say): the bus uses its connections, options and inbox
            prefix, and leaves them open when it stops. Excludes ``servers``,
            ``connect_options`` and ``clients``.
        name: The bus's name, for logs.
        observer: Hooks called around every handler call and every send (tracing).
        time_slice: Seconds a dispatch lane, or the reading of a backlog, may hold the event
            loop before yielding to it.
        metrics: Where to count messages and timings for metrics
            (:class:`natsbus.observability.BusMetrics`); None (the default) counts nothing.
        limits: The bounds of the subscribers' lanes.
    """

    kind: ClassVar[str] = "nats"

    def __init__(
        self,
        *,
        servers: str | Sequence[str] | None = None,
        channel: str = "default",
        connect_options: NatsConnectOptions | None = None,
        jetstream_options: JetStreamOptions | None = None,
        prefix: str = DEFAULT_PREFIX,
        codec: Codec | None = None,
        clients: tuple[Client, Client] | None = None,
        connections: NatsConnections | None = None,
        name: str | None = None,
        observer: DispatchObserver | BusObserverFactory | None = None,
        time_slice: float = DEFAULT_TIME_SLICE,
        metrics: BusMetricsProvider | None = None,
        limits: QueueLimits | None = None,
    ) -> None:
        super().__init__(
            name=name, observer=observer, time_slice=time_slice, metrics=metrics, limits=limits
        )
        if connections is not None and (
            servers is not None or connect_options is not None or clients is not None
        ):
            raise ValueError(
                "NatsBus takes connections, or servers/connect_options/clients, not both"
            )
        options = connect_options or (
            connections.options if connections is not None else NatsConnectOptions()
        )
        if servers is not None:
            options = dataclasses.replace(
                options, servers=(servers,) if isinstance(servers, str) else servers
            )
        if not channel:
            raise ValueError("NatsBus channel must be a non-empty name")
        # Read here only: a NatsBus keeps fewer than 30 attributes, CPython's limit for
        # key-sharing instance dicts (past it, every bus holds a dict of its own: ~1.3 KiB).
        js_options = jetstream_options or JetStreamOptions()
        self._layout = SubjectLayout(channel, prefix, js_options.stream)
        if options.inbox_prefix is None:
            options = dataclasses.replace(options, inbox_prefix=self._layout.inbox_prefix)
        self._options = options
        self._codec = codec or Codec()
        self._counts = NetworkCounts()
        if self._tally is not None:
            self._tally.follow(self, self._counts)
        self._decoder = InboundDecoder(self._codec, dropped=self._counts.decode_errors)
        # On a shared pair every bus has the pair's instance id: (channel, instance) still
        # names one bus, and the pair's consumers read the replies of all (see routed.py).
        self._instance = connections.instance if connections is not None else secrets.token_hex(8)
        # The shared pair or the two clients the bus was given (it closes neither); one
        # attribute for both, to stay within the 30 (see js_options above).
        self._given: NatsConnections | tuple[Client, Client] | None = (
            connections if connections is not None else clients
        )
        self._clients: dict[Lane, Client] = {}
        self._jetstream: dict[Lane, JetStreamContext] = {}
        self._jobs = JobChannel(
            layout=self._layout,
            options=js_options,
            instance=self._instance,
            codec=self._codec,
            decoder=self._decoder,
            deliver=self.on_message_received,
            stamp=self.stamp,
            counts=self._counts,
            name=self.name,
            shared=connections,
        )
        self._interest = Interest(
            layout=self._layout,
            instance=self._instance,
            limits=self._limits,
            jobs=self._jobs,
            subscribers=lambda: self.subscribers,
            on_message=self._on_core_message,
            name=self.name,
        )
        self._sent_before_start: list[BusMessage] = []
        self._watch = ConnectionWatch(
            bus=self.name,
            options=self._options,
            counts=self._counts,
            # Pending pull requests died with the old connection: ask again at once.
            on_reconnected=self._jobs.renew,
            tokens=self._subject_tokens,
            # What the server refuses to store is never stored: give it up (a request is
            # answered 'error').
            on_denial=lambda denial: self._jobs.refused(denial.subject),
        )
        self._core_subjects: dict[tuple[Lane, str | None, str], str] = {}

    # --- identity -----------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The channel this bus talks in."""
        return self._layout.channel

    @property
    def instance_id(self) -> str:
        """Random id of this bus instance; replies to its job requests are addressed to it."""
        return self._instance

    @property
    def layout(self) -> SubjectLayout:
        """The subjects, stream and consumer names this bus uses."""
        return self._layout

    def statistics(self) -> BusStatistics:
        """Return a snapshot of the bus, with its connections and everything it counted."""
        local = super().statistics()
        return BusStatistics(
            local.state,
            local.dropped,
            local.subscribers,
            local.limits,
            NetworkStatistics(self.connections(), self._counts.copy()),
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, make sure the job streams exist, subscribe, and start dispatching.

        A start that fails part-way closes what it opened (connections, consumers, tasks)
        before it raises; nats-py's errors come out as natsbus's, with the cause chained.

        Raises:
            BusUnavailableError: No server could be reached or it refused the connection, or
                JetStream is not available there, or a step of the start failed.
            BusPermissionError: The server refused a subscription or a JetStream call the bus
                needs (its user lacks a permission: see ``natsbus permissions``).
            BusClosedError: The bus was stopped: unlike an in-process bus, a NatsBus is not
                started again (its consumers and connections are gone); make a new one.
        """
        if self.state is BusState.STARTED:
            return
        if self.state is not BusState.CREATED:
            raise BusClosedError(f"{self!r} was stopped; a NatsBus cannot be started again")
        async with contextlib.AsyncExitStack() as undo:
            await self._connect()
            undo.push_async_callback(self._close_clients)
            guard = self._watch.guard  # a refused permission fails the step at once
            await guard(self._jobs.open(self._clients, self._jetstream))
            undo.push_async_callback(self._jobs.close)
            await super().start()
            undo.push_async_callback(super().stop)
            await guard(mapped("subscribing", self._interest.open(self._clients)))
            undo.pop_all()  # started: from now on stop() releases it all
        backlog, self._sent_before_start = self._sent_before_start, []
        for message in backlog:
            await self.publish(message)

    async def stop(self) -> None:
        """Stop taking jobs, store what was sent, close the connections and stop dispatch.

        Job messages already sent are stored first (for up to 5 seconds), so a job answered
        just before the stop is acknowledged rather than redelivered; jobs taken but not
        answered are then released to the server, for another bus to take at once. Messages
        sent from the moment the stop begins are dropped and counted.
        """
        if self.state is not BusState.STARTED:
            await super().stop()
            return
        self._state = BusState.STOPPING
        await self._interest.close()
        await self._jobs.close()
        await super().stop()
        await self._close_clients()

    @property
    def _started(self) -> bool:
        return self._state is BusState.STARTED

    async def _close_clients(self) -> None:
        given = self._given
        if isinstance(given, NatsConnections):
            given.detach(self._layout.root, self._watch)
        elif given is None:
            for client in {id(c): c for c in self._clients.values()}.values():
                await close_connection(client)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every job message sent so far is stored and core messages are written.

        Raises:
            TimeoutError: Not everything was stored within ``timeout`` seconds.
        """
        await self._jobs.flush(timeout)
        for client in self._clients.values():
            await client.flush(timeout=math.ceil(timeout or 10))

    @property
    def redelivers_jobs(self) -> bool:
        """True: a job request left unanswered is redelivered to another bus hosting its worker."""
        return True

    async def pause_jobs(self) -> None:
        """Stop taking new job requests (a drain); cancels and replies keep flowing.

        Requests already taken stay with this bus until they are answered, or released when
        the bus stops.
        """
        await self._interest.pause_jobs()

    async def subscribe(self, subscriber: BusSubscriber) -> None:
        """Register a subscriber and listen for the targets it answers to."""
        await super().subscribe(subscriber)
        if self._started:
            await self._interest.sync()

    async def refresh_interest(self) -> None:
        """Listen again: a subscriber's targets changed, or whether it takes jobs now.

        Never raises: if the server cannot be asked now, the bus logs it and tries again every
        second until it can (or stops).
        """
        if self._started:
            await self._interest.refresh()

    async def unsubscribe(self, subscriber: BusSubscriber) -> None:
        """Remove a subscriber and stop listening for targets nobody else answers to.

        The subscriber is gone at once; telling the server may wait for it (it is retried
        while the server is away, and dropped when the bus stops).
        """
        await super().unsubscribe(subscriber)
        if self._started:
            await self._interest.refresh()

    # --- health -------------------------------------------------------------------------------

    def connections(self) -> dict[str, bool]:
        """Whether each of the bus's two connections (``system``, ``data``) is up now."""
        return {lane.value: client.is_connected for lane, client in self._clients.items()}

    def not_ready_reasons(self) -> list[str]:
        """Say why the bus cannot serve now (empty when it can): for readiness probes.

        Ready means started, both connections up, and consumers in place for every worker
        hosted here (for job requests too, unless jobs are paused).
        """
        reasons = super().not_ready_reasons()
        if not self._started:
            return reasons or [f"bus {self.name!r} is not connected"]
        reasons.extend(
            f"{connection} connection is down"
            for connection, up in self.connections().items()
            if not up
        )
        missing = self._interest.missing()
        if missing:
            reasons.append(f"consumers not in place for {sorted(missing)}")
        return reasons

    async def consumer_statistics(self, timeout: float = 2.0) -> list[ConsumerStatistics]:
        """Ask the server how far behind each JetStream consumer of this bus is.

        Consumers that cannot be asked about now (the server is away) are left out.

        Args:
            timeout: Seconds to wait for each answer.

        Returns:
            One entry per consumer that answered.
        """
        if not self._started:
            return []
        return await self._jobs.statistics(timeout)

    # --- sending ------------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Send a message to the network (and core messages to the local subscribers too).

        Raises:
            MessageTooLargeError: The encoded message exceeds the server's max payload.
            BusUnavailableError: The server is away and the client's buffer is full.
        """
        if self._state is not BusState.STARTED:
            if self._state is BusState.CREATED:
                # Not started yet: keep it, in order, for start().
                self._codec.encode(message)  # refuse what can never be sent now, not later
                self._sent_before_start.append(message)
            else:  # stopping
                self._drop_stopped(message)
            return
        lane, route = route_of(type(message))
        if route is Route.JOB:
            assert isinstance(message, BusJobMessage)
            if type(message) is BusJobRequestMessage:
                message.reply_to = self._instance  # the answers come back to this instance
            self._jobs.prepare(message)
            await self._jobs.publish(message, self._encode(message, lane))
            return
        data = self._encode(message, lane)
        if route is Route.STORED:
            await self._jobs.publish_stored(
                message, data, self._layout.lifecycle(lane, message.target, sender_name(message))
            )
            self.on_message_received(message)
            return
        client = self._clients[lane]
        key = (lane, message.target, message.source)
        subject = self._core_subjects.get(key)
        if subject is None:
            subject = self._core_subject(*key)
        if not client.is_connected:
            self._watch.sent_disconnected(lane)
        try:
            # W3C trace context rides in NATS headers too, for tools that read only those.
            if not publish_soon(client, subject, data, headers=message.trace_context):
                await client.publish(subject, data, headers=message.trace_context)
        except OutboundBufferLimitError as error:
            self._counts.dropped_disconnected += 1
            raise BusUnavailableError(
                "NATS server unreachable and the reconnect buffer is full"
            ) from error
        self.on_message_received(message)

    def _encode(self, message: BusMessage, lane: Lane) -> bytes:
        data = self._codec.encode(message)
        limit = self._clients[lane].max_payload
        if len(data) > limit:
            raise MessageTooLargeError(len(data), limit)
        return data

    def destination_of(self, message: BusMessage) -> str:
        """The subject a message is published on (for a job reply: the asking instance's)."""
        target, lane, role, source = message.target, message.lane, message.job_role, message.source
        layout = self._layout
        if role is JobRole.REQUEST and target is not None:
            return layout.job_requests(target, source)
        if role is JobRole.CONTROL and target is not None:
            return layout.job_control(target, source)
        if role is not None:
            return layout.job_replies("*", lane, source)  # the instance is chosen on sending
        if message.durable:
            return layout.lifecycle(lane, target, sender_name(message))
        if target is None:
            return layout.broadcast(lane, source)
        return layout.targeted(lane, target, source)

    def _subject_tokens(self) -> Iterator[str]:
        """The tokens of this bus's subjects and JetStream names (to spell a refusal)."""
        layout = self._layout
        yield from (*layout.root.split("."), layout.stream, layout.request_stream)
        for subscriber in self.subscribers:
            for name in {*(subscriber.bus_targets or ()), *subscriber.bus_job_targets}:
                yield encode_token(name)
                yield layout.job_consumer(name)

    def _core_subject(self, lane: Lane, target: str | None, source: str) -> str:
        if len(self._core_subjects) >= _SUBJECT_CACHE_SIZE:
            self._core_subjects.clear()  # targets may be per session: keep the cache bounded
        subject = (
            self._layout.broadcast(lane, source)
            if target is None
            else self._layout.targeted(lane, target, source)
        )
        self._core_subjects[(lane, target, source)] = subject
        return subject

    def _on_core_message(self, subject: str, data: bytes) -> None:
        # Called by the connection's reader as it parses (natsbus.bus.nats.direct), which
        # yields to the loop every time slice.
        message = self._decoder.decode(data, subject)
        if message is None:
            return
        if route_of(type(message))[1] is Route.CORE or message.job_role is JobRole.REQUEST:
            if self._jobs.admits(message, subject):
                self.on_message_received(message)
        else:  # the fast copy of a stored message (a request has none: natsbus.bus.nats.copies)
            self._jobs.on_fast_copy(message, subject)

    # --- plumbing -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        given = self._given
        if isinstance(given, NatsConnections):
            # The pair reads with yields already, and tells this bus what concerns it.
            self._clients = dict(await given.attach(self._layout.root, self._watch))
            self._jetstream = dict(given.jetstream)
            return
        if given is not None:
            system, data = given
        else:
            system = await self._open(Lane.SYSTEM)
            try:
                data = await self._open(Lane.DATA)
            except BaseException:
                await system.close()
                raise
        self._clients = {Lane.SYSTEM: system, Lane.DATA: data}
        for client in (system, data):
            read_frames(client, self._time_slice / 2)
        self._jetstream = {lane: client.jetstream() for lane, client in self._clients.items()}

    async def _open(self, lane: Lane) -> Client:
        return await open_connection(
            self._options,
            lane,
            on_reconnected=self._watch.reconnected_callback(lane),
            on_error=self._watch.on_error,
        )
