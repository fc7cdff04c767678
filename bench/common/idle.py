"""Idle sessions in one process: what each costs to start, to hold, and to stop (issue #17).

A session here is what a serving process holds for each call: a bus on a channel of its own,
a runner, and one worker that takes jobs. The sessions are started one after the other on
one shared connection pair (``NatsConnections``), or on connections of their own (a bus's
default, the baseline).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from natsbus.bus.nats import NatsBus, NatsConnections
from natsbus.testing import NatsServer
from natsbus.workers import BaseWorker, WorkerRunner

BENCH = Path(__file__).resolve().parents[1]
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


def monitor(server: NatsServer | str, endpoint: str) -> Any:
    url = server if isinstance(server, str) else server.monitor_url
    with urllib.request.urlopen(f"{url}/{endpoint}", timeout=10) as response:
        return json.load(response)


def server_objects(server: NatsServer) -> tuple[int, int, int]:
    """Connections, subscriptions and JetStream consumers the server holds now."""
    connz = monitor(server, "connz")["num_connections"]
    subsz = monitor(server, "subsz")["num_subscriptions"]
    consumers = monitor(server, "jsz")["consumers"]
    return connz, subsz, consumers


def held() -> float:
    """KiB of Python allocations held now (0 while tracemalloc is off)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 1024


async def start_session(index: int, connections: NatsConnections | None, url: str) -> Any:
    bus = (
        NatsBus(connections=connections, channel=f"session-{index}")
        if connections is not None
        else NatsBus(servers=url, channel=f"session-{index}")
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
    elapsed = time.perf_counter() - began
    # The stuck ones too, before their connections close under them (a traced run is slow).
    await asyncio.wait([t for _, t in sessions], timeout=120)
    return elapsed, results.count(False)


async def measure(count: int, *, shared: bool) -> Figures:
    """Start ``count`` sessions on a fresh server, then stop them all; twice.

    Once with tracemalloc on, for the memory they hold (the resident set of a process that
    freed memory before says little), once with it off, for the rest (tracing slows Python
    down two to three times).
    """
    tracemalloc.start()
    try:
        traced = await _measure(count, shared=shared)
    finally:
        tracemalloc.stop()
    figures = await _measure(count, shared=shared)
    figures.memory_kib = traced.memory_kib
    return figures


async def _measure(count: int, *, shared: bool) -> Figures:
    with tempfile.TemporaryDirectory() as store:
        async with NatsServer(store_dir=Path(store), monitor_port=0) as server:
            connections = NatsConnections(server.url) if shared else None
            if connections is not None:
                await connections.open()
            # One session first: it makes the streams, which are not any session's cost.
            sessions = [await start_session(-1, connections, server.url)]
            before = server_objects(server)
            memory = held()
            began = time.perf_counter()
            for index in range(count):
                sessions.append(await start_session(index, connections, server.url))
            elapsed = time.perf_counter() - began
            memory = held() - memory
            after = server_objects(server)
            stop_s, stuck = await stop_sessions(sessions)
            if connections is not None:
                await connections.close()
    return Figures(
        sessions=count,
        start_ms=elapsed / count * 1e3,
        memory_kib=memory / count,
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

            tracemalloc.start()
            memory = held()
            subscriptions = []
            for index in range(count):
                subscriptions.append(await system.subscribe(f"raw.{index}.sys.>", cb=nothing))
                subscriptions.append(await data.subscribe(f"raw.{index}.data.>", cb=nothing))
                await system.flush()
            memory = held() - memory
            tracemalloc.stop()
            began = time.perf_counter()
            for index in range(count):
                subscriptions.append(await system.subscribe(f"raw2.{index}.sys.>", cb=nothing))
                subscriptions.append(await data.subscribe(f"raw2.{index}.data.>", cb=nothing))
                await system.flush()
            elapsed = time.perf_counter() - began
            await system.close()
            await data.close()
    return elapsed / count * 1e3, memory / count


async def filter_update_cost(counts: list[int]) -> list[tuple[int, float]]:
    """Seconds to update a consumer with ``n`` filter subjects (one added), per ``n``.

    Why the buses of a pair do not each add their filter subjects to the pair's consumers:
    the server checks every pair of filters on each update.
    """
    results = []
    async with NatsServer() as server:
        client = await nats.connect(server.url)
        jetstream = client.jetstream(timeout=120)
        await jetstream.add_stream(StreamConfig(name="F", subjects=["f.*.ctl.*.*"]))
        for n in counts:
            subjects = [f"f.s{i}.ctl.agent.*" for i in range(n)]
            config = ConsumerConfig(
                name="c",
                durable_name="c",
                filter_subjects=subjects,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                mem_storage=True,
            )
            await jetstream.add_consumer("F", config)
            config.filter_subjects = [*subjects, "f.new.ctl.agent.*"]
            began = time.perf_counter()
            await jetstream.add_consumer("F", config)
            results.append((n, time.perf_counter() - began))
            await jetstream.delete_consumer("F", "c")
        await client.close()
    return results


async def hold_sessions(url: str, count: int) -> None:
    """Child process of :func:`kill_and_restart`: start ``count`` sessions, say so, wait."""
    connections = NatsConnections(url)
    await connections.open()
    errors = 0
    for index in range(count):
        try:
            await start_session(os.getpid() * 100_000 + index, connections, url)
        except Exception as error:  # counted and shown: a limit error is what is looked for
            errors += 1
            if errors == 1:
                print(f"error: {type(error).__name__}: {error}", flush=True)
    print(f"started {count - errors} errors {errors}", flush=True)
    await asyncio.Event().wait()  # until killed


async def kill_and_restart(count: int) -> tuple[str, str, int]:
    """SIGKILL a process holding ``count`` sessions, start another one like it.

    On a server with the default limits. Returns what each process said, and the consumers
    the server holds once the second is up.
    """
    with tempfile.TemporaryDirectory() as store:
        async with NatsServer(store_dir=Path(store), monitor_port=0) as server:
            said = []
            for _ in range(2):
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    "import asyncio; from common.idle import hold_sessions;"
                    f" asyncio.run(hold_sessions({server.url!r}, {count}))",
                    cwd=BENCH,
                    stdout=asyncio.subprocess.PIPE,
                )
                assert child.stdout is not None
                lines = []
                while not lines or not lines[-1].startswith("started"):
                    line = (await child.stdout.readline()).decode().strip()
                    if not line:
                        break
                    lines.append(line)
                said.append("; ".join(lines))
                consumers = server_objects(server)[2]
                child.kill()
                await child.wait()
    return said[0], said[1], consumers
