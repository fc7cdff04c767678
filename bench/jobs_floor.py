"""Jobs over NatsBus against the raw JetStream floor: the same durable steps in plain nats-py.

Run: ``.venv/bin/python bench/jobs_floor.py [--quick]``

The worker runs in a process of its own, the requester in this one, on one nats-server
started for the run. With 1, 8 and 64 jobs in flight, alternating natsbus and raw runs
(3 pairs, median of the per-pair ratios), it prints jobs per second, the p50 of one job's
round trip, and the CPU each job costs the server and the clients (both processes). Only the
jobs are timed: connecting, making the streams and consumers, and 50 warm-up jobs are not.

The floor does what natsbus's guarantees need and nothing more: the request is stored in a
work-queue stream (the publish waits for the stream's acknowledgement), the worker pulls it
from a durable consumer, stores its reply in a second stream (waiting for that
acknowledgement) and only then acknowledges the request; the requester reads its replies
through a consumer of its own and acknowledges each.

Targets (issue #17): 64 in flight >= 0.7x the floor's jobs/s; one at a time, p50 <= 1.3x the
floor's; server CPU per job <= 1.5x the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from natsbus.collector import tune_collector

PAIRS = 3
PAYLOAD = b"x" * 100
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    jobs_per_second: float
    p50_ms: float
    server_cpu_ms: float
    client_cpu_ms: float


class Window:
    """The timed part of a run: wall time and the CPU of the server and both clients."""

    def __init__(self, server_pid: int, child_pid: int) -> None:
        self._pids = (server_pid, child_pid)
        self.elapsed = self.server = self.clients = 0.0

    def begin(self) -> None:
        self._began = time.perf_counter()
        self._server = cpu_seconds(self._pids[0])
        self._clients = cpu_seconds(self._pids[1]) + time.process_time()

    def end(self) -> None:
        self.elapsed = time.perf_counter() - self._began
        self.server = cpu_seconds(self._pids[0]) - self._server
        self.clients = cpu_seconds(self._pids[1]) + time.process_time() - self._clients


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


# --- the worker processes -------------------------------------------------------------------


async def natsbus_worker(url: str, channel: str) -> None:
    from natsbus.bus.nats import NatsBus
    from natsbus.messages import BusJobRequestMessage
    from natsbus.workers import BaseWorker, WorkerRunner, job

    class NoOp(BaseWorker):
        @job(name="noop")
        async def noop(self, message: BusJobRequestMessage) -> None:
            return None

    runner = WorkerRunner(bus=NatsBus(servers=url, channel=channel), handle_sigint=False)
    await runner.add_workers(NoOp("noop"))

    @runner.event_handler("on_ready")
    async def ready(_: object) -> None:
        print("READY", flush=True)

    await runner.run()


async def raw_worker(url: str, channel: str) -> None:
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(
        StreamConfig(
            name=f"RAWREQ_{channel}",
            subjects=[f"raw.{channel}.req"],
            retention=RetentionPolicy.WORK_QUEUE,
        )
    )
    await js.add_stream(
        StreamConfig(name=f"RAWRSP_{channel}", subjects=[f"raw.{channel}.rsp.*"], max_age=300)
    )
    pull = await js.pull_subscribe(
        f"raw.{channel}.req",
        durable="worker",
        stream=f"RAWREQ_{channel}",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1024),
    )
    print("READY", flush=True)
    running: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        headers = msg.headers or {}
        await js.publish(
            f"raw.{channel}.rsp.{headers['Reply-To']}",
            msg.data,
            headers={"Nats-Msg-Id": f"ans:{headers['Nats-Msg-Id']}", "Job": headers["Job"]},
        )
        await msg.ack()

    while True:
        try:
            batch = await pull.fetch(256, timeout=5)
        except nats.errors.TimeoutError:
            continue
        for msg in batch:
            task = asyncio.create_task(answer(msg))
            running.add(task)
            task.add_done_callback(running.discard)


# --- the requester side ---------------------------------------------------------------------


async def natsbus_requests(
    url: str, channel: str, in_flight: int, jobs: int, window: Window
) -> list[float]:
    from natsbus.bus.nats import NatsBus
    from natsbus.client import BusClient

    latencies: list[float] = []
    async with BusClient(NatsBus(servers=url, channel=channel), name="requester") as client:

        async def one() -> None:
            began = time.perf_counter()
            await client.request("noop", "noop")
            latencies.append(time.perf_counter() - began)

        await run_in_flight(one, in_flight, 50)  # warm-up
        latencies.clear()
        window.begin()
        await run_in_flight(one, in_flight, jobs)
        window.end()
    return latencies


async def raw_requests(
    url: str, channel: str, in_flight: int, jobs: int, window: Window
) -> list[float]:
    client = await nats.connect(url)
    js = client.jetstream()
    me = uuid.uuid4().hex[:12]
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_reply(msg: Msg) -> None:
        future = waiting.pop((msg.headers or {}).get("Job", ""), None)
        await msg.ack()
        if future is not None and not future.done():
            future.set_result(None)

    replies = await js.subscribe(
        f"raw.{channel}.rsp.{me}", stream=f"RAWRSP_{channel}", cb=on_reply, manual_ack=True
    )
    latencies: list[float] = []

    async def one() -> None:
        job_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        waiting[job_id] = future
        began = time.perf_counter()
        await js.publish(
            f"raw.{channel}.req",
            PAYLOAD,
            headers={"Nats-Msg-Id": job_id, "Reply-To": me, "Job": job_id},
        )
        await future
        latencies.append(time.perf_counter() - began)

    try:
        await run_in_flight(one, in_flight, 50)
        latencies.clear()
        window.begin()
        await run_in_flight(one, in_flight, jobs)
        window.end()
    finally:
        await replies.unsubscribe()
        await client.close()
    return latencies


async def run_in_flight(one: Callable[[], Awaitable[None]], in_flight: int, jobs: int) -> None:
    remaining = jobs

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    await asyncio.gather(*(lane() for _ in range(in_flight)))


async def measure(kind: str, url: str, server_pid: int, in_flight: int, jobs: int) -> Run:
    channel = f"b{uuid.uuid4().hex[:8]}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", kind, url, channel, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    while (await asyncio.wait_for(child.stdout.readline(), 30)).strip() != b"READY":
        pass
    requests = natsbus_requests if kind == "natsbus" else raw_requests
    # Only the jobs are timed: connecting, making streams and consumers and the warm-up are
    # left out, for both.
    window = Window(server_pid, child.pid)
    latencies = await requests(url, channel, in_flight, jobs, window)
    child.terminate()
    await child.wait()
    return Run(
        jobs_per_second=jobs / window.elapsed,
        p50_ms=statistics.median(latencies) * 1e3,
        server_cpu_ms=window.server / jobs * 1e3,
        client_cpu_ms=window.clients / jobs * 1e3,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer jobs, for a smoke run")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Every process of the run, natsbus or not, as `natsbus run` sets its own.
    tune_collector()
    if args.child:
        kind, url, channel = args.child
        await (natsbus_worker if kind == "natsbus" else raw_worker)(url, channel)
        return
    from natsbus.testing import NatsServer

    async with NatsServer() as server:
        assert server.pid is not None
        print(
            f"nats-server at {server.url}; Python {sys.version.split()[0]}; gc tuned; {PAIRS} pairs"
        )
        print(
            f"{'in flight':>9}  {'':8} {'jobs/s':>8} {'p50 ms':>8} {'server CPU':>11} "
            f"{'client CPU':>11}   (CPU per job, ms)"
        )
        for in_flight in (1, 8, 64):
            jobs = (200 if args.quick else 1000) * max(1, in_flight // 8)
            pairs = []
            for _ in range(PAIRS if not args.quick else 1):
                raw = await measure("raw", server.url, server.pid, in_flight, jobs)
                bus = await measure("natsbus", server.url, server.pid, in_flight, jobs)
                pairs.append((raw, bus))
            for label, pick in (("floor", 0), ("natsbus", 1)):
                runs = [pair[pick] for pair in pairs]
                print(
                    f"{in_flight:>9}  {label:<8} "
                    f"{statistics.median(r.jobs_per_second for r in runs):>8.0f} "
                    f"{statistics.median(r.p50_ms for r in runs):>8.3f} "
                    f"{statistics.median(r.server_cpu_ms for r in runs):>11.3f} "
                    f"{statistics.median(r.client_cpu_ms for r in runs):>11.3f}"
                )
            rate = statistics.median(b.jobs_per_second / r.jobs_per_second for r, b in pairs)
            p50 = statistics.median(b.p50_ms / r.p50_ms for r, b in pairs)
            cpu = statistics.median(b.server_cpu_ms / r.server_cpu_ms for r, b in pairs)
            verdicts = []
            if in_flight == 64:
                verdicts.append(f"target >= 0.7x: {'OK' if rate >= 0.7 else 'MISSED'}")
            if in_flight == 1:
                verdicts.append(f"p50 target <= 1.3x: {'OK' if p50 <= 1.3 else 'MISSED'}")
            verdicts.append(f"server CPU target <= 1.5x: {'OK' if cpu <= 1.5 else 'MISSED'}")
            print(
                f"{'':>9}  ratio    {rate:>7.2f}x {p50:>7.2f}x {cpu:>10.2f}x"
                f"   ({'; '.join(verdicts)})",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
