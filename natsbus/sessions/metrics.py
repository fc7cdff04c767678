"""Prometheus metrics of a serving process, per session group.

Every series exists from the start (the outcome label is a closed set), so dashboards and
KEDA see zeros rather than nothing. Names are in :data:`SESSION_METRIC_NAMES`, and the chart's
dashboards and alerts use exactly these (``tests/deploy`` keeps them in step).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from natsbus.sessions.protocol import Outcome

__all__ = ["SESSION_METRIC_NAMES", "SessionMetrics"]

SESSIONS_RUNNING: Final = "natsbus_sessions_running"
SLOTS_FREE: Final = "natsbus_session_slots_free"
SLOTS: Final = "natsbus_session_slots"
REQUESTS_WAITING: Final = "natsbus_session_requests_waiting"
START_LATENCY: Final = "natsbus_session_start_seconds"
ENDED: Final = "natsbus_sessions_ended_total"

SESSION_METRIC_NAMES: Final = frozenset(
    {SESSIONS_RUNNING, SLOTS_FREE, SLOTS, REQUESTS_WAITING, START_LATENCY, ENDED}
)
"""Every metric name this module exports (counters without their ``_total``-less alias)."""

START_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SessionMetrics:
    """The metrics of the sessions of one group in this process.

    Args:
        group: The session group (the ``group`` label).
        slots: How many sessions the process holds at most.
        registry: Where to register; prometheus_client's default registry by default.
    """

    def __init__(self, group: str, slots: int, registry: CollectorRegistry | None = None) -> None:
        where = REGISTRY if registry is None else registry
        labels = ("group",)
        self._running = Gauge(
            SESSIONS_RUNNING,
            "Sessions this process runs (starting ones included)",
            labels,
            registry=where,
        ).labels(group)
        self._free = Gauge(
            SLOTS_FREE,
            "Sessions this process may still take (0 while draining)",
            labels,
            registry=where,
        ).labels(group)
        Gauge(SLOTS, "Sessions this process holds at most", labels, registry=where).labels(
            group
        ).set(slots)
        self._waiting = Gauge(
            REQUESTS_WAITING,
            "Session requests of the group stored and not yet taken by any process",
            labels,
            registry=where,
        ).labels(group)
        self._start = Histogram(
            START_LATENCY,
            "Seconds from a session request's send to all its workers ready",
            labels,
            buckets=START_BUCKETS,
            registry=where,
        ).labels(group)
        ended = Counter(
            ENDED.removesuffix("_total"),
            "Sessions ended, by outcome",
            (*labels, "outcome"),
            registry=where,
        )
        self._ended = {outcome: ended.labels(group, outcome.value) for outcome in Outcome}
        self._slots = slots
        self._free.set(slots)

    def running(self, count: int, *, taking: bool) -> None:
        """Record how many sessions run now, and whether the process takes new ones."""
        self._running.set(count)
        self._free.set(max(self._slots - count, 0) if taking else 0)

    def waiting(self, count: int) -> None:
        """Record how many requests of the group wait in the stream."""
        self._waiting.set(count)

    def started(self, seconds: float) -> None:
        """Record one session's start latency."""
        self._start.observe(max(seconds, 0.0))

    def ended(self, outcome: Outcome) -> None:
        """Count one session's end."""
        self._ended[outcome].inc()
