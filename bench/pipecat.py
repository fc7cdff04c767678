"""pipecat's RedisBus beside natsbus.pipecat.NatsBus, with pipecat's own classes, in one run.

Prints, for each bus, with the ratio and the issue's target:
1. data throughput, publisher process -> subscriber process (``BusFrameMessage`` of a
   ``TextFrame``), target: NatsBus >= 10x RedisBus;
2. job round trip p50/p99 between two pipecat workers (``job()`` answered by a ``@job``
   handler with ``send_job_response``), in alternating pairs of runs, target: the median of
   the pairs' p50 ratios <= 1x;
3. the latency of a ``BusCancelMessage`` sent behind a flood of 10,000 data messages to a
   subscriber whose data handler burns 200 us of CPU each, and how many queued data messages
   it overtook; target: NatsBus p99 <= 5 ms.

Needs ``redis-server`` on PATH (Debian: ``apt-get install -y redis-server``) and the redis
client (``pip install 'redis[hiredis]'``, pipecat's ``redis`` extra). Both buses run on servers
this script starts on free loopback ports. On a shared machine the figures are indicative.

Run: ``.venv/bin/python bench/pipecat.py`` (``--quick`` for a short run).
"""

# ruff: noqa: E402  (the imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# This script is named after the package it measures: its own folder stays off the import path
# until pipecat is imported, or ``import pipecat`` would import this file.
_HERE = Path(__file__).resolve().parent
_PATH = list(sys.path)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import pipecat  # noqa: F401

sys.path[:] = _PATH

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import bus_nats
from common.flood import FloodTally, burn, percentile, verdict
from loguru import logger
from pipecat.bus import BusCancelMessage, BusFrameMessage, BusMessage, BusTTSSpeakMessage
from pipecat.bus.bus import WorkerBus
from pipecat.bus.subscriber import BusSubscriber
from pipecat.frames.frames import TextFrame
from pipecat.pipeline.job_context import JobParams
from pipecat.pipeline.job_decorator import job
from pipecat.processors.frame_processor import FrameDirection
from pipecat.utils.asyncio.task_manager import TaskManager
from pipecat.workers.base_worker import BaseWorker
from pipecat.workers.runner import WorkerRunner

import natsbus
from natsbus.collector import tune_collector
from natsbus.pipecat import NatsBus
from natsbus.testing import NatsServer

TEXT = "x" * 60
WARM_UP = 10
PAIRS = 5
"""Alternating RedisBus/NatsBus runs of section 2: one run each is at the mercy of the machine."""


def quiet() -> None:
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


# --- the two buses ------------------------------------------------------------------------------


def make_bus(kind: str, url: str, channel: str) -> WorkerBus:
    """A bus of ``kind``; a bus used without a runner needs :func:`started` for its tasks."""
    if kind == "redis":
        from pipecat.bus.network.redis import RedisBus
        from redis.asyncio import Redis

        return RedisBus(redis=Redis.from_url(url), channel=channel)
    return NatsBus(servers=url, channel=channel)


async def started(bus: WorkerBus) -> WorkerBus:
    """Hand the bus a task manager (a runner would) and start it."""
    await bus.setup(TaskManager(loop=asyncio.get_running_loop()))
    await bus.start()
    return bus


async def flush(bus: WorkerBus) -> None:
    if isinstance(bus, NatsBus):
        await bus.core.flush(30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench/pipecat.py needs redis-server on PATH (apt-get install -y redis-server)")
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220  (once, before anything is measured)
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    try:
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        for _ in range(100):
            with contextlib.suppress(Exception):
                if await client.ping():
                    break
            await asyncio.sleep(0.05)
        await client.aclose()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def in_child(*args: str) -> None:
    """Run this script's publisher in a child process: each side has its own interpreter."""
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--publisher", *args)
    if await child.wait() != 0:
        raise RuntimeError(f"publisher {args} failed")


# --- 1. throughput ------------------------------------------------------------------------------


class Counter(BusSubscriber):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return "rx"

    async def on_bus_message(self, message: BusMessage) -> None:
        if not isinstance(message, BusFrameMessage):
            return
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        elif self.count == self.expected:
            self.done.set()


async def throughput(kind: str, url: str, n: int) -> float:
    channel = f"tp-{uuid.uuid4().hex[:8]}"
    counter = Counter(n)
    bus = make_bus(kind, url, channel)
    await bus.subscribe(counter)
    await started(bus)
    try:
        await in_child("throughput", kind, url, channel, str(n))
        await asyncio.wait_for(counter.done.wait(), 300)
        return (n - 1) / (time.perf_counter() - counter.first)
    finally:
        await bus.stop()


async def throughput_publisher(bus: WorkerBus, n: int) -> None:
    for _ in range(n):
        frame = TextFrame(TEXT)
        await bus.send(
            BusFrameMessage(
                source="tx", target="rx", frame=frame, direction=FrameDirection.DOWNSTREAM
            )
        )


# --- 2. job round trips -------------------------------------------------------------------------


class Echo(BaseWorker):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.started = asyncio.Event()

    async def on_activated(self, args: dict[str, Any] | None) -> None:
        await super().on_activated(args)
        self.started.set()  # after setup() and start(): it can take jobs

    @job(name="echo")
    async def echo(self, message: Any) -> None:
        await self.send_job_response(message.job_id, message.payload)


class Rounds:
    """Times one job after another (after a warm-up); each framework's asker opens them."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.samples: list[float] = []
        self.done = asyncio.Event()

    async def ask(
        self, open_job: Callable[[int], contextlib.AbstractAsyncContextManager[Any]]
    ) -> None:
        for i in range(self.rounds + WARM_UP):
            start = time.perf_counter()
            async with open_job(i):
                pass
            if i >= WARM_UP:
                self.samples.append(time.perf_counter() - start)
        self.done.set()


class Asker(Rounds, BaseWorker):
    def __init__(self, rounds: int) -> None:
        BaseWorker.__init__(self, "asker")
        Rounds.__init__(self, rounds)

    async def on_activated(self, args: dict[str, Any] | None) -> None:
        await super().on_activated(args)
        params = lambda i: JobParams(name="echo", payload={"n": i})  # noqa: E731
        self.create_task(self.ask(lambda i: self.job("echo", params=params(i))), "ask")


async def job_round_trips(kind: str, url: str, rounds: int) -> list[float]:
    channel = f"jobs-{uuid.uuid4().hex[:8]}"
    worker_runner = WorkerRunner(
        bus=make_bus(kind, url, channel), name="runner-echo", handle_sigint=False
    )
    asker_runner = WorkerRunner(
        bus=make_bus(kind, url, channel), name="runner-asker", handle_sigint=False
    )
    asker, echo = Asker(rounds), Echo("echo")
    await worker_runner.add_workers(echo)
    running = [asyncio.create_task(worker_runner.run())]
    # A pipecat runner that meets another announces all its workers, set up or not: asked
    # before its setup(), the echo worker would have no TaskManager (RedisBus hands it the
    # request; natsbus keeps it in the stream until the worker has started).
    await asyncio.wait_for(echo.started.wait(), 30)
    await asker_runner.add_workers(asker)
    running.append(asyncio.create_task(asker_runner.run()))
    try:
        await asyncio.wait_for(asker.done.wait(), 300)
    finally:
        for runner in (asker_runner, worker_runner):
            await runner.cancel("bench done")
        await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 60)
    return asker.samples


class NatsbusEcho(natsbus.BaseWorker):
    @natsbus.job(name="echo")
    async def echo(self, message: natsbus.BusJobRequestMessage) -> dict[str, Any] | None:
        return message.payload


class NatsbusAsker(Rounds, natsbus.BaseWorker):
    def __init__(self, rounds: int) -> None:
        natsbus.BaseWorker.__init__(self, "asker")
        Rounds.__init__(self, rounds)

    async def on_activated(self, args: dict[str, Any] | None) -> None:
        await super().on_activated(args)
        params = lambda i: natsbus.JobParams(name="echo", payload={"n": i})  # noqa: E731
        self.spawn(self.ask(lambda i: self.job("echo", params=params(i))))


async def natsbus_round_trips(url: str, rounds: int) -> list[float]:
    """The same jobs between natsbus's own workers on natsbus's own NatsBus: the reference."""
    channel = f"jobs-{uuid.uuid4().hex[:8]}"
    runners = [
        natsbus.WorkerRunner(
            bus=natsbus.NatsBus(servers=url, channel=channel), handle_signals=False
        )
        for _ in range(2)
    ]
    asker = NatsbusAsker(rounds)
    await runners[0].add_workers(NatsbusEcho("echo"))
    await runners[1].add_workers(asker)
    running = [asyncio.create_task(r.run()) for r in runners]
    try:
        await asyncio.wait_for(asker.done.wait(), 300)
    finally:
        for runner in reversed(runners):
            await runner.cancel("bench done")
        await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 60)
    return asker.samples


# --- 3. a cancel behind a flood -----------------------------------------------------------------


class Busy(FloodTally, BusSubscriber):
    """Burns 200 us per data message; each cancel's latency and what it overtook."""

    def __init__(self, flood: int, cancels: int) -> None:
        super().__init__(flood)
        self.cancels = cancels
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return "busy"

    async def on_bus_message(self, message: BusMessage) -> None:
        flooded = False
        if isinstance(message, BusCancelMessage):
            self.system_handled(float(message.reason or 0))
        elif isinstance(message, BusTTSSpeakMessage):
            burn(0.0002)
            flooded = self.data_handled()
        if (flooded or len(self.data_done_at) == self.flood) and len(
            self.system_latencies
        ) == self.cancels:
            self.done.set()


async def cancel_under_flood(kind: str, url: str, flood: int, cancels: int) -> Busy:
    channel = f"flood-{uuid.uuid4().hex[:8]}"
    busy = Busy(flood, cancels)
    bus = make_bus(kind, url, channel)
    await bus.subscribe(busy)
    await started(bus)
    try:
        await in_child("flood", kind, url, channel, f"{flood}:{cancels}")
        await asyncio.wait_for(busy.done.wait(), 300)
    finally:
        await bus.stop()
    return busy


async def flood_publisher(bus: WorkerBus, flood: int, cancels: int) -> None:
    for seq in range(flood):
        await bus.send(BusTTSSpeakMessage(source="tx", target="busy", text=str(seq)))
    await flush(bus)
    # 10,000 x 200 us is 2 s of work: the cancels, 10 ms apart, land while it drains.
    for _ in range(cancels):
        await bus.send(BusCancelMessage(source="tx", target="busy", reason=repr(time.time())))
        await asyncio.sleep(0.01)


async def publisher(kind: str, bus_kind: str, url: str, channel: str, count: str) -> None:
    quiet()
    bus = await started(make_bus(bus_kind, url, channel))
    try:
        if kind == "throughput":
            await throughput_publisher(bus, int(count))
        else:
            flood, cancels = map(int, count.split(":"))
            await flood_publisher(bus, flood, cancels)
        await flush(bus)
    finally:
        await bus.stop()


# --- the report ---------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages, for a smoke run")
    parser.add_argument("--publisher", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Every process of the run, natsbus or not, as `natsbus run` sets its own.
    tune_collector()
    if args.publisher:
        await publisher(*args.publisher)
        return
    quiet()
    n_redis, n_nats = (2_000, 10_000) if args.quick else (10_000, 100_000)
    rounds = 50 if args.quick else 200
    flood, cancels = 10_000, (20 if args.quick else 100)

    async with NatsServer() as nats, redis_server() as redis:
        urls = {"redis": redis, "nats": nats.url}
        names = {"redis": "pipecat RedisBus", "nats": "natsbus.pipecat.NatsBus"}
        print(
            f"nats-server at {nats.url}, redis-server at {redis}; Python {sys.version.split()[0]}"
        )
        print(
            f"pid {os.getpid()}; gc tuned; sections 1 and 3: one run of each bus, on this machine"
        )

        rates = {
            "redis": await throughput("redis", redis, n_redis),
            "nats": await throughput("nats", nats.url, n_nats),
        }
        print("\n1. data throughput, publisher process -> subscriber process,")
        print(f"   BusFrameMessage(TextFrame({len(TEXT)} chars)), n={n_redis:,} / {n_nats:,}")
        for kind in ("redis", "nats"):
            print(f"   {names[kind]:<26}{rates[kind]:>12,.0f} msg/s")
        ratio = rates["nats"] / rates["redis"]
        print(f"   ratio {ratio:.1f}x   (target >= 10x: {verdict(ratio >= 10)})")

        print(
            f"\n2. job round trip, pipecat job() -> @job send_job_response,"
            f" {PAIRS if not args.quick else 2} alternating pairs of {rounds} rounds"
        )
        print("                               p50 ms    p99 ms   (medians over the pairs)")
        p50s: dict[str, list[float]] = {"redis": [], "nats": []}
        p99s: dict[str, list[float]] = {"redis": [], "nats": []}
        for _ in range(PAIRS if not args.quick else 2):
            for kind in ("redis", "nats"):
                samples = await job_round_trips(kind, urls[kind], rounds)
                p50s[kind].append(percentile(samples, 0.5))
                p99s[kind].append(percentile(samples, 0.99))
        for kind in ("redis", "nats"):
            p50, p99 = statistics.median(p50s[kind]), statistics.median(p99s[kind])
            print(f"   {names[kind]:<26}{p50 * 1e3:>8.3f}  {p99 * 1e3:>8.3f}")
        rtt = statistics.median(n / r for n, r in zip(p50s["nats"], p50s["redis"], strict=True))
        print(
            f"   p50 ratio {rtt:.2f}x (median of the pairs')   (target <= 1x: {verdict(rtt <= 1)})"
        )
        reference = await natsbus_round_trips(nats.url, rounds)
        print(
            f"   reference: natsbus's own workers {percentile(reference, 0.5) * 1e3:>8.3f}"
            f"  {percentile(reference, 0.99) * 1e3:>8.3f}   (the same JetStream path, no pipecat)"
        )

        print(
            f"\n3. {cancels} BusCancelMessage, 10 ms apart, behind {flood:,} data messages"
            " (data handler: 200 us of CPU each)"
        )
        for kind in ("redis", "nats"):
            busy = await cancel_under_flood(kind, urls[kind], flood, cancels)
            lat = busy.system_latencies
            p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
            share = busy.share_overtaken()
            target = f"   (target <= 5 ms: {verdict(p99 <= 0.005)})" if kind == "nats" else ""
            print(
                f"   {names[kind]:<26}p50 {p50 * 1e3:>8.3f} ms  p99 {p99 * 1e3:>8.3f} ms;"
                f" overtook {share:.1%} of the data queued ahead{target}"
            )
        # The same flood between natsbus's own buses (bench/bus_nats.py's): the reference.
        reference_busy = await bus_nats.system_under_flood(nats.url, flood, cancels)
        lat = reference_busy.system_latencies
        print(
            f"   reference: natsbus's own  p50 {percentile(lat, 0.5) * 1e3:>8.3f} ms"
            f"  p99 {percentile(lat, 0.99) * 1e3:>8.3f} ms;"
            f" overtook {reference_busy.share_overtaken():.1%} (the same path, no pipecat)"
        )


def run(entry: Callable[[], Any]) -> None:
    asyncio.run(entry())


if __name__ == "__main__":
    run(main)
