"""Benchmark sessions: start latency, concurrent sessions with 20 ms audio, memory per session.

Run: ``.venv/bin/python bench/sessions.py [serve|idle|restart|filters|all] [--quick]``

``serve`` (the sessions issue): against a nats-server of its own and two serving processes
(``natsbus serve``, ``bench.session_app:make_session``), it prints in one run:

* session start latency (``start_session`` called -> all the session's workers ready) p50 and
  p99, with sessions requested open-loop at 10 and at 50 per second (each held 2 s);
* the most concurrent sessions the two processes hold while each session's ``mic`` sends a
  20 ms audio frame (640 bytes) to its ``ear`` and the send -> handler p99 stays within 20 ms
  (steps of sessions; every session streams);
* resident memory per idle session (both processes, before and after N idle sessions, measured
  first, so that no earlier session's freed memory hides it).

Targets on the 2-core development machine: start p99 <= 250 ms at 10/s; frame p99 <= 20 ms.

``idle`` (issue #17, "thousands of sessions per process"): idle sessions started one after
the other in this process on one shared connection pair, for 100, 1,000 and 5,000 sessions
(``--quick``: 100), each on a fresh nats-server, and 100 on connections of their own (the
baseline): per session, the start time, the memory held (the Python allocations traced by
``tracemalloc``, in a second run), the server-side connections, subscriptions and consumers
added; then the time to stop them all and how many stops did not return within
10 s. A raw nats-py "session" (two subscriptions on shared connections) is the floor.
Targets: <= 3 ms to start, <= 40 KiB held, no connection nor consumer per session, all
stopped in under 10 s with none stuck.

``restart``: a process holding 1,000 idle sessions (``--quick``: 100) is SIGKILLed and
another one starts as many, on a server with the default limits: it must come up without a
limit error ("maximum consumers limit reached").

``filters``: what updating one consumer with n filter subjects costs the server (why a pair's
buses do not each add theirs to the pair's consumers: see docs/architecture.md).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

from common import idle

import natsbus
from natsbus.errors import NatsBusError
from natsbus.sessions import SessionHandle
from natsbus.testing import NatsServer

ROOT = Path(__file__).resolve().parents[1]
GROUP = "bench"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


async def serve(url: str, slots: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "natsbus.cli",
        "serve",
        "bench.session_app:make_session",
        f"--group={GROUP}",
        f"--slots={slots}",
        f"--nats-url={url}",
        "--no-metrics",
        "--log-level=WARNING",
        "--services-channel=",
        cwd=ROOT,
    )
    return process


async def open_loop(
    client: natsbus.BusClient, rate: float, seconds: float
) -> tuple[list[float], collections.Counter[str]]:
    """Ask for sessions at ``rate`` per second for ``seconds``.

    Returns each start's latency, and the sessions that did not start or end cleanly, by error
    (an overloaded machine has some).
    """
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()

    async def one() -> None:
        started = time.perf_counter()
        try:
            session = await client.start_session(GROUP, timeout=30)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(2.0)
            await session.cancel("bench")
            await session.wait(30)
        except NatsBusError as error:
            errors[type(error).__name__] += 1

    tasks = []
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(begin + i / rate - time.perf_counter(), 0))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, errors


async def hold(client: natsbus.BusClient, count: int) -> list[SessionHandle]:
    return list(
        await asyncio.gather(*(client.start_session(GROUP, timeout=60) for _ in range(count)))
    )


async def frames_p99(sessions: list[SessionHandle], seconds: float) -> float:
    for session in sessions:
        await session.request("ear", "stats", {}, timeout=30)  # clears what came before
    await asyncio.sleep(seconds)
    answers = await asyncio.gather(*(s.request("ear", "stats", {}, timeout=30) for s in sessions))
    latencies = [x for answer in answers for x in (answer or {}).get("latencies", [])]
    return quantile(latencies, 0.99) * 1000


async def end_all(sessions: list[SessionHandle]) -> None:
    for session in sessions:
        await session.cancel("bench")
    await asyncio.gather(*(s.wait(60) for s in sessions), return_exceptions=True)
    for session in sessions:
        await session.close()


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


async def idle_part(quick: bool) -> None:
    counts = [100] if quick else [100, 1000, 5000]
    raw_ms, raw_kib = await idle.raw_floor(100)
    print(f"idle sessions; raw nats-py floor: {raw_ms:.2f} ms and {raw_kib:.1f} KiB per session")
    rows = [(await idle.measure(100, shared=False), "own connections")]
    rows += [(await idle.measure(count, shared=True), "shared pair") for count in counts]
    print(
        f"{'sessions':>8}  {'connections of':<16} {'start ms':>8} {'KiB':>7} {'conns':>5}"
        f" {'subs':>6} {'consumers':>9} {'stop s':>7} {'stuck':>5}"
    )
    for f, kind in rows:
        print(
            f"{f.sessions:>8}  {kind:<16} {f.start_ms:>8.2f} {f.memory_kib:>7.1f}"
            f" {f.connections:>5} {f.subscriptions:>6.1f} {f.consumers:>9.1f}"
            f" {f.stop_s:>7.2f} {f.stuck:>5}"
        )
    for f, kind in rows[1:]:
        print(
            f"  {f.sessions} sessions, {kind}:"
            f" start {f.start_ms:.2f} ms {verdict(f.start_ms <= idle.START_TARGET_MS)};"
            f" memory {f.memory_kib:.1f} KiB {verdict(f.memory_kib <= idle.MEMORY_TARGET_KIB)};"
            f" connections +{f.connections} {verdict(f.connections == 0)};"
            f" consumers {f.consumers:.2f} per session {verdict(f.consumers * f.sessions < 1)};"
            f" stop {f.stop_s:.1f} s, {f.stuck} stuck"
            f" {verdict(f.stop_s < idle.STOP_TARGET_S and f.stuck == 0)}"
        )


async def restart_part(quick: bool) -> None:
    count = 100 if quick else 1000
    first, second, consumers = await idle.kill_and_restart(count)
    ok = "error:" not in second and f"started {count} errors 0" in second
    print(f"kill and restart with {count} idle sessions (default server limits):")
    print(f"  first process: {first}")
    print(f"  after SIGKILL, the next: {second}; consumers on the server: {consumers}")
    print(f"  comes up without a limit error: {verdict(ok)}")


async def filters_part(quick: bool) -> None:
    counts = [100, 1000] if quick else [100, 1000, 3000, 6000]
    print("updating one consumer with n filter subjects (nats-server checks every pair):")
    for n, seconds in await idle.filter_update_cost(counts):
        print(f"  {n:>6} filters: {seconds * 1000:8.1f} ms per update")


async def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as store:
        async with NatsServer(store_dir=Path(store)) as server:
            processes = [await serve(server.url, 400) for _ in range(2)]
            try:
                async with natsbus.connect(server.url) as client:
                    warm = await hold(client, 4)  # both processes up, imports done
                    await end_all(warm)
                    idle_count = 100 if quick else 200
                    before = sum(rss_kib(p.pid) for p in processes)
                    idle = await hold(client, idle_count)
                    await asyncio.sleep(1.0)
                    after = sum(rss_kib(p.pid) for p in processes)
                    print(
                        f"memory per idle session: {(after - before) / idle_count:.0f} KiB"
                        f" ({idle_count} sessions, both processes: {before} -> {after} KiB)"
                    )
                    await end_all(idle)
                    print("session start latency (start_session -> all workers ready):")
                    for rate in (10, 50):
                        latencies, errors = await open_loop(client, rate, 2.0 if quick else 5.0)
                        p50, p99 = (quantile(latencies, q) * 1000 for q in (0.5, 0.99))
                        print(
                            f"  {rate:>3}/s  n={len(latencies):<4}"
                            f" p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
                            f"  errors {dict(errors) or 'none'}"
                        )
                    print(
                        "concurrent sessions with 20 ms audio frames mic -> ear (send -> handler):"
                    )
                    held: list[SessionHandle] = []
                    best = 0
                    for target in (10, 25, 50, 75, 100, 150, 200) if not quick else (10, 25, 50):
                        more = await hold(client, target - len(held))
                        for session in more:
                            await session.request("mic", "stream", {}, timeout=30)
                        held += more
                        p99 = await frames_p99(held, 2.0 if quick else 3.0)
                        print(f"  {target:>4} sessions  frame p99 {p99:7.1f} ms")
                        if p99 > 20.0:
                            break
                        best = target
                    print(f"  most sessions with frame p99 <= 20 ms: {best} (steps above)")
                    await end_all(held)
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    await process.wait()


PARTS = {"serve": main, "idle": idle_part, "restart": restart_part, "filters": filters_part}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all", choices=[*PARTS, "all"])
    parser.add_argument("--quick", action="store_true", help="fewer sessions, shorter steps")
    args = parser.parse_args()
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            asyncio.run(part(args.quick))
