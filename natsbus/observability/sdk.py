"""OpenTelemetry SDK set-up for ``natsbus run`` and demos: the only module that imports the SDK.

Library code never imports this module; an application that embeds natsbus sets up its own
SDK (or none) and gives :class:`~natsbus.observability.BusTracing` its provider.
"""

from __future__ import annotations

from typing import Any, Literal

from opentelemetry import trace

__all__ = ["Exporter", "configure_tracing"]

Exporter = Literal["console", "otlp"]


def configure_tracing(exporter: Exporter, *, service_name: str) -> Any:
    """Install an SDK ``TracerProvider`` as the global one, exporting in batches.

    Args:
        exporter: ``console`` (spans printed as JSON on stdout) or ``otlp`` (OTLP over HTTP
            to ``OTEL_EXPORTER_OTLP_ENDPOINT``; needs ``opentelemetry-exporter-otlp-proto-http``).
        service_name: The ``service.name`` resource attribute (``OTEL_SERVICE_NAME`` wins).

    Returns:
        The provider; call its ``shutdown()`` before exiting so that the last spans are sent.

    Raises:
        ValueError: The exporter is unknown, or its package (or the SDK) is not installed.
    """
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415  (SDK on demand only)
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as error:
        raise ValueError(
            "tracing needs the OpenTelemetry SDK: pip install 'natsbus[otel]'"
        ) from error

    span_exporter: SpanExporter
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
                OTLPSpanExporter,
            )
        except ImportError as error:
            raise ValueError(
                "--otel otlp needs the package opentelemetry-exporter-otlp-proto-http"
            ) from error
        span_exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"unknown span exporter {exporter!r}: use console or otlp")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return provider
