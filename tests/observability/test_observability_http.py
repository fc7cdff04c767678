"""The HTTP endpoint: /healthz, /metrics, and /readyz following the bus and the runner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from natsbus.bus import AsyncQueueBus
from natsbus.bus.nats import NatsBus
from natsbus.observability import BusMetrics, Health, ObservabilityServer
from natsbus.testing import NatsServer
from natsbus.workers import BaseWorker, WorkerRunner

from helpers.observability import http_get
from helpers.workers import within


class Idle(BaseWorker):
    pass


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not await check():  # noqa: ASYNC110  (a probe polls, as Kubernetes does)
            await asyncio.sleep(0.05)

    await within(poll(), timeout)


async def test_healthz_metrics_and_unknown_paths() -> None:
    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    async with (
        AsyncQueueBus(metrics=metrics),
        ObservabilityServer(host="127.0.0.1", port=0, metrics=metrics) as server,
    ):
        assert await http_get(server.port, "/healthz") == (200, "ok\n")
        status, body = await http_get(server.port, "/metrics")
        assert status == 200 and "natsbus_subscriber_queue_depth{" not in body  # no subscriber
        assert "# TYPE natsbus_dispatch_latency_seconds histogram" in body
        assert (await http_get(server.port, "/nope"))[0] == 404
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /metrics HTTP/1.1\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 405")
        writer.close()


async def test_readyz_follows_the_runner_the_connection_and_the_drain(
    nats_server: NatsServer,
) -> None:
    bus = NatsBus(servers=nats_server.url, channel=f"ready-{uuid.uuid4().hex[:8]}")
    runner = WorkerRunner(bus=bus, handle_signals=False, grace_period=1.0)
    await runner.add_workers(Idle("idle"))
    health = Health()
    health.add_runner(runner)
    async with ObservabilityServer(host="127.0.0.1", port=0, health=health) as server:

        async def ready() -> bool:
            return (await http_get(server.port, "/readyz"))[0] == 200

        async def not_ready() -> bool:
            return not await ready()

        status, body = await http_get(server.port, "/readyz")
        assert status == 503 and "is created" in body
        task = asyncio.create_task(runner.run())
        await within(runner.registry.wait_ready(["idle"]))
        await eventually(ready)

        await nats_server.stop()
        await eventually(not_ready)
        status, body = await http_get(server.port, "/readyz")
        assert "connection is down" in body
        assert (await http_get(server.port, "/healthz"))[0] == 200  # alive all the same

        await nats_server.start()
        await eventually(ready)

        await runner.end("test drain")
        status, body = await http_get(server.port, "/readyz")
        assert status == 503 and "draining" in body
        await within(task)
        status, body = await http_get(server.port, "/readyz")
        assert status == 503
