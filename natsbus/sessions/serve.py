"""A serving process: ``natsbus serve app:make_session --group voice --slots 8``.

It hosts one :class:`~natsbus.sessions.host.SessionHost` (named after the group) on the
deployment's channel, in a :class:`~natsbus.workers.service.ServiceRunner` (so an end sent
on that channel by a session or a client does not stop it), plus a client of the services
channel that the sessions' workers ask through (``self.job("tts", ..., channel="services")``).

SIGTERM stops taking sessions (the request consumer is paused, free slots read 0) and lets the
running ones go on for the grace period, then cancels them; each is answered, and its server
state released, before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.messages import Lane
from natsbus.sessions.connections import channel_bus
from natsbus.sessions.host import SessionFactory, SessionHost
from natsbus.sessions.protocol import DEFAULT_HEARTBEAT
from natsbus.tasks import cancel_and_wait
from natsbus.workers.service import ServiceRunner

if TYPE_CHECKING:
    from natsbus.bus.base import BusMetricsProvider, BusObserverFactory
    from natsbus.client import BusClient
    from natsbus.observability import Health
    from natsbus.sessions.metrics import SessionMetrics

__all__ = ["ServeOptions", "SessionServer"]

logger = logging.getLogger(__name__)

_POLL: Final = 2.0
"""Seconds between two readings of the group's waiting requests."""


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How a serving process runs its group.

    Attributes:
        group: The session group.
        slots: Sessions held at once, at most.
        channel: The deployment's channel, where session requests are sent.
        services_channel: The channel of the shared service workers (None: no services).
        prefix: The deployment's subject prefix.
        grace_period: Seconds running sessions get to end after SIGTERM before they are
            cancelled (size it for a call).
        session_grace_period: Seconds a session's jobs get to finish when the session ends.
        ready_timeout: Seconds a session's workers get to be ready.
        heartbeat: Seconds between a session's heartbeats to its requester.
        restart: Whether a session whose process died is started again elsewhere (its
            request is redelivered, after ``ack_wait``, and its requester waits for that)
            instead of reported failed (the requester then cancels it).
        end_from: Names whose end or cancel on the deployment channel stops this process.
    """

    group: str
    slots: int = 8
    channel: str = "default"
    services_channel: str | None = "services"
    prefix: str | None = None
    grace_period: float = 120.0
    session_grace_period: float = 10.0
    ready_timeout: float = 10.0
    heartbeat: float = DEFAULT_HEARTBEAT
    restart: bool = False
    end_from: tuple[str, ...] = field(default=())

    @property
    def client_name(self) -> str:
        """The name this process asks the services as (the same in every pod of the group)."""
        return f"sessions-{self.group}"


class SessionServer:
    """Hosts sessions of one group until SIGTERM (or :meth:`stop`).

    Args:
        factory: ``make_session(args) -> workers``.
        options: The group's settings.
        connect_options: Servers, credentials, TLS.
        jetstream_options: The deployment's JetStream settings; ``max_jobs_in_flight`` and
            ``max_attempts`` of the group's consumer are set from ``options``.
        metrics: The group's session metrics; None records nothing.
        bus_metrics: The deployment bus's metrics (BusMetrics); None counts nothing.
        observer: Tracing for every bus of the process (``BusTracing``); None traces nothing.
        handle_signals: Drain on SIGTERM and cancel on SIGINT.
    """

    def __init__(
        self,
        factory: SessionFactory,
        options: ServeOptions,
        *,
        connect_options: NatsConnectOptions,
        jetstream_options: JetStreamOptions | None = None,
        metrics: SessionMetrics | None = None,
        bus_metrics: BusMetricsProvider | None = None,
        observer: BusObserverFactory | None = None,
        handle_signals: bool = True,
    ) -> None:
        from natsbus.bus.nats.bus import NatsBus  # noqa: PLC0415  (nats-py only when serving)

        if options.slots < 1:
            raise ValueError(f"slots must be >= 1, got {options.slots!r}")
        self._factory = factory
        self._options = options
        self._metrics = metrics
        js = jetstream_options or JetStreamOptions()
        self._js_options = js
        # One session request per slot. A request can come back (a drain hands back what a
        # pull brought late; a dead process's comes back after ack_wait), so it gets several
        # attempts; without --restart the requester cancels a lost session, and the process
        # that gets it again answers it 'cancelled' rather than rerunning it.
        host_js = dataclasses.replace(js, max_jobs_in_flight=options.slots)
        from natsbus.bus.nats.layout import DEFAULT_PREFIX, SubjectLayout  # noqa: PLC0415
        from natsbus.bus.nats.shared import NatsConnections  # noqa: PLC0415

        prefix = options.prefix or DEFAULT_PREFIX
        # The sessions' buses (and the services') share one connection pair, whose inboxes are
        # those of the deployment's channel. The group's bus has its own: session requests and
        # heartbeats must not queue behind the sessions' traffic (on the shared pair the p99
        # start latency at 10 starts/s was 3-8 times higher).
        inbox = SubjectLayout(options.channel, prefix).inbox_prefix
        self._connections = NatsConnections(
            connect_options=dataclasses.replace(connect_options, inbox_prefix=inbox),
            prefix=prefix,
            name=f"natsbus-serve-{options.group}",
        )
        self._bus = NatsBus(
            channel=options.channel,
            connect_options=connect_options,
            jetstream_options=host_js,
            metrics=bus_metrics,
            name=f"serve-{options.group}",
            prefix=prefix,
            observer=observer,
        )
        self._observer = observer
        self._runner = ServiceRunner(
            bus=self._bus,
            end_from=options.end_from,
            grace_period=options.grace_period,
            handle_signals=handle_signals,
        )
        self._host: SessionHost | None = None
        self._services: BusClient | None = None

    @property
    def runner(self) -> ServiceRunner:
        """The runner hosting the group's worker (for health checks)."""
        return self._runner

    @property
    def host(self) -> SessionHost:
        """The group's worker (once :meth:`run` began)."""
        assert self._host is not None, "run() first"
        return self._host

    def add_to(self, health: Health) -> None:
        """Report this process's readiness in ``health`` (not ready while draining)."""
        health.add_runner(self._runner)

    async def run(self) -> None:
        """Take and host sessions until SIGTERM or :meth:`stop`; every session is answered."""
        from natsbus.client import BusClient  # noqa: PLC0415  (client imports workers)

        options = self._options
        try:
            channels = {}
            if options.services_channel is not None:
                bus = channel_bus(
                    self._connections,
                    options.services_channel,
                    jetstream_options=self._js_options,
                    prefix=options.prefix,
                    name=f"services-{options.group}",
                    observer=self._observer,
                )
                self._services = BusClient(bus, name=options.client_name)
                await self._services.start()
                channels[options.services_channel] = self._services
            await self._connections.open()
            system = self._connections.clients[Lane.SYSTEM]
            self._host = SessionHost(
                self._factory,
                group=options.group,
                slots=options.slots,
                connections=self._connections,
                jetstream=system.jetstream(),
                jetstream_options=self._js_options,
                prefix=options.prefix,
                channels=channels,
                heartbeat=options.heartbeat,
                ready_timeout=options.ready_timeout,
                grace_period=options.session_grace_period,
                restart=options.restart,
                metrics=self._metrics,
                observer=self._observer,
            )
            await self._runner.add_workers(self._host)
            poll = asyncio.create_task(self._poll(), name=f"natsbus-serve-poll[{options.group}]")
            try:
                await self._runner.run()
            finally:
                await cancel_and_wait((poll,))
        finally:
            if self._services is not None:
                await self._services.close()
            await self._connections.close()

    async def stop(self, reason: str = "stopped") -> None:
        """Drain, as SIGTERM does: take no new session, let the running ones end in time."""
        await self._runner.end(reason)

    async def _poll(self) -> None:
        """Keep the group's gauges current: free slots and the requests waiting for any."""
        while True:
            host = self._host
            if self._metrics is not None and host is not None:
                self._metrics.running(len(host.sessions), taking=host.taking())
                with contextlib.suppress(Exception):  # the server is away: next round
                    for stats in await self._bus.consumer_statistics():
                        if stats.role == "job_requests" and stats.worker == host.name:
                            self._metrics.waiting(stats.pending)
            await asyncio.sleep(_POLL)
