"""Benchmark the in-process AsyncQueueBus against a bare asyncio.Queue hand-off.

Run: ``.venv/bin/python bench/bus_local.py [--quick]``

Prints, for the bus and for the baseline in the same run:

* throughput: one publisher to 1 subscriber and to 10 subscribers, counting deliveries, from
  the first send until the last delivery (median of several rounds);
* priority: send -> handler-start latency of a system message sent right after 10,000 data
  messages were queued (the baseline has one FIFO queue, so its "system" message waits behind
  all of them), p50/p99 over 200 rounds;
* loop responsiveness: a system message sent by another task at a timer while the 10,000
  data messages drain, timed from the timer's due time to the handler's start (this shows the
  lane's time slice: the sending task only runs when the draining lane yields).

Targets: 1-subscriber throughput >= 0.15x the baseline; system-message p99 < 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter

from natsbus.bus import DEFAULT_TIME_SLICE, AsyncQueueBus, BusSubscriber, QueueLimits
from natsbus.messages import BusDataMessage, BusMessage, BusSystemMessage

FLOOD = 10_000


@dataclass
class Tick(BusDataMessage):
    seq: int = 0


@dataclass
class Urgent(BusSystemMessage):
    sent: float = 0.0


class Counter(BusSubscriber):
    """Counts data deliveries; records when a system message's handler starts."""

    def __init__(self, name: str, target: int, done: asyncio.Event) -> None:
        self._name = name
        self.count = 0
        self.target = target
        self.done = done
        self.urgent_at: float | None = None
        self.urgent_event = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, Urgent):
            self.urgent_at = perf_counter()
            self.urgent_event.set()
            return
        self.count += 1
        if self.count == self.target:
            self.done.set()


def median_of(rounds: int, run: Callable[[], Awaitable[float]]) -> Callable[[], Awaitable[float]]:
    async def measure() -> float:
        results = []
        for _ in range(rounds):
            gc.collect()
            results.append(await run())
        return statistics.median(results)

    return measure


async def bus_throughput(messages: list[Tick], subscribers: int) -> float:
    done = asyncio.Event()
    remaining = subscribers
    counters = []

    # A burst of all the messages at once: lanes bounded above it, so none is dropped.
    async with AsyncQueueBus(limits=QueueLimits(data_lane=len(messages) + 1)) as bus:
        for i in range(subscribers):
            sub_done = asyncio.Event()
            counter = Counter(f"sub-{i}", len(messages), sub_done)
            counters.append(counter)
            await bus.subscribe(counter)

        async def all_done() -> None:
            nonlocal remaining
            for counter in counters:
                await counter.done.wait()
                remaining -= 1
            done.set()

        waiter = asyncio.create_task(all_done())
        send = bus.send
        start = perf_counter()
        for message in messages:
            await send(message)
        await done.wait()
        elapsed = perf_counter() - start
        await waiter
    return len(messages) * subscribers / elapsed


async def queue_throughput(messages: list[Tick], subscribers: int) -> float:
    done = asyncio.Event()
    remaining = len(messages) * subscribers
    queues: list[asyncio.Queue[Tick]] = [asyncio.Queue() for _ in range(subscribers)]

    async def consume(queue: asyncio.Queue[Tick]) -> None:
        nonlocal remaining
        get = queue.get
        while True:
            await get()
            remaining -= 1
            if remaining == 0:
                done.set()

    tasks = [asyncio.create_task(consume(queue)) for queue in queues]
    await asyncio.sleep(0)
    start = perf_counter()
    # put_nowait, not ``await put``: the fastest hand-off asyncio.Queue offers.
    puts = [queue.put_nowait for queue in queues]
    for message in messages:
        for put in puts:
            put(message)
    await done.wait()
    elapsed = perf_counter() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(messages) * subscribers / elapsed


async def bus_priority(
    rounds: int, *, from_timer: bool, time_slice: float = DEFAULT_TIME_SLICE
) -> list[float]:
    """Latency of a system message behind a queued flood of FLOOD data messages."""
    latencies = []
    loop = asyncio.get_running_loop()
    async with AsyncQueueBus(time_slice=time_slice) as bus:
        done = asyncio.Event()
        counter = Counter("sub", 0, done)
        await bus.subscribe(counter)
        flood = [Tick(seq=i, source="bench") for i in range(FLOOD)]
        senders: list[asyncio.Task[None]] = []
        for _ in range(rounds):
            done.clear()
            counter.urgent_event.clear()
            counter.target = counter.count + FLOOD
            for message in flood:
                await bus.send(message)
            urgent = Urgent(source="bench")
            if from_timer:
                # Due 0.2 ms from now, i.e. while the flood drains; the time it really runs
                # depends on when the draining lane lets the loop turn.
                due = loop.time() + 0.0002

                def fire(message: Urgent = urgent, due: float = due) -> None:
                    message.sent = perf_counter() - (loop.time() - due)
                    senders.append(loop.create_task(bus.send(message)))

                loop.call_at(due, fire)
            else:
                urgent.sent = perf_counter()
                await bus.send(urgent)
            await counter.urgent_event.wait()
            assert counter.urgent_at is not None
            latencies.append(counter.urgent_at - urgent.sent)
            await done.wait()
        await asyncio.gather(*senders)
    return latencies


async def queue_priority(rounds: int) -> list[float]:
    """The same with one FIFO asyncio.Queue: the "system" message waits behind the flood."""
    queue: asyncio.Queue[BusMessage] = asyncio.Queue()
    seen = asyncio.Event()
    handled_at = 0.0

    async def consume() -> None:
        nonlocal handled_at
        while True:
            message = await queue.get()
            if isinstance(message, Urgent):
                handled_at = perf_counter()
                seen.set()

    task = asyncio.create_task(consume())
    flood = [Tick(seq=i, source="bench") for i in range(FLOOD)]
    latencies = []
    for _ in range(rounds):
        seen.clear()
        for message in flood:
            queue.put_nowait(message)
        urgent = Urgent(source="bench", sent=perf_counter())
        queue.put_nowait(urgent)
        await seen.wait()
        latencies.append(handled_at - urgent.sent)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return latencies


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1e3, cuts[98] * 1e3


async def main(quick: bool) -> None:
    count = 50_000 if quick else 200_000
    rounds = 3 if quick else 5
    latency_rounds = 50 if quick else 200
    messages = [Tick(seq=i, source="bench") for i in range(count)]

    print(f"AsyncQueueBus vs bare asyncio.Queue; {count:,} messages, median of {rounds} rounds")
    print()
    print(f"{'throughput (deliveries/s)':<34}{'bus':>14}{'asyncio.Queue':>16}{'ratio':>9}")
    ratios = {}
    for subscribers in (1, 10):
        sample = messages[: count // subscribers]
        bus_rate = await median_of(rounds, lambda s=subscribers, m=sample: bus_throughput(m, s))()
        queue_rate = await median_of(
            rounds, lambda s=subscribers, m=sample: queue_throughput(m, s)
        )()
        ratios[subscribers] = bus_rate / queue_rate
        label = f"1 publisher -> {subscribers} subscriber{'s' if subscribers > 1 else ''}"
        print(f"{label:<34}{bus_rate:>14,.0f}{queue_rate:>16,.0f}{ratios[subscribers]:>8.2f}x")

    print()
    print(f"system message behind {FLOOD:,} queued data messages, {latency_rounds} rounds")
    print(f"{'latency send -> handler start':<42}{'p50 ms':>8}{'p99 ms':>10}")
    bus_p50, bus_p99 = percentiles(await bus_priority(latency_rounds, from_timer=False))
    print(f"{'bus, sent after the flood':<42}{bus_p50:>8.3f}{bus_p99:>10.3f}")
    for time_slice in (DEFAULT_TIME_SLICE, 0.0005):
        timer_p50, timer_p99 = percentiles(
            await bus_priority(latency_rounds, from_timer=True, time_slice=time_slice)
        )
        label = f"bus, by a timer mid-drain, {time_slice * 1e3:.1f} ms slice"
        print(f"{label:<42}{timer_p50:>8.3f}{timer_p99:>10.3f}")
    queue_p50, queue_p99 = percentiles(await queue_priority(latency_rounds))
    print(f"{'asyncio.Queue (one FIFO)':<42}{queue_p50:>8.3f}{queue_p99:>10.3f}")

    print()
    ok_rate = ratios[1] >= 0.15
    ok_latency = bus_p99 < 1.0
    print(f"target 1-subscriber throughput >= 0.15x baseline: {ratios[1]:.2f}x  {_ok(ok_rate)}")
    print(f"target system-message p99 < 1 ms:                 {bus_p99:.3f} ms  {_ok(ok_latency)}")


def _ok(passed: bool) -> str:
    return "OK" if passed else "MISSED"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    asyncio.run(main(parser.parse_args().quick))
