"""Shared pieces of the worker tests: a runner on an in-process bus, and waiting helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from natsbus.bus import AsyncQueueBus, WorkerBus
from natsbus.messages import BusMessage
from natsbus.workers import BaseWorker, WorkerRunner

TIMEOUT = 5.0


async def within(awaitable: Awaitable[Any], timeout: float = TIMEOUT) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


class Condition:
    """Wait until a predicate holds, re-checked whenever ``poke()`` is called."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()

    async def poke(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout)


class Spy(BaseWorker):
    """A worker that records every message addressed to it (or broadcast)."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.seen: list[BusMessage] = []
        self.changed = Condition()

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target in (None, self.name):
            self.seen.append(message)
        await super().on_bus_message(message)
        await self.changed.poke()

    def of(self, cls: type) -> list[Any]:
        return [m for m in self.seen if isinstance(m, cls)]


@contextlib.asynccontextmanager
async def running(
    *workers: BaseWorker,
    bus: WorkerBus | None = None,
    name: str | None = None,
    grace_period: float = 2.0,
) -> AsyncIterator[WorkerRunner]:
    """Run a runner hosting ``workers`` until the block ends (then cancel it)."""
    runner = WorkerRunner(
        bus=bus if bus is not None else AsyncQueueBus(),
        name=name,
        handle_signals=False,
        grace_period=grace_period,
        cancel_timeout=2.0,
    )
    await runner.add_workers(*workers)
    task = asyncio.create_task(runner.run())
    try:
        await within(runner.registry.wait_ready([w.name for w in workers]))
        yield runner
    finally:
        await runner.cancel("test over")
        await within(task)
