"""Audio frames through BusBridgeProcessor over NatsBus, against raw nats-py.

Prints, in one run, for N = 10, 50 and 100 concurrent streams of sustained 20 ms audio frames
(16 kHz mono, 640 bytes, 50 frames/s per stream):

1. raw nats-py: publish -> subscribe of the same 640 bytes, one subject per stream;
2. the bridge: ``InputAudioRawFrame`` -> ``BusBridgeProcessor`` -> NatsBus -> nats-server ->
   NatsBus -> ``BusBridgeProcessor`` -> the next processor, one session per stream;

with the latency per frame (creation -> arrival in the receiving pipeline) p50/p99, and the
latency the bridge adds (its percentile minus raw's). Target: 100 streams (5,000 frames/s)
with added p99 <= 20 ms. Sender and receiver are separate processes; with nats-server that
is three busy processes on this machine's two cores.

Topology: each stream is one session, i.e. one NatsBus channel with a transport-side bridge
(worker ``transport``) in the sending process and an agent-side bridge (worker ``agent``,
``target_task="transport"``) in the receiving process. The N buses of a process share its two
NATS connections (``NatsBus(clients=...)``), as the sessions of one pod would.

Run: ``.venv/bin/python bench/frames.py`` (``--seconds S`` per measurement, default 4;
``--streams 10,50,100``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
from nats.aio.msg import Msg

from natsbus.bus.nats import NatsBus
from natsbus.frames import Frame, FrameDirection, InputAudioRawFrame, StartFrame
from natsbus.pipeline import BusBridgeProcessor, FrameProcessor, FrameProcessorSetup, Pipeline
from natsbus.testing import NatsServer

FRAME_SECONDS = 0.020
PCM = bytes(640)
WARMUP = 1.0
TARGET_P99_MS = 20.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def paced(streams: int, seconds: float, send_one: Callable[[int], Awaitable[None]]) -> int:
    """Call ``send_one(i)`` every 20 ms for each stream, phases spread over the 20 ms."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    end = start + seconds
    sent = 0

    async def stream(i: int) -> None:
        nonlocal sent
        due = start + FRAME_SECONDS * i / streams
        while due < end:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await send_one(i)
            sent += 1
            due += FRAME_SECONDS

    await asyncio.gather(*(stream(i) for i in range(streams)))
    return sent


# --- receiving side (a child process) ----------------------------------------------------------


class Probe(FrameProcessor):
    """Records creation -> arrival latency of every audio frame (its pts is the creation time)."""

    def __init__(self, latencies: list[tuple[int, float]]) -> None:
        super().__init__()
        self._latencies = latencies

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InputAudioRawFrame) and frame.pts is not None:
            self._latencies.append((frame.pts, time.time() - frame.pts / 1e9))


async def receive(mode: str, url: str, streams: int, run: str) -> None:
    latencies: list[tuple[int, float]] = []
    clients = [await nats.connect(url, no_echo=True) for _ in range(2)]
    buses: list[NatsBus] = []
    if mode == "raw":

        async def on_raw(msg: Msg) -> None:
            (sent_ns,) = struct.unpack_from("<q", msg.data)
            latencies.append((sent_ns, time.time() - sent_ns / 1e9))

        for i in range(streams):
            await clients[1].subscribe(f"bench.{run}.{i}", cb=on_raw)
        await clients[1].flush()
    else:
        for i in range(streams):
            bus = NatsBus(channel=f"{run}-{i}", clients=(clients[0], clients[1]))
            await bus.start()
            buses.append(bus)
            bridge = BusBridgeProcessor(bus=bus, worker_name="agent", target_task="transport")
            pipeline = Pipeline([bridge, Probe(latencies)])
            await pipeline.setup(FrameProcessorSetup(worker_name="agent", bus=bus))
            await pipeline.process_frame(StartFrame(), FrameDirection.DOWNSTREAM)
    print("READY", flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    first = min((sent for sent, _ in latencies), default=0)
    measured = [lat for sent, lat in latencies if sent >= first + WARMUP * 1e9]
    summary = {
        "received": len(latencies),
        "p50": percentile(measured, 0.5),
        "p99": percentile(measured, 0.99),
        "max": max(measured, default=float("nan")),
        "cpu": cpu_share,
    }
    print(json.dumps(summary), flush=True)
    for bus in buses:
        await bus.stop()
    for client in clients:
        await client.close()


# --- sending side (this process) ---------------------------------------------------------------


async def send(mode: str, url: str, streams: int, run: str, seconds: float) -> tuple[int, float]:
    """Send for ``seconds``; returns the frames sent and this process's CPU share meanwhile."""
    clients = [await nats.connect(url, no_echo=True) for _ in range(2)]
    buses: list[NatsBus] = []
    try:
        if mode == "raw":
            data = clients[1]
            buffer = bytearray(PCM)

            async def send_raw(i: int) -> None:
                struct.pack_into("<q", buffer, 0, time.time_ns())
                await data.publish(f"bench.{run}.{i}", bytes(buffer))

            return await _timed(paced(streams, seconds, send_raw))
        pipelines: list[Pipeline] = []
        for i in range(streams):
            bus = NatsBus(channel=f"{run}-{i}", clients=(clients[0], clients[1]))
            await bus.start()
            buses.append(bus)
            pipeline = Pipeline([BusBridgeProcessor(bus=bus, worker_name="transport")])
            await pipeline.setup(FrameProcessorSetup(worker_name="transport", bus=bus))
            await pipeline.process_frame(StartFrame(), FrameDirection.DOWNSTREAM)
            pipelines.append(pipeline)
        down = FrameDirection.DOWNSTREAM

        async def send_frame(i: int) -> None:
            frame = InputAudioRawFrame(PCM, 16000, 1, pts=time.time_ns())
            await pipelines[i].process_frame(frame, down)

        return await _timed(paced(streams, seconds, send_frame))
    finally:
        for client in clients:
            await client.flush()
        for bus in buses:
            await bus.stop()
        for client in clients:
            await client.close()


async def _timed(sending: Awaitable[int]) -> tuple[int, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    sent = await sending
    return sent, (time.process_time() - cpu) / (time.perf_counter() - wall)


async def measure(mode: str, url: str, streams: int, seconds: float) -> dict[str, float]:
    run = f"b{uuid.uuid4().hex[:6]}"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--receiver",
        mode,
        url,
        str(streams),
        run,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 120)
    if line.strip() != b"READY":
        raise RuntimeError(f"receiver said {line!r}")
    sent, sender_cpu = await send(mode, url, streams, run, WARMUP + seconds)
    await asyncio.sleep(0.5)  # the last frames land
    child.stdin.close()
    result = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
    await child.wait()
    return {
        "sent": sent,
        "received": result["received"],
        "cpu_tx": sender_cpu * 100,
        "cpu_rx": result["cpu"] * 100,
        **{key: result[key] * 1e3 for key in ("p50", "p99", "max")},
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--streams", default="10,50,100", help="comma-separated stream counts")
    parser.add_argument("--receiver", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        mode, url, streams, run = args.receiver
        await receive(mode, url, int(streams), run)
        return
    counts = [int(n) for n in args.streams.split(",")]
    async with NatsServer() as server:
        print(f"nats-server at {server.url}; Python {sys.version.split()[0]}")
        print(
            f"20 ms audio frames, 640 bytes each, {args.seconds:g} s measured per run after "
            f"{WARMUP:g} s of warm-up; latency = frame creation -> arrival, in ms"
        )
        header = "streams  frames/s  path      sent/recv        p50      p99      max   CPU% tx/rx"
        print(f"\n{header}\n{'-' * len(header)}")
        held = 0
        for streams in counts:
            raw = await measure("raw", server.url, streams, args.seconds)
            bridge = await measure("bridge", server.url, streams, args.seconds)
            rate = streams / FRAME_SECONDS
            for name, r in (("raw", raw), ("bridge", bridge)):
                print(
                    f"{streams:>7}  {rate:>8,.0f}  {name:<7} {r['sent']:>6}/{r['received']:<6} "
                    f"{r['p50']:>8.2f} {r['p99']:>8.2f} {r['max']:>8.2f}"
                    f"   {r['cpu_tx']:>4.0f}/{r['cpu_rx']:<4.0f}"
                )
            added_p50 = bridge["p50"] - raw["p50"]
            added_p99 = bridge["p99"] - raw["p99"]
            ok = added_p99 <= TARGET_P99_MS and bridge["received"] == bridge["sent"]
            if ok:
                held = max(held, streams)
            print(
                f"{'':>7}  {'':>8}  added by the bridge: p50 {added_p50:+.2f} ms, "
                f"p99 {added_p99:+.2f} ms  ({'OK' if ok else 'MISSED'} p99 <= 20 ms)"
            )
        print(
            f"\nlargest N holding added p99 <= {TARGET_P99_MS:g} ms: {held or 'none'} "
            f"(target 100: {'OK' if held >= 100 else 'MISSED'})"
        )


if __name__ == "__main__":
    asyncio.run(main())
