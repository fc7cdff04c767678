"""Observability: Prometheus metrics, OpenTelemetry tracing and HTTP probes for natsbus.

- :class:`BusMetrics` counts what buses and workers do, for a Prometheus registry.
- :class:`BusTracing` makes producer and consumer spans and carries W3C trace context.
- :class:`Health` and :class:`ObservabilityServer` serve ``/metrics``, ``/healthz`` and
  ``/readyz``.

Metrics and tracing are off unless a bus is given them (``metrics=``, ``observer=``);
``natsbus run`` turns both on. See ``docs/observability.md``.
"""

from natsbus.observability.health import Health
from natsbus.observability.http import ObservabilityServer
from natsbus.observability.metrics import METRIC_NAMES, BusMetrics
from natsbus.observability.tracing import BusTracer, BusTracing, HeadersGetter, HeadersSetter

__all__ = [
    "METRIC_NAMES",
    "BusMetrics",
    "BusTracer",
    "BusTracing",
    "HeadersGetter",
    "HeadersSetter",
    "Health",
    "ObservabilityServer",
]
