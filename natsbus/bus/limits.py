"""The bounds of a bus's queues, set when the bus is made and shown by its statistics."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["QueueLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """How much each queue of a bus may hold; give it to a bus with ``limits=``.

    What happens at a bound is documented where the queue lives: a full data lane drops its
    oldest message, a system lane is never dropped and reports its subscriber slow
    (:mod:`natsbus.bus.lanes`). A NatsBus's core subscriptions hold nothing: the connection's
    reader decodes each message onto the lanes as it parses it, and what it has not read yet
    waits in the socket and the server's buffer for the connection (``max_pending``, 64 MiB
    by default; past it the server closes the connection as a slow consumer, and the bus
    reconnects). Job requests need no bound here: JetStream
    delivers no more than ``JetStreamOptions.max_jobs_in_flight`` per worker, and job messages
    sent wait in an outbox of ``JetStreamOptions.outbox_size``.

    Attributes:
        system_lane: Messages a subscriber's system lane holds before it is reported slow.
        data_lane: Messages a subscriber's data lane holds before the oldest is dropped:
            about 500 bytes each on a NatsBus, so the default bounds a subscriber's backlog
            at about 50 MB (a burst of tens of thousands still arrives whole). A real-time
            subscriber that wants fresh frames only sets it far lower.
    """

    system_lane: int = 10_000
    data_lane: int = 100_000

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"QueueLimits.{spec.name} must be a positive int, got {value!r}")
