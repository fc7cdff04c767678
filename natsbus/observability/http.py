"""A small HTTP endpoint per process: ``/metrics``, ``/healthz`` and ``/readyz``.

It runs on the process's event loop (``asyncio.start_server``, no dependency beyond the
standard library and prometheus-client's text exposition), which is what makes ``/healthz``
mean "the loop is alive", and lets ``/metrics`` read the buses without locks. Each request is
answered and the connection closed (HTTP/1.0 style): probes and scrapers do not need more.

- ``GET /metrics``: the registry in Prometheus's text format, at once: the JetStream consumer
  numbers come from the last refresh, which a task of the endpoint does every
  ``consumer_refresh`` seconds (so a server that is away never slows a scrape).
- ``GET /healthz``: ``200 ok``.
- ``GET /readyz``: ``200 ready``, or ``503`` with one reason per line.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Final, Self

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import REGISTRY, CollectorRegistry

from natsbus.observability.health import Health
from natsbus.observability.metrics import BusMetrics
from natsbus.tasks import cancel_and_wait

__all__ = ["ObservabilityServer"]

logger = logging.getLogger(__name__)

_READ_TIMEOUT: Final = 5.0
_MAX_HEADER_LINES: Final = 100
_TEXT: Final = "text/plain; charset=utf-8"
_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


class ObservabilityServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on the running event loop.

    Example::

        async with ObservabilityServer(port=9464, metrics=metrics, health=health):
            await runner.run()

    Args:
        host: Address to listen on (all interfaces by default, as a pod needs).
        port: TCP port; 0 picks a free one (see :attr:`port`).
        registry: The registry ``/metrics`` exposes; ``metrics.registry`` if given, else the
            default ``REGISTRY``.
        metrics: Whose JetStream consumer numbers are refreshed in the background.
        health: The readiness checks; without any, ``/readyz`` is always ready.
        consumer_refresh: Seconds between two refreshes of the consumer numbers.
    """

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",  # a pod's probes and scrapes come from outside it
        port: int = 9464,
        registry: CollectorRegistry | None = None,
        metrics: BusMetrics | None = None,
        health: Health | None = None,
        consumer_refresh: float = 5.0,
    ) -> None:
        if registry is None:
            registry = metrics.registry if metrics is not None else None
        self._registry = registry if registry is not None else REGISTRY
        self._host = host
        self._port = port
        self._metrics = metrics
        self._health = health or Health()
        self._server: asyncio.Server | None = None
        self._consumer_refresh = consumer_refresh
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when asked for 0).

        Raises:
            RuntimeError: The server is not started.
        """
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the observability server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Start listening; a no-op if started."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
            if self._metrics is not None:
                self._refreshing = asyncio.create_task(
                    self._refresh_consumers(self._metrics), name="natsbus-metrics-refresh"
                )
            logger.info("serving /metrics, /healthz and /readyz on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop listening and close open connections; safe to call twice."""
        refreshing, self._refreshing = self._refreshing, None
        if refreshing is not None:
            await cancel_and_wait((refreshing,))
        server, self._server = self._server, None
        if server is not None:
            server.close()
            close_clients = getattr(server, "close_clients", None)  # Python 3.13+
            if close_clients is not None:
                close_clients()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                request = await reader.readline()
                for _ in range(_MAX_HEADER_LINES):  # the headers say nothing we need
                    if (await reader.readline()).strip() == b"":
                        break
            method, path = _parse(request)
            status, content_type, body = await self._answer(method, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass  # a client that went away, or sent garbage: nothing to answer
        except Exception:  # one bad scrape must not take the endpoint down
            logger.exception("observability endpoint failed to answer")
        finally:
            writer.close()

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"only GET and HEAD\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        if path == "/readyz":
            reasons = self._health.not_ready_reasons()
            if reasons:
                return 503, _TEXT, ("".join(f"{reason}\n" for reason in reasons)).encode()
            return 200, _TEXT, b"ready\n"
        return 404, _TEXT, b"try /metrics, /healthz or /readyz\n"

    async def _refresh_consumers(self, metrics: BusMetrics) -> None:
        while True:
            await metrics.refresh()  # never raises: a bus that cannot answer keeps its numbers
            await asyncio.sleep(self._consumer_refresh)


def _parse(request_line: bytes) -> tuple[str, str]:
    """``GET /readyz?verbose HTTP/1.1`` -> ``("GET", "/readyz")``."""
    parts = request_line.decode("latin-1").split()
    if len(parts) < 2:
        raise ValueError(f"not an HTTP request line: {request_line[:80]!r}")
    return parts[0].upper(), parts[1].split("?", 1)[0]
