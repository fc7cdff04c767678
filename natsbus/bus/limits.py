"""The bounds of a bus's queues, set when the bus is made and shown by its statistics."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["QueueLimits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """How much each queue of a bus may hold; give it to a bus with ``limits=``.

    What happens at a bound is documented where the queue lives: a full data lane drops its
    oldest message, a system lane is never dropped and reports its subscriber slow
    (:mod:`natsbus.bus.lanes`); a NATS subscription past its limit has the client drop the
    message, counted as ``slow_consumer_drops``. Job requests need no bound here: JetStream
    delivers no more than ``JetStreamOptions.max_jobs_in_flight`` per worker, and job messages
    sent wait in an outbox of ``JetStreamOptions.outbox_size``.

    Attributes:
        system_lane: Messages a subscriber's system lane holds before it is reported slow.
        data_lane: Messages a subscriber's data lane holds before the oldest is dropped:
            about 500 bytes each on a NatsBus, so the default bounds a subscriber's backlog
            at about 50 MB (a burst of tens of thousands still arrives whole). A real-time
            subscriber that wants fresh frames only sets it far lower.
        subscription_messages: Messages a NATS subscription holds for its callback before
            the client drops new ones. The callback decodes them and queues them on the
            lanes, so this fills when decoding falls behind the network: a burst from a fast
            publisher. nats-py's own default (524,288).
        subscription_bytes: Bytes a NATS subscription holds likewise: nats-py's own default
            (128 MiB).
    """

    system_lane: int = 10_000
    data_lane: int = 100_000
    subscription_messages: int = 512 * 1024
    subscription_bytes: int = 128 * 1024 * 1024

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"QueueLimits.{spec.name} must be a positive int, got {value!r}")
