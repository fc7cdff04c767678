"""A slow subscriber flooded over NATS: bounded memory, cancels on time, and it says so."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import nats
import pytest

from natsbus import BusTTSSpeakMessage, BusWorkerErrorMessage, Codec, QueueLimits
from natsbus.bus import BusSubscriber
from natsbus.bus.nats import NatsBus
from natsbus.messages import BusMessage, BusSystemMessage, Lane

FLOOD = 50_000
LANE = 1_000
MEMORY_BOUND = 16 * 1024 * 1024
"""What the flood may add to the process: the lane's 1,000 messages (about 0.5 MB), what the
client holds before decoding, the publisher's buffers and the allocator's slack. Measured on
this machine: about 10 MiB bounded, 22.5 MiB with the lane unbounded (the default 100,000)."""


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Slow(BusSubscriber):
    """Takes 10 ms per data message; times its system messages from send to handler."""

    name = "rx"

    def __init__(self) -> None:
        self.data = 0
        self.system_latencies: list[float] = []

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusSystemMessage):
            self.system_latencies.append(time.time() - message.sent_at)
            return
        self.data += 1
        await asyncio.sleep(0.01)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc for memory")
async def test_a_flooded_slow_subscriber_stays_bounded_and_responsive(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "natsbus.bus.dispatch")
    channel = f"slow-{uuid.uuid4().hex[:8]}"
    slow = Slow()
    bus = NatsBus(servers=nats_url, channel=channel, limits=QueueLimits(data_lane=LANE))
    await bus.subscribe(slow)
    raw = await nats.connect(nats_url)
    codec = Codec()
    frame = codec.encode(BusTTSSpeakMessage("x" * 100, source="tx", target="rx"))
    data_subject = bus.layout.targeted(Lane.DATA, "rx", "tx")
    system_subject = bus.layout.targeted(Lane.SYSTEM, "rx", "tx")
    try:
        async with bus:
            before = peak = rss()

            async def flood() -> None:
                for i in range(FLOOD):
                    await raw.publish(data_subject, frame)
                    if i % 1_000 == 0:
                        await raw.flush()
                await raw.flush()

            async def cancels() -> None:
                for _ in range(100):
                    error = BusWorkerErrorMessage("stop", source="tx", target="rx")
                    error.sent_at = time.time()
                    await raw.publish(system_subject, codec.encode(error))
                    await asyncio.sleep(0.02)

            async def watch_memory() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss())
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_memory())
            await asyncio.gather(flood(), cancels())
            await asyncio.sleep(0.5)
            watcher.cancel()
            lane = bus.statistics().subscribers["rx"].data
    finally:
        await raw.close()
    assert peak - before < MEMORY_BOUND, f"grew {(peak - before) / 2**20:.1f} MiB"
    assert lane.queued <= LANE and lane.dropped > 0 and lane.slow_episodes == 1
    latencies = sorted(slow.system_latencies)
    assert len(latencies) == 100
    assert latencies[98] < 0.05, f"system lane p99 {latencies[98] * 1e3:.1f} ms"
    slow_logs = [r for r in caplog.records if "is slow" in r.getMessage()]
    assert len(slow_logs) == 1  # once per episode, not once per dropped message
