"""What metrics and tracing cost the buses: throughput with each turned on, in one run.

Run: ``.venv/bin/python bench/overhead.py`` (``--quick`` for fewer messages).

For AsyncQueueBus (one publisher, one subscriber, in-process) and NatsBus (a publishing bus
and a subscribing bus in this process, on a nats-server started for the run), it prints
data-message throughput with:

1. metrics and tracing off ("off (control)" is off again: its cost is the noise);
2. metrics on (``BusMetrics`` in a fresh registry, scraped once per round);
3. metrics and tracing on: ``BusTracing`` on the OpenTelemetry SDK, batch span processor, an
   exporter that drops everything; messages are sent outside any span, as a stream of data
   is, so by default (``new_traces="jobs"``) they start no trace;
4. (worst case, no target) the same with every message traced: ``new_traces="all"``, a
   producer and a consumer span per message; on a tenth of the messages (against "off" on as
   many), so that the span queue never overflows and the run stays short.

Each configuration runs in adjacent pairs with "off"; its cost is the median of the pairs'
costs (see ``measure``).

Targets: metrics on costs <= 15% of throughput; metrics plus tracing <= 35%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, generate_latest

from natsbus import AsyncQueueBus, BusMessage, BusSubscriber, BusTTSSpeakMessage, NatsBus
from natsbus.observability import BusMetrics, BusTracing
from natsbus.testing import NatsServer

TEXT = "x" * 60


class DropAll(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Counter(BusSubscriber):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return "rx"

    async def on_bus_message(self, message: BusMessage) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


def configs() -> list[tuple[str, Callable[[], dict[str, Any]], float]]:
    """Each configuration: its name, a maker of the buses' options, the share of messages."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropAll(), max_queue_size=1 << 16))

    def metrics() -> dict[str, Any]:
        return {"metrics": BusMetrics(registry=CollectorRegistry())}

    return [
        ("off", dict, 1.0),
        # Off against off: its cost is the noise left in the figures (should read about 0%).
        ("off (control)", dict, 1.0),
        ("metrics", metrics, 1.0),
        (
            "metrics+tracing",
            lambda: {**metrics(), "observer": BusTracing(tracer_provider=provider)},
            1.0,
        ),
        (
            "every msg traced",
            lambda: {
                **metrics(),
                "observer": BusTracing(tracer_provider=provider, new_traces="all"),
            },
            0.1,
        ),
    ]


async def local_round(n: int, options: dict[str, Any]) -> float:
    counter = Counter(n)
    messages = [BusTTSSpeakMessage(TEXT, source="tx", target="rx") for _ in range(n)]
    async with AsyncQueueBus(**options) as bus:
        await bus.subscribe(counter)
        gc.collect()
        start = time.perf_counter()
        for message in messages:
            await bus.send(message)
        await asyncio.wait_for(counter.done.wait(), 120)
        elapsed = time.perf_counter() - start
        scrape(options)
    return n / elapsed


async def nats_round(url: str, channel: str, n: int, options: dict[str, Any]) -> float:
    counter = Counter(n)
    receiver = NatsBus(servers=url, channel=channel, **options)
    sender = NatsBus(servers=url, channel=channel, **options)
    await receiver.subscribe(counter)
    async with receiver, sender:
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            await sender.send(BusTTSSpeakMessage(TEXT, source="tx", target="rx"))
        await asyncio.wait_for(counter.done.wait(), 120)
        elapsed = time.perf_counter() - start
        scrape(options)
    return n / elapsed


def scrape(options: dict[str, Any]) -> None:
    metrics = options.get("metrics")
    if metrics is not None:
        assert b"natsbus_dispatch_latency_seconds_count" in generate_latest(metrics.registry)


async def measure(
    label: str, pairs: int, n: int, run: Callable[[int, dict[str, Any]], Awaitable[float]]
) -> None:
    """Run every configuration against "off" in adjacent pairs and print what each costs.

    Noise on a shared VM drifts over seconds and slows a run by up to half, so a median of
    separate rounds swings by tens of per cent. Two short runs side by side see the same
    conditions: each pair gives one cost, ``1 - rate / off_rate``, and the figure is the
    median over the pairs (the order inside a pair alternates). The best rate of each
    configuration against the best "off" rate is printed beside it as a check; the control
    row (off against off) shows the noise that is left.
    """
    print(label)
    print(f"  {'':<18} {'median rate':>13}  {'cost':>6}  {'(IQR of pairs)':>17}  best-of")
    rows = []
    for name, make, share in configs()[1:]:
        count = int(n * share)
        costs, rates, off_rates = [], [], []
        for i in range(pairs):
            pair = [(dict, off_rates), (make, rates)]
            for maker, into in pair if i % 2 else reversed(pair):
                into.append(await run(count, maker()))
            costs.append(1 - rates[-1] / off_rates[-1])
        rows.append((name, costs, rates, max(off_rates)))
    for name, costs, rates, best_off in rows:
        cost = statistics.median(costs)
        q1, _, q3 = statistics.quantiles(costs)
        target = {"metrics": 0.15, "metrics+tracing": 0.35}.get(name)
        verdict = (
            ""
            if target is None
            else ("  OK" if cost <= target else "  MISSED") + f" (<= {target:.0%})"
        )
        print(
            f"  {name:<18} {statistics.median(rates):>7,.0f} msg/s  {cost:>6.1%}"
            f"  ({q1:>6.1%} .. {q3:>6.1%})  {1 - max(rates) / best_off:>6.1%}{verdict}"
        )


async def main(quick: bool) -> None:
    pairs = 15 if quick else 60
    local_n = 5_000
    nats_n = 1_000 if quick else 2_000
    await measure(
        f"AsyncQueueBus, {local_n:,} messages a run, {pairs} pairs of runs",
        pairs,
        local_n,
        local_round,
    )
    async with NatsServer() as server:
        # One channel for every run: runs follow each other, and a channel per run would
        # leave its JetStream consumers behind on the server.
        channel = f"overhead-{uuid.uuid4().hex[:8]}"
        await measure(
            f"NatsBus (both buses in this process), {nats_n:,} messages a run, {pairs} pairs",
            pairs,
            nats_n,
            lambda n, options: nats_round(server.url, channel, n, options),
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    asyncio.run(main(parser.parse_args().quick))
