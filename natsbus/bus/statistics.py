"""What a bus reports about itself: typed snapshots and the counts a network bus keeps.

:meth:`WorkerBus.statistics() <natsbus.bus.WorkerBus.statistics>` returns a
:class:`BusStatistics`; a network bus adds a :class:`NetworkStatistics` to it. Exporters
(:class:`natsbus.observability.BusMetrics`) read these fields, never a bus's internals, and
every field counted here is exported.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from natsbus._message_base import Lane
from natsbus.bus.limits import QueueLimits

if TYPE_CHECKING:  # dispatch counts into the tally, which retires NetworkCounts: no cycle
    from natsbus.bus.dispatch import DispatcherStatistics

__all__ = [
    "BusState",
    "BusStatistics",
    "ConsumerStatistics",
    "NetworkCounts",
    "NetworkStatistics",
]


class BusState(enum.Enum):
    """Where a bus is in its lifecycle."""

    CREATED = "created"
    """Made, not started: messages sent now wait for :meth:`~natsbus.bus.WorkerBus.start`."""
    STARTED = "started"
    """Dispatching (and, for a network bus, connected and subscribed)."""
    STOPPING = "stopping"
    """A network bus releasing its consumers and connections: messages sent now are dropped."""
    STOPPED = "stopped"
    """Stopped: nothing is dispatched, and messages sent now are dropped and counted. An
    in-process bus may be started again; a network bus may not."""


@dataclass(slots=True)
class NetworkCounts:
    """What a network bus counts, from the moment it was made; each only grows.

    The bus and its job channel increment the fields in place (plain ints: no lock, no string
    key); :meth:`copy` is what a snapshot holds.

    Attributes:
        dropped_disconnected: Core messages refused because the server was away and the
            client's reconnect buffer was full.
        sent_disconnected: Core messages handed to the client while the server was away:
            buffered, and flushed on reconnect, possibly before the receivers subscribed
            again, so they may be lost (lifecycle and job messages are stored instead).
        slow_consumer_drops: Messages the client dropped because one of nats-py's own
            subscriptions (its JetStream request multiplexer) was full; the bus's core
            subscriptions hold nothing (:mod:`natsbus.bus.nats.direct`).
        decode_errors: Inbound messages dropped because they did not decode, by reason
            (``malformed``, ``unknown_type``, ``too_large``).
        reconnects: Reconnections of each lane's connection.
        redelivered: Job messages the server delivered again (a bus died, or was too slow).
        dead_lettered: Job requests answered ``error`` after their last delivery attempt.
        duplicates: Job messages delivered again after they were handled, dropped.
        fast_copies: Stored messages whose fast copy (core NATS) arrived first: the stored
            copy was acknowledged and dropped (see :mod:`natsbus.bus.nats.copies`).
        answered_elsewhere: Job requests delivered again after another bus (or an earlier
            life of this one) had stored their answer: acknowledged, not run again.
        duplicate_job_ids: Job requests reusing the id of one still running here, refused.
        unrouted_replies: Job answers whose request named no instance to answer (a producer
            that is not natsbus), sent on the requester's core subject instead.
        publish_retries: Job messages published again because the stream did not acknowledge
            them in time.
        forged_source: Messages dropped because their ``source`` is not the sender token of
            the subject they came on (see :mod:`natsbus.bus.nats.senders`).
        unexpected_answers: Job updates, stream chunks and responses dropped because this bus
            did not ask their sender for that job.
        unexpected_controls: Job cancels and update requests dropped because their sender did
            not request the job they name.
        permission_denials: Operations the server refused because the bus's user lacks a
            permission (what was published is lost).
    """

    dropped_disconnected: int = 0
    sent_disconnected: int = 0
    slow_consumer_drops: int = 0
    decode_errors: Counter[str] = field(default_factory=Counter)
    reconnects: Counter[Lane] = field(default_factory=Counter)
    redelivered: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    fast_copies: int = 0
    answered_elsewhere: int = 0
    duplicate_job_ids: int = 0
    unrouted_replies: int = 0
    publish_retries: int = 0
    forged_source: int = 0
    unexpected_answers: int = 0
    unexpected_controls: int = 0
    permission_denials: int = 0

    def copy(self) -> NetworkCounts:
        """Return an independent copy (for a snapshot)."""
        copied = NetworkCounts()
        copied.add(self)
        return copied

    def add(self, other: NetworkCounts) -> None:
        """Add every count of ``other`` to this one (a tally of buses that are gone)."""
        for spec in fields(self):
            mine, theirs = getattr(self, spec.name), getattr(other, spec.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, spec.name, mine + theirs)


@dataclass(frozen=True, slots=True)
class NetworkStatistics:
    """What a network bus adds to its :class:`BusStatistics`.

    Attributes:
        connections: Whether each connection (``system``, ``data``) is up now.
        counts: Everything the bus counted so far (a copy).
    """

    connections: Mapping[str, bool]
    counts: NetworkCounts


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """A snapshot of a bus and of its subscribers' dispatchers.

    Attributes:
        state: The bus's lifecycle state.
        dropped: Messages that reached the bus after it stopped and were discarded.
        subscribers: Each subscriber's dispatcher statistics, by subscriber name.
        limits: The bounds of the bus's queues.
        network: What a network bus adds; None for an in-process bus.
    """

    state: BusState
    dropped: int
    subscribers: Mapping[str, DispatcherStatistics]
    limits: QueueLimits = field(default_factory=QueueLimits)
    network: NetworkStatistics | None = None


@dataclass(frozen=True, slots=True)
class ConsumerStatistics:
    """The server's view of one JetStream consumer a bus reads from.

    Attributes:
        role: ``job_requests`` (one worker's, shared by every bus hosting it) or ``instance``
            (this bus instance's own: its replies, and on the system lane the controls of
            the workers it hosts).
        worker: The hosted worker it serves; empty for ``instance``.
        lane: ``system`` or ``data``.
        name: The consumer's name.
        pending: Messages stored and not yet delivered to any bus.
        ack_pending: Messages delivered and not yet acknowledged.
    """

    role: str
    worker: str
    lane: str
    name: str
    pending: int
    ack_pending: int
