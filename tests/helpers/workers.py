"""Shared pieces of the worker tests: a runner on an in-process bus, waiting, recording workers.

``Spy`` records what reaches it; ``Tool`` has every kind of job handler, ``Client`` asks them
and records job groups and errors, ``Watcher`` records the workers it sees become ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from natsbus.bus import AsyncQueueBus, WorkerBus
from natsbus.messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    JobStatus,
    Payload,
)
from natsbus.workers import BaseWorker, JobGroupResult, WorkerReadyData, WorkerRunner, job

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


class Tool(BaseWorker):
    """Every kind of handler the tests need."""

    def __init__(self, name: str = "tool", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.started: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, asyncio.Event] = {}
        self.hook_cancels: list[str] = []
        self.ran: list[str] = []
        self.concurrent = 0
        self.max_concurrent = 0

    def _event(self, table: dict[str, asyncio.Event], job_id: str) -> asyncio.Event:
        return table.setdefault(job_id, asyncio.Event())

    @job(name="echo")
    async def echo(self, message: BusJobRequestMessage) -> Payload:
        self.ran.append(message.job_id)
        return {"echo": message.payload}

    @job
    async def unnamed(self, message: BusJobRequestMessage) -> Payload:
        return {"unnamed": True}

    @job(name="progress")
    async def progress(self, message: BusJobRequestMessage) -> Payload | None:
        for i in range(3):
            await self.send_job_update(message.job_id, {"progress": i})
        await self.send_job_stream_start(message.job_id, {"type": "text/plain"})
        for chunk in ("a", "b", "c"):
            await self.send_job_stream_data(message.job_id, {"chunk": chunk})
        # The end of the stream answers the job (as in pipecat): nothing is returned.
        await self.send_job_stream_end(message.job_id, {"done": True, "chunks": 3})
        return None

    @job(name="slow")
    async def slow(self, message: BusJobRequestMessage) -> Payload:
        self.ran.append(message.job_id)
        self._event(self.started, message.job_id).set()
        try:
            await asyncio.sleep((message.payload or {}).get("seconds", 3600))
        except asyncio.CancelledError:
            self._event(self.cancelled, message.job_id).set()
            raise
        return {"slept": True}

    @job(name="boom")
    async def boom(self, message: BusJobRequestMessage) -> Payload:
        raise ValueError("kaput")

    @job(name="fail")
    async def fail(self, message: BusJobRequestMessage) -> None:
        await self.send_job_response(message.job_id, {"why": "no stock"}, status=JobStatus.FAILED)

    @job(name="urgent")
    async def urgent(self, message: BusJobRequestMessage) -> None:
        await self.send_job_update(message.job_id, {"hot": True}, urgent=True)
        await self.send_job_response(message.job_id, {"fast": True}, urgent=True)

    @job(name="one-at-a-time", sequential=True)
    async def sequential(self, message: BusJobRequestMessage) -> Payload:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        await asyncio.sleep(0.01)
        self.concurrent -= 1
        return {}

    async def on_job_cancelled(self, message: BusJobCancelMessage) -> None:
        self.hook_cancels.append(message.job_id)

    async def on_job_update_requested(self, message: BusJobUpdateRequestMessage) -> None:
        await self.send_job_update(message.job_id, {"asked": True})


class Client(Spy):
    def __init__(self, name: str = "client") -> None:
        super().__init__(name)
        self.completed: list[JobGroupResult] = []
        self.errors: list[str] = []

    async def on_job_completed(self, result: JobGroupResult) -> None:
        self.completed.append(result)
        await self.changed.poke()

    async def on_job_error(self, message: Any) -> None:
        self.errors.append(message.source)


class Requester(Client):
    """Asks for jobs and runs none (``runs_jobs = False``): what the requester role allows."""

    runs_jobs = False


class Watcher(Spy):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready: list[WorkerReadyData] = []

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        self.ready.append(data)
        await self.changed.poke()


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
