"""Prometheus metrics for natsbus buses and workers.

The buses do not call ``prometheus_client`` on their hot paths: they count into a plain
:class:`~natsbus.bus.tally.BusTally` (a dict lookup and an increment per message), and
:class:`BusMetrics`, a ``prometheus_client`` collector, turns the tallies into metric families
when the registry is scraped. That keeps a bus with metrics on within a few per cent of one
without (``bench/overhead.py`` measures it).

Typical use::

    metrics = BusMetrics()  # registers in prometheus_client's default REGISTRY
    bus = NatsBus(servers=url, metrics=metrics)

    registry = CollectorRegistry()  # or a registry of your own, in tests say
    bus = AsyncQueueBus(metrics=BusMetrics(registry=registry))

Every exported name is in :data:`METRIC_NAMES`; ``docs/observability.md`` lists them with their
labels. Label values come from closed sets (bus kinds, lanes, message classes, reasons, job
statuses) except worker and subscriber names, which are as bounded as the workers a process
hosts; pass ``worker_labels=False`` when they are not (per-session child workers, say).
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, CollectorRegistry

from natsbus.bus.base import WorkerBus
from natsbus.bus.statistics import ConsumerStatistics, NetworkCounts
from natsbus.bus.tally import (
    DECODE_ERROR_REASONS,
    DROP_REASONS,
    JOB_BUCKETS,
    TIMING_BUCKETS,
    BusTally,
)
from natsbus.messages import BusMessage, Lane

__all__ = ["METRIC_NAMES", "BusMetrics"]

logger = logging.getLogger(__name__)

DISPATCH_LATENCY: Final = "natsbus_dispatch_latency_seconds"
HANDLER_DURATION: Final = "natsbus_handler_duration_seconds"
HANDLER_ERRORS: Final = "natsbus_handler_errors_total"
PUBLISHED: Final = "natsbus_messages_published_total"
RECEIVED: Final = "natsbus_messages_received_total"
DROPPED: Final = "natsbus_messages_dropped_total"
DECODE_ERRORS: Final = "natsbus_decode_errors_total"
QUEUE_DEPTH: Final = "natsbus_subscriber_queue_depth"
JOBS: Final = "natsbus_jobs_total"
JOB_DURATION: Final = "natsbus_job_duration_seconds"
REDELIVERIES: Final = "natsbus_job_redeliveries_total"
FAST_COPIES: Final = "natsbus_fast_copies_total"
DEAD_LETTERED: Final = "natsbus_jobs_dead_lettered_total"
SLOW_CONSUMERS: Final = "natsbus_slow_consumers_total"
SENT_DISCONNECTED: Final = "natsbus_messages_sent_disconnected_total"
JOB_ANOMALIES: Final = "natsbus_job_anomalies_total"
PERMISSION_DENIALS: Final = "natsbus_permission_denials_total"
CONNECTION_UP: Final = "natsbus_connection_up"
RECONNECTS: Final = "natsbus_reconnects_total"
CONSUMER_PENDING: Final = "natsbus_jetstream_consumer_pending_messages"
CONSUMER_ACK_PENDING: Final = "natsbus_jetstream_consumer_ack_pending_messages"

METRIC_NAMES: Final = frozenset(
    {
        DISPATCH_LATENCY,
        HANDLER_DURATION,
        HANDLER_ERRORS,
        PUBLISHED,
        RECEIVED,
        DROPPED,
        DECODE_ERRORS,
        QUEUE_DEPTH,
        JOBS,
        JOB_DURATION,
        REDELIVERIES,
        FAST_COPIES,
        DEAD_LETTERED,
        SLOW_CONSUMERS,
        SENT_DISCONNECTED,
        JOB_ANOMALIES,
        PERMISSION_DENIALS,
        CONNECTION_UP,
        RECONNECTS,
        CONSUMER_PENDING,
        CONSUMER_ACK_PENDING,
    }
)
"""Every metric name natsbus exports, as written in queries (counters with ``_total``)."""

_ALL: Final = "all"
"""The value of a worker or subscriber label when ``worker_labels=False``."""

_NO_COUNTS: Final = NetworkCounts()

_LATENCY_BOUNDS: Final = [*(repr(b) for b in TIMING_BUCKETS), "+Inf"]
_JOB_BOUNDS: Final = [*(repr(b) for b in JOB_BUCKETS), "+Inf"]


def _lane_of(cls: type[BusMessage]) -> str:
    return cls.lane.value


def _cumulative(bounds: list[str], counts: Sequence[float]) -> list[tuple[str, float]]:
    total = 0.0
    buckets = []
    for bound, count in zip(bounds, counts, strict=False):
        total += count
        buckets.append((bound, total))
    return buckets


class BusMetrics:
    """The natsbus metrics of one registry: give it to buses with ``metrics=``.

    One instance serves every bus of a process (buses of one kind share a tally, so their
    series add up), and it registers itself once, as a ``prometheus_client`` collector.

    JetStream consumer gauges need a request to the server: :meth:`refresh` asks (the HTTP
    endpoint of :mod:`natsbus.observability.http` calls it before every scrape); until then
    they are absent.

    Args:
        registry: Where to register; prometheus_client's default ``REGISTRY`` unless given,
            None to register nowhere (call ``registry.register(metrics)`` yourself).
        worker_labels: Label queue depths and job metrics by worker name. Turn it off when a
            process makes workers with unbounded names (one per session, say): every such
            label then reads ``all``.
        consumer_timeout: Seconds :meth:`refresh` waits for each consumer's numbers.

    Raises:
        ValueError: The registry already holds natsbus metrics (one BusMetrics per registry).
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        worker_labels: bool = True,
        consumer_timeout: float = 1.0,
    ) -> None:
        self._worker_labels = worker_labels
        self._consumer_timeout = consumer_timeout
        self._tallies: dict[str, BusTally] = {}
        self._consumers: weakref.WeakKeyDictionary[WorkerBus, list[ConsumerStatistics]] = (
            weakref.WeakKeyDictionary()
        )
        self._registry = registry
        if registry is not None:
            registry.register(self)

    @property
    def registry(self) -> CollectorRegistry | None:
        """The registry these metrics are registered in."""
        return self._registry

    def tally_for(self, bus: WorkerBus) -> BusTally:
        """Return the tally ``bus`` counts into: one per kind of bus (``bus.kind``).

        Args:
            bus: The bus being made.
        """
        tally = self._tallies.get(bus.kind)
        if tally is None:
            tally = self._tallies[bus.kind] = BusTally(bus.kind)
        return tally

    async def refresh(self) -> None:
        """Ask the server for the pending counts of every live NatsBus's consumers.

        A bus whose consumers cannot be asked about now (the server is away) keeps the numbers
        it had: a dashboard shows the last known backlog through an outage, not a gap.
        """
        for bus in self._buses():
            try:
                fresh = await bus.consumer_statistics(self._consumer_timeout)
            except Exception:  # away: keep what we had
                logger.debug("consumer statistics of %r failed", bus, exc_info=True)
                continue
            if fresh or bus not in self._consumers:
                self._consumers[bus] = fresh

    # --- the prometheus_client Collector protocol ---------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (for the registry's duplicate check)."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        """Build every metric family from the tallies and the live buses (at scrape time)."""
        families = self._families()
        try:
            self._fill(families)
        except RuntimeError:
            # Scraped from another thread while the loop changed a dict under us: the next
            # scrape will do. (The natsbus HTTP endpoint scrapes on the loop itself.)
            logger.debug("natsbus metrics changed during collection", exc_info=True)
        return list(families.values())

    # --- internals ----------------------------------------------------------------------------

    def _buses(self) -> list[WorkerBus]:
        return [bus for tally in list(self._tallies.values()) for bus in list(tally.buses)]

    def _worker(self, name: str) -> str:
        return name if self._worker_labels else _ALL

    def _families(self) -> dict[str, Metric]:
        histogram = HistogramMetricFamily
        return {
            DISPATCH_LATENCY: histogram(
                DISPATCH_LATENCY,
                "Time from send() to the start of the handler, per dispatch (wall clocks).",
                labels=("bus", "lane", "type"),
            ),
            HANDLER_DURATION: histogram(
                HANDLER_DURATION,
                "Run time of subscriber handlers (on_bus_message).",
                labels=("bus", "lane", "type"),
            ),
            HANDLER_ERRORS: CounterMetricFamily(
                HANDLER_ERRORS,
                "Handler calls that raised (dispatch goes on).",
                labels=("bus", "lane", "type"),
            ),
            PUBLISHED: CounterMetricFamily(
                PUBLISHED, "Messages accepted by send().", labels=("bus", "lane", "type")
            ),
            RECEIVED: CounterMetricFamily(
                RECEIVED,
                "Messages handed to the local subscribers (once per message).",
                labels=("bus", "lane", "type"),
            ),
            DROPPED: CounterMetricFamily(
                DROPPED, "Messages dropped, by reason.", labels=("bus", "reason")
            ),
            DECODE_ERRORS: CounterMetricFamily(
                DECODE_ERRORS,
                "Inbound messages that did not decode (each also dropped).",
                labels=("bus", "reason"),
            ),
            SENT_DISCONNECTED: CounterMetricFamily(
                SENT_DISCONNECTED,
                "Core messages sent while the server was away: buffered, and maybe lost.",
                labels=("bus",),
            ),
            PERMISSION_DENIALS: CounterMetricFamily(
                PERMISSION_DENIALS,
                "Operations the NATS server refused: the bus's user lacks a permission.",
                labels=("bus",),
            ),
            SLOW_CONSUMERS: CounterMetricFamily(
                SLOW_CONSUMERS,
                "Times a subscriber's lane went over its limit (counted once until it drained).",
                labels=("bus", "lane"),
            ),
            QUEUE_DEPTH: GaugeMetricFamily(
                QUEUE_DEPTH,
                "Messages waiting in a subscriber's lane.",
                labels=("bus", "subscriber", "lane"),
            ),
            JOBS: CounterMetricFamily(
                JOBS, "Job answers sent by the local workers.", labels=("worker", "status")
            ),
            JOB_DURATION: histogram(
                JOB_DURATION,
                "Run time of jobs, from the handler's start to the answer.",
                labels=("worker", "status"),
            ),
            REDELIVERIES: CounterMetricFamily(
                REDELIVERIES,
                "Job requests delivered again after another taker died or released them.",
                labels=("bus",),
            ),
            FAST_COPIES: CounterMetricFamily(
                FAST_COPIES,
                "Stored messages that arrived after their fast copy on core NATS had been"
                " delivered (acknowledged and dropped: the normal path of a cancel or a reply).",
                labels=("bus",),
            ),
            JOB_ANOMALIES: CounterMetricFamily(
                JOB_ANOMALIES,
                "Job messages off the normal path: a job id already running (refused), a reply"
                " with no JetStream route (sent on the requester's core subject), a publish"
                " repeated for want of an acknowledgement, a redelivered request found answered"
                " (acknowledged, not run again).",
                labels=("bus", "kind"),
            ),
            DEAD_LETTERED: CounterMetricFamily(
                DEAD_LETTERED,
                "Job requests answered 'error' after too many deliveries.",
                labels=("bus",),
            ),
            CONNECTION_UP: GaugeMetricFamily(
                CONNECTION_UP,
                "1 while a bus connection to NATS is up, else 0.",
                labels=("bus", "connection"),
            ),
            RECONNECTS: CounterMetricFamily(
                RECONNECTS, "Reconnections to NATS.", labels=("bus", "connection")
            ),
            CONSUMER_PENDING: GaugeMetricFamily(
                CONSUMER_PENDING,
                "Messages stored for a JetStream consumer and not yet delivered.",
                labels=("role", "worker", "lane"),
            ),
            CONSUMER_ACK_PENDING: GaugeMetricFamily(
                CONSUMER_ACK_PENDING,
                "Messages delivered by a JetStream consumer and not yet acknowledged.",
                labels=("role", "worker", "lane"),
            ),
        }

    def _fill(self, families: Mapping[str, Any]) -> None:
        jobs: Counter[tuple[str, str]] = Counter()
        job_durations: dict[tuple[str, str], list[float]] = {}
        for kind, tally in list(self._tallies.items()):
            self._fill_dispatch(families, kind, tally)
            for key, count in list(tally.jobs.items()):
                worker_key = (self._worker(key[0]), key[1])
                jobs[worker_key] += count
            for key, histogram in list(tally.job_durations.items()):
                worker_key = (self._worker(key[0]), key[1])
                merged = job_durations.setdefault(worker_key, [0.0] * len(histogram))
                for i, value in enumerate(histogram):
                    merged[i] += value
        for (worker, status), count in sorted(jobs.items()):
            families[JOBS].add_metric((worker, status), count)
        for (worker, status), histogram in sorted(job_durations.items()):
            buckets = _cumulative(_JOB_BOUNDS, histogram[:-1])
            families[JOB_DURATION].add_metric((worker, status), buckets, histogram[-1])
        self._fill_buses(families)

    def _fill_dispatch(self, families: Mapping[str, Any], kind: str, tally: BusTally) -> None:
        for lane, table in ((Lane.SYSTEM.value, tally.system), (Lane.DATA.value, tally.data)):
            # Two classes of one name (from two modules) share a series: add them up.
            merged: dict[str, list[float]] = {}
            for cls, timings in list(table.items()):
                row = [
                    *timings.latency,
                    timings.latency_sum,
                    *timings.duration,
                    timings.duration_sum,
                ]
                total = merged.get(cls.__name__)
                merged[cls.__name__] = (
                    row if total is None else [a + b for a, b in zip(total, row, strict=True)]
                )
            width = len(TIMING_BUCKETS) + 1
            for name, row in sorted(merged.items()):
                labels = (kind, lane, name)
                families[DISPATCH_LATENCY].add_metric(
                    labels, _cumulative(_LATENCY_BOUNDS, row[:width]), row[width]
                )
                families[HANDLER_DURATION].add_metric(
                    labels, _cumulative(_LATENCY_BOUNDS, row[width + 1 : -1]), row[-1]
                )
        looped = list(tally.looped.items())  # sent by in-process buses to themselves: both
        for family, classes in ((PUBLISHED, tally.published), (RECEIVED, tally.received)):
            counts: Counter[tuple[str, str, str]] = Counter()
            for cls, count in [*classes.items(), *looped]:
                counts[(kind, _lane_of(cls), cls.__name__)] += count
            self._add_all(families[family], counts)
        # Every type a lane has dispatched has an error series (zero until its first error),
        # so that rate() sees the first burst.
        errors: Counter[tuple[str, str, str]] = Counter(
            {
                (kind, lane.value, cls.__name__): 0
                for lane, table in ((Lane.SYSTEM, tally.system), (Lane.DATA, tally.data))
                for cls in list(table)
            }
        )
        for (lane_kind, cls), count in list(tally.handler_errors.items()):
            errors[(kind, lane_kind.value, cls.__name__)] += count
        self._add_all(families[HANDLER_ERRORS], errors)

    def _fill_buses(self, families: Mapping[str, Any]) -> None:
        drops: Counter[tuple[str, str]] = Counter()
        slow: Counter[tuple[str, str]] = Counter()
        # What network buses count themselves: those that are gone (retired in their tally),
        # then the live ones. Each kind is present from the start, so rate() sees the first
        # event.
        network: dict[str, NetworkCounts] = {}
        for kind, tally in list(self._tallies.items()):
            for reason in DROP_REASONS:  # present from the start: rate() sees the first drop
                drops[(kind, reason)] += 0
            for reason, count in list(tally.dropped.items()):
                drops[(kind, reason)] += count
            for lane in Lane:
                slow[(kind, lane.value)] += tally.slow.get(lane, 0)
            if tally.retired_network != _NO_COUNTS:
                network.setdefault(kind, NetworkCounts()).add(tally.retired_network)
        depths: Counter[tuple[str, str, str]] = Counter()
        connections: dict[tuple[str, str], float] = {}
        for bus in self._buses():
            statistics = bus.statistics()
            kind = bus.kind
            for name, dispatcher in statistics.subscribers.items():
                subscriber = self._worker(name)
                depths[(kind, subscriber, Lane.SYSTEM.value)] += dispatcher.system.queued
                depths[(kind, subscriber, Lane.DATA.value)] += dispatcher.data.queued
            if statistics.network is None:
                continue
            network.setdefault(kind, NetworkCounts()).add(statistics.network.counts)
            for connection, up in statistics.network.connections.items():
                key = (kind, connection)
                connections[key] = min(connections.get(key, 1.0), 1.0 if up else 0.0)
        self._fill_network(families, network, drops)
        self._add_all(families[DROPPED], drops)
        self._add_all(families[SLOW_CONSUMERS], slow)
        self._add_all(families[QUEUE_DEPTH], depths)
        self._add_all(families[CONNECTION_UP], connections)
        self._fill_consumers(families)

    def _fill_network(
        self,
        families: Mapping[str, Any],
        network: Mapping[str, NetworkCounts],
        drops: Counter[tuple[str, str]],
    ) -> None:
        """The families of what network buses count, by bus kind (``drops`` gets theirs)."""
        decode_errors: Counter[tuple[str, str]] = Counter()
        reconnects: Counter[tuple[str, str]] = Counter()
        anomalies: Counter[tuple[str, str]] = Counter()
        redelivered: Counter[tuple[str]] = Counter()
        fast_copies: Counter[tuple[str]] = Counter()
        dead_lettered: Counter[tuple[str]] = Counter()
        sent_disconnected: Counter[tuple[str]] = Counter()
        denials: Counter[tuple[str]] = Counter()
        for kind, counts in network.items():
            for reason in DECODE_ERROR_REASONS:
                decode_errors[(kind, reason)] += 0
            for reason, count in counts.decode_errors.items():
                decode_errors[(kind, reason)] += count
                drops[(kind, reason)] += count
            drops[(kind, "disconnected")] += counts.dropped_disconnected
            drops[(kind, "duplicate")] += counts.duplicates
            drops[(kind, "slow_consumer")] += counts.slow_consumer_drops
            drops[(kind, "forged_source")] += counts.forged_source
            drops[(kind, "unexpected_answer")] += counts.unexpected_answers
            drops[(kind, "unexpected_control")] += counts.unexpected_controls
            for lane in Lane:
                reconnects[(kind, lane.value)] += counts.reconnects[lane]
            anomalies[(kind, "duplicate_job_id")] += counts.duplicate_job_ids
            anomalies[(kind, "unrouted_reply")] += counts.unrouted_replies
            anomalies[(kind, "publish_retry")] += counts.publish_retries
            anomalies[(kind, "answered_elsewhere")] += counts.answered_elsewhere
            redelivered[(kind,)] += counts.redelivered
            fast_copies[(kind,)] += counts.fast_copies
            dead_lettered[(kind,)] += counts.dead_lettered
            sent_disconnected[(kind,)] += counts.sent_disconnected
            denials[(kind,)] += counts.permission_denials
        self._add_all(families[DECODE_ERRORS], decode_errors)
        self._add_all(families[SENT_DISCONNECTED], sent_disconnected)
        self._add_all(families[PERMISSION_DENIALS], denials)
        self._add_all(families[RECONNECTS], reconnects)
        self._add_all(families[REDELIVERIES], redelivered)
        self._add_all(families[FAST_COPIES], fast_copies)
        self._add_all(families[DEAD_LETTERED], dead_lettered)
        self._add_all(families[JOB_ANOMALIES], anomalies)

    def _fill_consumers(self, families: Mapping[str, Any]) -> None:
        # The job-request consumer is shared by every bus hosting the worker: the buses of one
        # process see the same numbers, so keep the largest rather than add them up.
        consumers: dict[tuple[str, str, str], tuple[int, int]] = {}
        for bus in self._buses():
            for entry in self._consumers.get(bus, ()):
                worker = self._worker(entry.worker) if entry.worker else ""
                key = (entry.role, worker, entry.lane)
                pending, ack_pending = consumers.get(key, (0, 0))
                consumers[key] = (max(pending, entry.pending), max(ack_pending, entry.ack_pending))
        for key, (pending, ack_pending) in sorted(consumers.items()):
            families[CONSUMER_PENDING].add_metric(key, pending)
            families[CONSUMER_ACK_PENDING].add_metric(key, ack_pending)

    @staticmethod
    def _add_all(family: Any, values: Mapping[Any, float]) -> None:
        for labels, value in sorted(values.items()):
            family.add_metric(labels, value)
