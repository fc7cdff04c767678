"""Idle sessions in one process: what each costs to start, to hold, and to stop.

Run: ``.venv/bin/python bench/idle_sessions.py [--counts 100,1000] [--quick]``

A session here is what a serving process holds for each call: a bus on a channel of its own,
a runner, and one worker that takes jobs. For each count, on a fresh nats-server, the
sessions are started one after the other on one shared connection pair
(``NatsConnections``), then, for the smallest count, on connections of their own (a bus's
default, the baseline), and the run prints per session: the time to start it, the memory it
holds (``tracemalloc``, after a collection), and the server-side objects it adds
(connections, subscriptions, consumers), then the time to stop them all and how many stops
did not return within 10 s. One raw nats-py "session" (two subscriptions on the shared
connections) is measured first, as the floor.

Targets (issue #17): 5,000 idle sessions, each started in <= 3 ms and holding <= 40 KiB,
server-side consumers and connections that do not grow with the sessions, all stopped in
under 10 s with none stuck.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats

from natsbus.bus.nats import JetStreamOptions, NatsBus, NatsConnections
from natsbus.testing import NatsServer
from natsbus.workers import BaseWorker, WorkerRunner

START_TARGET_MS = 3.0
MEMORY_TARGET_KIB = 40.0
STOP_TARGET_S = 10.0


class Idle(BaseWorker):
    """A worker that takes jobs and does nothing until its session ends."""


@dataclass
class Figures:
    sessions: int
    start_ms: float
    memory_kib: float
    connections: int
    subscriptions: float
    consumers: float
    stop_s: float
    stuck: int


def monitor(server: NatsServer, endpoint: str) -> Any:
    with urllib.request.urlopen(f"{server.monitor_url}/{endpoint}", timeout=10) as response:
        return json.load(response)


def server_objects(server: NatsServer) -> tuple[int, int, int]:
    """Connections, subscriptions and JetStream consumers the server holds now."""
    connz = monitor(server, "connz")["num_connections"]
    subsz = monitor(server, "subsz")["num_subscriptions"]
    consumers = monitor(server, "jsz")["consumers"]
    return connz, subsz, consumers


def held_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def start_session(index: int, connections: NatsConnections | None, url: str) -> Any:
    options = JetStreamOptions(max_consumers=20_000)  # above the server default of 1,000
    bus = (
        NatsBus(connections=connections, channel=f"session-{index}", jetstream_options=options)
        if connections is not None
        else NatsBus(servers=url, channel=f"session-{index}", jetstream_options=options)
    )
    runner = WorkerRunner(bus=bus, handle_signals=False)
    await runner.add_workers(Idle("agent"))
    task = asyncio.create_task(runner.run())
    await runner.registry.wait_ready(["agent"])
    return runner, task


async def stop_sessions(sessions: list[Any]) -> tuple[float, int]:
    began = time.perf_counter()

    async def stop(runner: WorkerRunner, task: asyncio.Task[None]) -> bool:
        await runner.cancel("bench over")
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TARGET_S)
        except TimeoutError:
            return False
        return True

    results = await asyncio.gather(*(stop(r, t) for r, t in sessions))
    return time.perf_counter() - began, results.count(False)


async def measure(count: int, shared: bool) -> Figures:
    with tempfile.TemporaryDirectory() as store:
        async with NatsServer(store_dir=Path(store), monitor_port=0) as server:
            connections = NatsConnections(server.url) if shared else None
            if connections is not None:
                await connections.open()
            # One session first: it makes the streams, which are not any session's cost.
            sessions = [await start_session(-1, connections, server.url)]
            before = server_objects(server)
            memory = held_bytes()
            began = time.perf_counter()
            for index in range(count):
                sessions.append(await start_session(index, connections, server.url))
            elapsed = time.perf_counter() - began
            held = held_bytes() - memory
            after = server_objects(server)
            stop_s, stuck = await stop_sessions(sessions)
            if connections is not None:
                await connections.close()
    return Figures(
        sessions=count,
        start_ms=elapsed / count * 1e3,
        memory_kib=held / count / 1024,
        connections=after[0] - before[0],
        subscriptions=(after[1] - before[1]) / count,
        consumers=(after[2] - before[2]) / count,
        stop_s=stop_s,
        stuck=stuck,
    )


async def raw_floor(count: int) -> tuple[float, float]:
    """Per 'session' with plain nats-py: two subscriptions on two shared connections."""
    with tempfile.TemporaryDirectory() as store:
        async with NatsServer(store_dir=Path(store)) as server:
            system, data = await nats.connect(server.url), await nats.connect(server.url)

            async def nothing(msg: Any) -> None:
                pass

            memory = held_bytes()
            began = time.perf_counter()
            subscriptions = []
            for index in range(count):
                subscriptions.append(await system.subscribe(f"raw.{index}.sys.>", cb=nothing))
                subscriptions.append(await data.subscribe(f"raw.{index}.data.>", cb=nothing))
                await system.flush()
            elapsed = time.perf_counter() - began
            held = held_bytes() - memory
            await system.close()
            await data.close()
    return elapsed / count * 1e3, held / count / 1024


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,1000", help="session counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="100 sessions only")
    args = parser.parse_args()
    counts = [100] if args.quick else [int(c) for c in args.counts.split(",")]
    tracemalloc.start()
    raw_ms, raw_kib = await raw_floor(min(counts))
    print(f"raw nats-py floor: {raw_ms:.2f} ms and {raw_kib:.1f} KiB per session")
    rows = [(await measure(min(counts), shared=False), "own connections")]
    rows += [(await measure(count, shared=True), "shared pair") for count in counts]
    print(
        f"{'sessions':>8}  {'connections of':<16} {'start ms':>8} {'KiB':>7} {'conns':>5}"
        f" {'subs':>6} {'consumers':>9} {'stop s':>7} {'stuck':>5}"
    )
    for figures, kind in rows:
        print(
            f"{figures.sessions:>8}  {kind:<16} {figures.start_ms:>8.2f} {figures.memory_kib:>7.1f}"
            f" {figures.connections:>5} {figures.subscriptions:>6.1f} {figures.consumers:>9.1f}"
            f" {figures.stop_s:>7.2f} {figures.stuck:>5}"
        )
    largest = rows[-1][0]
    print(
        f"{largest.sessions} sessions, shared pair: start {largest.start_ms:.2f} ms"
        f" ({largest.start_ms / raw_ms:.1f}x raw) {verdict(largest.start_ms <= START_TARGET_MS)};"
        f" memory {largest.memory_kib:.1f} KiB ({largest.memory_kib / raw_kib:.1f}x raw)"
        f" {verdict(largest.memory_kib <= MEMORY_TARGET_KIB)};"
        f" connections +{largest.connections} {verdict(largest.connections == 0)};"
        f" consumers {largest.consumers:.1f} per session {verdict(largest.consumers == 0)};"
        f" stop {largest.stop_s:.1f} s, {largest.stuck} stuck"
        f" {verdict(largest.stop_s < STOP_TARGET_S and largest.stuck == 0)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
