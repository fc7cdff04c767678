"""A short scene on the in-process bus: ``python examples/priority_scene.py``.

A runner and two workers share one :class:`~natsbus.bus.AsyncQueueBus`:

1. the workers announce that they are ready and the runner activates them;
2. the runner asks ``counter`` for a job and gets progress updates, then the response;
3. the runner floods ``listener`` with 5,000 stream chunks and then sends a cancel: the cancel
   is a system message, so it overtakes the chunks still queued.

Self-contained on purpose: the real worker layer will replace it.
"""

from __future__ import annotations

import asyncio
import time

from natsbus.bus import AsyncQueueBus, BusSubscriber, WorkerBus
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobUpdateMessage,
    BusMessage,
    BusWorkerReadyMessage,
    JobStatus,
)

__all__ = ["main"]

CHUNKS = 5_000
_started = time.perf_counter()


def say(who: str, text: str) -> None:
    """Print one line of the scene, stamped with the milliseconds since the start."""
    print(f"{(time.perf_counter() - _started) * 1e3:8.1f} ms  {who:<9} {text}")


class Actor(BusSubscriber):
    """A named subscriber that ignores messages addressed to someone else.

    The in-process bus gives every subscriber every message; each one looks at the target.
    """

    def __init__(self, name: str, bus: WorkerBus) -> None:
        self._name = name
        self.bus = bus

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.source != self.name and message.target in (None, self.name):
            await self.handle(message)

    async def handle(self, message: BusMessage) -> None:
        """React to a message meant for this actor."""


class Runner(Actor):
    """Hosts the workers: activates them once ready, and collects job results."""

    def __init__(self, bus: WorkerBus) -> None:
        super().__init__("runner", bus)
        self.ready: set[str] = set()
        self.all_ready = asyncio.Event()
        self.job_done = asyncio.Event()

    async def handle(self, message: BusMessage) -> None:
        if isinstance(message, BusWorkerReadyMessage):
            say(self.name, f"hears that {message.source} is ready; activating it")
            self.ready.add(message.source)
            await self.bus.send(
                BusActivateWorkerMessage({"mode": "demo"}, source=self.name, target=message.source)
            )
            if self.ready >= {"counter", "listener"}:
                self.all_ready.set()
        elif isinstance(message, BusJobUpdateMessage):
            say(self.name, f"got an update on {message.job_id}: {message.update}")
        elif isinstance(message, BusJobResponseMessage):
            say(self.name, f"got the response to {message.job_id}: {message.response}")
            self.job_done.set()


class Worker(Actor):
    """Announces itself, waits to be activated, then does what it is asked."""

    def __init__(self, name: str, bus: WorkerBus) -> None:
        super().__init__(name, bus)
        self.active = False

    async def announce(self) -> None:
        say(self.name, "is ready (broadcast)")
        await self.bus.send(BusWorkerReadyMessage("runner", source=self.name))

    async def handle(self, message: BusMessage) -> None:
        if isinstance(message, BusActivateWorkerMessage):
            self.active = True
            say(self.name, f"is active, args={message.args}")


class Counter(Worker):
    """Counts the words of a text, reporting progress as it goes."""

    async def handle(self, message: BusMessage) -> None:
        await super().handle(message)
        if isinstance(message, BusJobRequestMessage) and self.active:
            text = (message.payload or {}).get("text", "")
            say(self.name, f"starts {message.job_id} ({message.job_name}) on {text!r}")
            words = text.split()
            for done in (len(words) // 2, len(words)):
                await asyncio.sleep(0.1)  # pretend this is hard work
                await self.reply(message, BusJobUpdateMessage, {"words_so_far": done})
            await self.bus.send(
                BusJobResponseMessage(
                    message.job_id,
                    JobStatus.COMPLETED,
                    {"words": len(words)},
                    source=self.name,
                    target=message.source,
                )
            )

    async def reply(
        self, request: BusJobRequestMessage, kind: type[BusJobUpdateMessage], update: dict[str, int]
    ) -> None:
        await self.bus.send(kind(request.job_id, update, source=self.name, target=request.source))


class Listener(Worker):
    """Consumes a stream of chunks, and stops at once when the job is cancelled."""

    def __init__(self, name: str, bus: WorkerBus) -> None:
        super().__init__(name, bus)
        self.chunks = 0
        self.dropped = 0
        self.cancelled_at: int | None = None
        self.stream_over = asyncio.Event()

    async def handle(self, message: BusMessage) -> None:
        await super().handle(message)
        if isinstance(message, BusJobStreamDataMessage):
            if self.cancelled_at is None:
                self.chunks += 1
            else:
                self.dropped += 1  # the job is cancelled: skip the rest of its stream
        elif isinstance(message, BusJobCancelMessage):
            self.cancelled_at = self.chunks
            say(
                self.name,
                f"got the cancel for {message.job_id} after {self.chunks:,} of {CHUNKS:,} chunks",
            )
        elif isinstance(message, BusJobStreamEndMessage):
            # Data messages are FIFO, so the end marker comes after every chunk.
            self.stream_over.set()


async def main() -> None:
    """Play the scene."""
    print("natsbus demo: a runner and two workers on one in-process AsyncQueueBus")
    print("(each line: time since start, who, what happened)\n")
    async with AsyncQueueBus(name="demo") as bus:
        runner = Runner(bus)
        counter = Counter("counter", bus)
        listener = Listener("listener", bus)
        for actor in (runner, counter, listener):
            await bus.subscribe(actor)

        print("-- 1. lifecycle: ready -> activate")
        await counter.announce()
        await listener.announce()
        await asyncio.wait_for(runner.all_ready.wait(), 5)
        await asyncio.sleep(0.05)  # let the activations print before the next act

        print("\n-- 2. a job: request -> updates -> response")
        say(runner.name, "asks counter to count words (job-1)")
        await bus.send(
            BusJobRequestMessage(
                "job-1",
                "count_words",
                {"text": "the quick brown fox jumps over the lazy dog"},
                source=runner.name,
                target=counter.name,
            )
        )
        await asyncio.wait_for(runner.job_done.wait(), 5)

        print(f"\n-- 3. priority: {CHUNKS:,} stream chunks, then a cancel")
        say(runner.name, f"queues {CHUNKS:,} chunks of job-2 for listener, then cancels job-2")
        for seq in range(CHUNKS):
            await bus.send(
                BusJobStreamDataMessage(
                    "job-2", {"seq": seq}, source=runner.name, target=listener.name
                )
            )
        await bus.send(
            BusJobCancelMessage("job-2", "changed my mind", source=runner.name, target="listener")
        )
        say(runner.name, "has sent them all, and the cancel last")
        await bus.send(BusJobStreamEndMessage("job-2", source=runner.name, target=listener.name))
        await asyncio.wait_for(listener.stream_over.wait(), 5)
        say(
            listener.name,
            f"skipped the {listener.dropped:,} chunks that were still queued behind the cancel",
        )
        print(
            f"\nThe cancel was sent after all {CHUNKS:,} chunks, yet handled at position "
            f"{listener.cancelled_at}:\nevery subscriber has a lane of its own for system "
            "messages, so they overtake queued data."
        )
    print("bus stopped.")


if __name__ == "__main__":
    asyncio.run(main())
