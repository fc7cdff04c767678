"""NatsBus against raw nats-py, on one real nats-server started for the run.

Prints, in one run:
1. data-message throughput, 1 publisher bus -> 1 subscriber bus (~100-byte messages), beside
   raw nats-py publish -> subscribe of the same bytes, and their ratio (target >= 0.7x, issue
   #17); and
   the cost of the receiver's sender check (``natsbus.bus.nats.senders``), against the same
   bus with the check switched off (target <= 5%);
2. job request -> response round trip over JetStream, p50/p99, beside raw nats-py
   request/reply (target: p50 <= 4x raw);
3. the latency of a system message sent while 20,000 data messages are in flight to a
   subscriber whose data handler burns 200 us of CPU each, and how many it overtook
   (targets: overtakes >= 99.9%, p99 <= 2 ms, issue #17).

Run: ``.venv/bin/python bench/bus_nats.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Iterator

import nats
from common.flood import FloodTally, burn, percentile, verdict
from nats.aio.msg import Msg

from natsbus import (
    BusCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    BusSubscriber,
    BusTTSSpeakMessage,
    JobStatus,
    NatsBus,
    QueueLimits,
    encode,
)
from natsbus.bus.nats.senders import SenderCheck
from natsbus.collector import tune_collector
from natsbus.testing import NatsServer

PAIRS = 5
TEXT = "x" * 60  # with the envelope, about 100 bytes on the wire


def _admit_everything(check: SenderCheck, message: BusMessage, subject: str) -> bool:
    return True


@contextlib.contextmanager
def sender_check_off() -> Iterator[None]:
    """The receiving bus (in this process) without its sender check: the baseline of its cost."""
    checked = SenderCheck.admits
    SenderCheck.admits = _admit_everything  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        SenderCheck.admits = checked  # type: ignore[method-assign]


async def publish_from_child(*args: str) -> None:
    """Run this script as a publisher in a child process, so each side has its own interpreter."""
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--publisher", *args)
    if await child.wait() != 0:
        raise RuntimeError(f"publisher {args} failed")


async def raw_throughput(url: str, payload: bytes, n: int) -> float:
    subscriber = await nats.connect(url)
    received = 0
    first = 0.0
    done = asyncio.Event()

    async def on_msg(msg: object) -> None:
        nonlocal received, first
        received += 1
        if received == 1:
            first = time.perf_counter()
        elif received == n:
            done.set()

    subject = f"raw.{uuid.uuid4().hex}"
    await subscriber.subscribe(subject, cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await subscriber.flush()
    await publish_from_child("raw", url, subject, str(n))
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - first
    await subscriber.close()
    return (n - 1) / elapsed


async def raw_publisher(url: str, subject: str, count: str) -> None:
    n = int(count)
    sample = BusTTSSpeakMessage(TEXT, source="tx", target="rx")
    sample.id, sample.sent_at = "0" * 22, time.time()
    payload = encode(sample)
    publisher = await nats.connect(url)
    for _ in range(n):
        await publisher.publish(subject, payload)
    await publisher.flush()
    await publisher.close()


class Counter(BusSubscriber):
    def __init__(self, name: str, expected: int) -> None:
        self._name = name
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        elif self.count == self.expected:
            self.done.set()


async def bus_throughput(url: str, n: int) -> float:
    channel = f"bench-{uuid.uuid4().hex[:8]}"
    receiver = Counter("rx", n)
    # The publisher may outrun the receiver by the whole run: bound the lane above it.
    rx_bus = NatsBus(servers=url, channel=channel, limits=QueueLimits(data_lane=n + 1))
    await rx_bus.subscribe(receiver)
    async with rx_bus:
        await publish_from_child("bus", url, channel, str(n))
        await asyncio.wait_for(receiver.done.wait(), 120)
        elapsed = time.perf_counter() - receiver.first
    return (n - 1) / elapsed


async def bus_publisher(url: str, channel: str, count: str) -> None:
    n = int(count)
    async with NatsBus(servers=url, channel=channel) as tx_bus:
        for _ in range(n):
            await tx_bus.send(BusTTSSpeakMessage(TEXT, source="tx", target="rx"))
        await tx_bus.flush()


async def raw_request_reply(url: str, rounds: int) -> list[float]:
    requester, responder = await nats.connect(url), await nats.connect(url)
    subject = f"rr.{uuid.uuid4().hex}"

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe(subject, cb=answer)
    await responder.flush()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await requester.request(subject, b"x" * 100, timeout=5)
        samples.append(time.perf_counter() - start)
    await requester.close()
    await responder.close()
    return samples


class JobAnswerer(BusSubscriber):
    def __init__(self) -> None:
        self.bus: NatsBus | None = None

    @property
    def name(self) -> str:
        return "worker"

    @property
    def bus_job_targets(self) -> frozenset[str]:
        return frozenset(("worker",))

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage) and self.bus is not None:
            await self.bus.send(
                BusJobResponseMessage(
                    message.job_id,
                    JobStatus.COMPLETED,
                    message.payload,
                    source="worker",
                    target=message.source,
                )
            )


class JobWaiter(BusSubscriber):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[None]] = {}

    @property
    def name(self) -> str:
        return "client"

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusJobResponseMessage):
            future = self.waiting.pop(message.job_id, None)
            if future is not None:
                future.set_result(None)


async def job_round_trips(url: str, rounds: int) -> list[float]:
    channel = f"jobs-{uuid.uuid4().hex[:8]}"
    answerer, waiter = JobAnswerer(), JobWaiter()
    worker_bus = NatsBus(servers=url, channel=channel)
    client_bus = NatsBus(servers=url, channel=channel)
    answerer.bus = worker_bus
    await worker_bus.subscribe(answerer)
    await client_bus.subscribe(waiter)
    samples = []
    async with worker_bus, client_bus:
        loop = asyncio.get_running_loop()
        for i in range(rounds + 20):
            job_id = f"job-{i}"
            future = loop.create_future()
            waiter.waiting[job_id] = future
            start = time.perf_counter()
            await client_bus.send(
                BusJobRequestMessage(job_id, payload={"n": i}, source="client", target="worker")
            )
            await asyncio.wait_for(future, 10)
            if i >= 20:  # the first rounds warm the consumers up
                samples.append(time.perf_counter() - start)
    return samples


class BusyReceiver(FloodTally, BusSubscriber):
    """Its data handler burns 200 us of CPU; each system message's fate goes in the tally."""

    def __init__(self, flood: int) -> None:
        super().__init__(flood)
        self.all_data = asyncio.Event()

    @property
    def name(self) -> str:
        return "busy"

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusCancelMessage):
            self.system_handled(message.sent_at)
            return
        burn(0.0002)
        if self.data_handled():
            self.all_data.set()


async def system_under_flood(url: str, flood: int, system_messages: int) -> BusyReceiver:
    channel = f"flood-{uuid.uuid4().hex[:8]}"
    receiver = BusyReceiver(flood)
    limits = QueueLimits(data_lane=flood + 1)
    async with NatsBus(servers=url, channel=channel, limits=limits) as rx_bus:
        await rx_bus.subscribe(receiver)
        await publish_from_child("flood", url, channel, f"{flood}:{system_messages}")
        await asyncio.wait_for(receiver.all_data.wait(), 120)
    return receiver


async def flood_publisher(url: str, channel: str, counts: str) -> None:
    flood, system_messages = map(int, counts.split(":"))
    async with NatsBus(servers=url, channel=channel) as tx_bus:
        for seq in range(flood):
            await tx_bus.send(BusTTSSpeakMessage(str(seq), source="tx", target="busy"))
        await tx_bus.flush()
        # Spread over the drain (20,000 x 200 us is about 4 s of work: 300 x 10 ms fit in it).
        for i in range(system_messages):
            await tx_bus.send(BusCancelMessage(f"cancel {i}", source="tx", target="busy"))
            await asyncio.sleep(0.01)
        await tx_bus.flush()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer messages, for a smoke run")
    parser.add_argument("--publisher", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Every process of the run, natsbus or not, as `natsbus run` sets its own.
    tune_collector()
    if args.publisher:
        kind, url, where, count = args.publisher
        publishers = {"raw": raw_publisher, "bus": bus_publisher, "flood": flood_publisher}
        await publishers[kind](url, where, count)
        return
    n = 20_000 if args.quick else 200_000
    rounds = 100 if args.quick else 1000
    flood = 5_000 if args.quick else 20_000
    system_messages = 20 if args.quick else 300

    async with NatsServer() as server:
        url = server.url
        print(f"nats-server at {url}; Python {sys.version.split()[0]}; gc tuned")
        sample = BusTTSSpeakMessage(TEXT, source="tx", target="rx")
        sample.id, sample.sent_at = "0" * 22, time.time()
        payload = encode(sample)

        # Raw and bus runs alternate, and the ratio is the median of each pair's ratio: on a
        # shared machine the load drifts between runs more than the bus's cost does.
        raw_rates: list[float] = []
        bus_rates: list[float] = []
        unchecked_rates: list[float] = []
        for _ in range(PAIRS):
            raw_rates.append(await raw_throughput(url, payload, n))
            bus_rates.append(await bus_throughput(url, n))
            with sender_check_off():
                unchecked_rates.append(await bus_throughput(url, n))
        raw_rate = statistics.median(raw_rates)
        bus_rate = statistics.median(bus_rates)
        size = len(payload)
        print(
            f"\n1. data throughput, publisher process -> subscriber process, {size}-byte "
            f"messages, n={n:,}, {PAIRS} alternating pairs"
        )
        print(f"   raw nats-py        {raw_rate:>12,.0f} msg/s (median)")
        print(f"   NatsBus            {bus_rate:>12,.0f} msg/s (median)")
        ratio = statistics.median(b / r for b, r in zip(bus_rates, raw_rates, strict=True))
        print(f"   ratio              {ratio:>12.2f}x   (target >= 0.7x: {verdict(ratio >= 0.7)})")
        unchecked = statistics.median(unchecked_rates)
        cost = 1 - statistics.median(b / u for b, u in zip(bus_rates, unchecked_rates, strict=True))
        print(f"   without the sender check {unchecked:>6,.0f} msg/s (median)")
        print(f"   sender check cost  {cost:>12.1%}    (target <= 5%: {verdict(cost <= 0.05)})")

        raw_rtt = await raw_request_reply(url, rounds)
        job_rtt = await job_round_trips(url, rounds)
        raw_p50, raw_p99 = percentile(raw_rtt, 0.5), percentile(raw_rtt, 0.99)
        job_p50, job_p99 = percentile(job_rtt, 0.5), percentile(job_rtt, 0.99)
        print(f"\n2. round trip, {rounds} sequential rounds          p50 ms    p99 ms")
        print(f"   raw nats-py request/reply          {raw_p50 * 1e3:>8.3f}  {raw_p99 * 1e3:>8.3f}")
        print(f"   NatsBus job over JetStream         {job_p50 * 1e3:>8.3f}  {job_p99 * 1e3:>8.3f}")
        rtt_ratio = job_p50 / raw_p50
        print(f"   p50 ratio {rtt_ratio:.2f}x   (target <= 4x: {verdict(rtt_ratio <= 4)})")

        busy = await system_under_flood(url, flood, system_messages)
        lat = busy.system_latencies
        p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
        share = busy.share_overtaken()
        worst = min((o / q for o, q in busy.overtaken if q), default=0.0)
        print(
            f"\n3. {system_messages} system messages, 10 ms apart, sent behind {flood:,} data "
            "messages in flight (data handler: 200 us of CPU each)"
        )
        print(
            f"   latency send -> handler: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms "
            f"(target <= 2 ms: {verdict(p99 <= 0.002)})"
        )
        print(
            f"   overtook {share:.2%} of the data queued ahead of them, worst single one "
            f"{worst:.2%} (target >= 99.9%: {verdict(share >= 0.999)})"
        )


if __name__ == "__main__":
    asyncio.run(main())
