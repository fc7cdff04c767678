"""What the buses count for metrics: plain ints and lists, updated inline on the hot paths.

A :class:`BusTally` is shared by the buses of one kind; the dispatchers and buses increment
it per message (a dict lookup and an add: no lock, no metric object), and an exporter
(:class:`natsbus.observability.BusMetrics`) reads it when it is scraped.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final

from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import BusMessage

if TYPE_CHECKING:
    from natsbus.messages import Lane

__all__ = [
    "DECODE_ERROR_REASONS",
    "DROP_REASONS",
    "JOB_BUCKETS",
    "TIMING_BUCKETS",
    "BusTally",
    "DispatchTimings",
]

DECODE_ERROR_REASONS: Final = ("malformed", "unknown_type", "too_large", "too_deep")
"""Why an inbound message did not decode (``natsbus.bus.nats.inbound.decode_error_reason``)."""

DROP_REASONS: Final = (
    *DECODE_ERROR_REASONS,
    "disconnected",  # the client's reconnect buffer was full
    "duplicate",  # a JetStream redelivery already handled
    "slow_consumer",  # the client dropped it: a subscription past its limit
    "lane_full",  # the oldest data message of a full lane
    "bus_stopped",  # sent to, or arriving at, a stopped bus
    "unhandled_at_stop",  # still queued when its subscriber or the bus stopped
    "forged_source",  # its source is not the sender token of its subject
    "unexpected_answer",  # a job answer from a worker this bus did not ask
    "unexpected_control",  # a job control from a worker that did not request the job
    "unmapped_type",  # a pipecat message or frame with no wire form, refused at the sender
)
"""Every reason a message is dropped for: a closed set, each exported from the start."""

TIMING_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Upper bounds (seconds) of the dispatch latency and handler duration buckets: 100 us to 60 s.

Prometheus's default buckets start at 5 ms, coarser than an in-process hop (tens of us)."""

JOB_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Upper bounds (seconds) of the job duration buckets: 5 ms to one hour."""


class DispatchTimings:
    """Raw histograms of one message class on one lane: dispatch latency and handler duration.

    ``latency[i]`` counts dispatches whose latency fell in bucket ``i`` of
    :data:`TIMING_BUCKETS` (the last one is ``+Inf``), not cumulated; ``duration`` likewise.
    """

    __slots__ = ("duration", "duration_sum", "latency", "latency_sum")

    def __init__(self) -> None:
        self.latency = [0] * (len(TIMING_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.duration = [0] * (len(TIMING_BUCKETS) + 1)
        self.duration_sum = 0.0


class BusTally:
    """What the buses of one kind count for a metrics exporter, as plain ints and lists.

    The buses and their dispatchers update it inline on their hot paths (a dict lookup and an
    increment: no lock, no metric object), and an exporter reads it when it is scraped
    (:class:`natsbus.observability.BusMetrics` does). Every count only grows: a bus that stops
    or a subscriber that leaves takes nothing away. Not thread-safe: one event loop writes.

    Args:
        kind: The kind of the buses that share it (``"nats"``, ``"local"``), for the labels.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        # defaultdicts: ``table[cls] += 1`` is the cheapest count Python has.
        self.system: defaultdict[type[BusMessage], DispatchTimings] = defaultdict(DispatchTimings)
        """Dispatch timings of the system lanes, by message class."""
        self.data: defaultdict[type[BusMessage], DispatchTimings] = defaultdict(DispatchTimings)
        """Dispatch timings of the data lanes, by message class."""
        self.published: defaultdict[type[BusMessage], int] = defaultdict(int)
        """Messages accepted by ``send()``, by class."""
        self.received: defaultdict[type[BusMessage], int] = defaultdict(int)
        """Messages handed to the local subscribers' lanes (once per message), by class."""
        self.looped: defaultdict[type[BusMessage], int] = defaultdict(int)
        """Messages an in-process bus sent to its own subscribers, by class: each is both
        published and received, counted once (a second count would cost a no-op in-process
        send and dispatch about 4%)."""
        self.handler_errors: dict[tuple[Lane, type[BusMessage]], int] = {}
        self.dropped: dict[str, int] = {}
        """Messages dropped by the bus or its dispatchers, by reason.

        A transport counts its own drops (undecodable input, say) where it likes; an exporter
        reads them from the bus itself."""
        self.jobs: dict[tuple[str, str], int] = {}
        """Job answers sent by the local workers, by (worker, status)."""
        self.job_durations: dict[tuple[str, str], list[float]] = {}
        """Job run times by (worker, status): counts per :data:`JOB_BUCKETS` bucket, then sum."""
        self.buses: weakref.WeakSet[Any] = weakref.WeakSet()
        """The live buses counting here (for scrape-time gauges: depths, connections)."""
        self.slow: dict[Lane, int] = {}
        """Slow-subscriber episodes (a lane over its limit until it drained), by lane."""
        self.retired_network = NetworkCounts()
        """What the network buses that are gone counted (live ones report their own)."""

    def follow(self, bus: object, counts: NetworkCounts) -> None:
        """Add a network bus's counts to :attr:`retired_network` once the bus is gone.

        So that no exported counter goes down when a bus is collected. The bus calls this
        once, with the counts object it increments.
        """
        weakref.finalize(bus, self.retired_network.add, counts)

    def count_slow(self, lane: Lane) -> None:
        """Count a subscriber's lane going over its limit."""
        self.slow[lane] = self.slow.get(lane, 0) + 1

    def count_drop(self, reason: str, count: int = 1) -> None:
        """Count messages dropped for ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def count_handler_error(self, lane: Lane, cls: type[BusMessage]) -> None:
        """Count a handler call that raised."""
        key = (lane, cls)
        self.handler_errors[key] = self.handler_errors.get(key, 0) + 1

    def count_job(self, worker: str, status: str, duration: float | None) -> None:
        """Count a job answer; ``duration`` is the handler's run time, None if it never ran."""
        key = (worker, status)
        self.jobs[key] = self.jobs.get(key, 0) + 1
        if duration is None:
            return
        histogram = self.job_durations.get(key)
        if histogram is None:
            histogram = self.job_durations[key] = [0.0] * (len(JOB_BUCKETS) + 2)
        histogram[bisect_left(JOB_BUCKETS, duration)] += 1
        histogram[-1] += duration
