"""NatsConnections: one pair of connections that every NatsBus of a process can share.

A NatsBus opens two connections of its own (system and data) unless it is given
:class:`NatsConnections`. A process hosting a bus per session (a channel each) then pays for
subscriptions, not for connections: thousands of buses on two sockets, two reader tasks and
two reconnect loops.

What a connection reports is shared out: an outage is logged once, by the pair; a reconnect
reaches every bus (each asks its consumers again at once); a refused permission or a slow
subscription reaches the bus whose subject it names (or every bus, when the subject names
none, as for the JetStream API).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from types import TracebackType
from typing import Self

from nats.aio.client import Client
from nats.errors import SlowConsumerError
from nats.js.client import JetStreamContext

from natsbus.bus.dispatch import DEFAULT_TIME_SLICE
from natsbus.bus.nats.connection import close_connection, open_connection
from natsbus.bus.nats.layout import DEFAULT_PREFIX, SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.bus.nats.reader import read_frames
from natsbus.bus.nats.routed import SharedInstanceConsumers
from natsbus.bus.nats.watch import ConnectionWatch, permission_denied
from natsbus.bus.statistics import NetworkCounts
from natsbus.errors import BusClosedError
from natsbus.messages import Lane

__all__ = ["NatsConnections"]

logger = logging.getLogger("natsbus.bus.nats")

_LANES = (Lane.SYSTEM, Lane.DATA)


class NatsConnections:
    """A system and a data connection shared by every NatsBus constructed with them.

    The pair connects when the first bus starts (or on :meth:`open`) and closes on
    :meth:`close` (or at the end of ``async with``), after the buses using it have stopped:
    a bus that stops leaves the connections open for the others. Buses of any channels may
    share a pair, one bus per channel (subscribe all of a channel's workers to it); their
    inboxes then share the pair's prefix, so give it a user allowed to
    read the inboxes of every channel it serves (see ``docs/security.md``).

    Args:
        servers: NATS server URL or URLs; overrides ``connect_options.servers``.
        connect_options: Authentication, TLS and reconnect settings, as for a NatsBus.
            ``inbox_prefix`` defaults to ``_INBOX.<prefix>``.
        prefix: The deployment's subject prefix (for the default inbox prefix).
        time_slice: Seconds the reading of a backlog may hold the event loop.
        name: Name for logs.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        *,
        connect_options: NatsConnectOptions | None = None,
        prefix: str = DEFAULT_PREFIX,
        time_slice: float = DEFAULT_TIME_SLICE,
        name: str = "natsbus-connections",
    ) -> None:
        options = connect_options or NatsConnectOptions()
        if servers is not None:
            options = dataclasses.replace(
                options, servers=(servers,) if isinstance(servers, str) else servers
            )
        if options.inbox_prefix is None:
            options = dataclasses.replace(options, inbox_prefix=f"_INBOX.{prefix}")
        self.options = options
        self.name = name
        self._time_slice = time_slice
        self._clients: dict[Lane, Client] = {}
        self._jetstream: dict[Lane, JetStreamContext] = {}
        # The buses' watches, by their subject root in lower case (nats-py lowercases the
        # subject of a refusal); one bus per channel (see attach).
        self._watches: dict[str, ConnectionWatch] = {}
        self._counts = NetworkCounts()
        # Logs the pair's outages once; what concerns one bus goes to that bus's watch.
        self._watch = ConnectionWatch(
            bus=name,
            options=options,
            counts=self._counts,
            on_reconnected=lambda: None,
        )
        self._opening = asyncio.Lock()
        self._closed = False
        self.instance = secrets.token_hex(8)
        """The instance id of every bus on the pair: (channel, instance) names one bus."""
        self._done: set[Hashable] = set()
        self._once = asyncio.Lock()
        self._instance_consumers: dict[tuple[str, str], SharedInstanceConsumers] = {}

    @property
    def clients(self) -> Mapping[Lane, Client]:
        """The connections by lane (empty until opened)."""
        return self._clients

    @property
    def jetstream(self) -> Mapping[Lane, JetStreamContext]:
        """The connections' JetStream contexts by lane (empty until opened)."""
        return self._jetstream

    @property
    def is_open(self) -> bool:
        """True once connected and until closed."""
        return bool(self._clients) and not self._closed

    @property
    def buses(self) -> int:
        """How many buses use the pair now."""
        return len(self._watches)

    async def open(self) -> None:
        """Connect both lanes, if not connected yet.

        Raises:
            BusUnavailableError: No server could be reached, or it refused the connection.
            BusClosedError: The pair was closed.
        """
        async with self._opening:
            if self._closed:
                raise BusClosedError(f"{self.name} was closed; make new NatsConnections")
            if self._clients:
                return
            system = await self._connect(Lane.SYSTEM)
            try:
                data = await self._connect(Lane.DATA)
            except BaseException:
                await close_connection(system)
                raise
            self._clients = {Lane.SYSTEM: system, Lane.DATA: data}
            # One JetStream context per connection, for every bus (about 1.4 KiB each).
            self._jetstream = {lane: client.jetstream() for lane, client in self._clients.items()}

    async def close(self) -> None:
        """Close both connections; buses still using them lose them (stop those first)."""
        self._closed = True
        if self._watches:
            logger.warning("%s closed while %d bus(es) still use it", self.name, self.buses)
        consumers, self._instance_consumers = self._instance_consumers, {}
        for shared in consumers.values():
            await shared.close()
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await close_connection(client)

    async def attach(self, root: str, watch: ConnectionWatch) -> Mapping[Lane, Client]:
        """Open if needed, and have ``watch`` told what concerns the subjects under ``root``.

        Called by a NatsBus as it starts; ``root`` is its channel's subject root.

        Raises:
            ValueError: Another bus on the pair uses the same channel (the pair has no echo:
                they would not see each other's core messages).
            BusUnavailableError: The connections could not be opened.
            BusClosedError: The pair was closed.
        """
        if root.lower() in self._watches:
            # The pair connects with no echo (a bus hands its own messages to its local
            # subscribers itself), so two buses of one channel on it would never see each
            # other's core messages.
            raise ValueError(
                f"{self.name} already has a bus on the subjects {root}.>: give each channel one"
                " bus per connection pair (subscribe more workers to it)"
            )
        await self.open()
        self._watches[root.lower()] = watch
        return self._clients

    def detach(self, root: str, watch: ConnectionWatch) -> None:
        """The bus of ``root`` stopped: tell ``watch`` nothing more."""
        if self._watches.get(root.lower()) is watch:
            del self._watches[root.lower()]

    async def once(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` the first time a bus asks for ``key``; later asks return at once.

        What every bus would otherwise do at each start against the same server (make sure
        the job streams exist: two JetStream API calls) is done once per pair. A ``work``
        that raises is tried again by the next bus.
        """
        if key in self._done:
            return
        async with self._once:
            if key not in self._done:
                await work()
                self._done.add(key)

    async def instance_consumers(
        self, layout: SubjectLayout, options: JetStreamOptions
    ) -> SharedInstanceConsumers:
        """The pair's instance consumers of ``layout``'s job stream, made on first use.

        Raises:
            nats.errors.Error: The server refused or did not answer (the next bus tries
                again).
        """
        key = (layout.prefix, layout.stream)
        shared = self._instance_consumers.get(key)
        if shared is not None:
            return shared
        async with self._once:
            shared = self._instance_consumers.get(key)
            if shared is None:
                shared = SharedInstanceConsumers(
                    clients=self._clients,
                    jetstream=self._jetstream,
                    layout=layout,
                    options=options,
                    instance=self.instance,
                )
                await shared.start()
                self._instance_consumers[key] = shared
        return shared

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed" if self._closed else "not opened"
        return f"<NatsConnections {self.name!r} {state}, {self.buses} bus(es)>"

    # --- what the connections report ----------------------------------------------------------

    async def _connect(self, lane: Lane) -> Client:
        pair_reconnected = self._watch.reconnected_callback(lane)

        async def reconnected() -> None:
            await pair_reconnected()
            for shared in self._instance_consumers.values():
                shared.renew()
            for watch in list(self._watches.values()):
                await watch.reconnected_callback(lane)()

        client = await open_connection(
            self.options, lane.value, on_reconnected=reconnected, on_error=self._on_error
        )
        read_frames(client, self._time_slice / 2)
        return client

    async def _on_error(self, error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            subject = error.subject
        else:
            denial = permission_denied(error)
            if denial is None:
                await self._watch.on_error(error)  # connection trouble: logged once, here
                return
            subject = denial.subject
        for watch in self._concerned(subject):
            await watch.on_error(error)

    def _concerned(self, subject: str) -> list[ConnectionWatch]:
        """The bus a subject belongs to: the one whose root it starts with, else all."""
        tokens = subject.lower().split(".")
        for end in range(len(tokens) - 1, 0, -1):
            watch = self._watches.get(".".join(tokens[:end]))
            if watch is not None:
                return [watch]
        # The JetStream API, an inbox: any of them may have asked.
        return list(self._watches.values())
