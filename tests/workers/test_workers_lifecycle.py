"""Worker lifecycle on the in-process bus: hooks, activation, children, errors, end, cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from natsbus.bus import AsyncQueueBus
from natsbus.messages import (
    BusJobRequestMessage,
    BusWorkerErrorMessage,
    BusWorkerReadyMessage,
    JobStatus,
    Payload,
)
from natsbus.workers import (
    BaseWorker,
    JobError,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRunner,
    WorkerState,
    job,
)

from helpers.workers import Spy, running, within


class Recording(Spy):
    """Records every hook call as ``(hook, data)``."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.calls: list[tuple[str, Any]] = []

    async def _record(self, hook: str, data: Any = None) -> None:
        self.calls.append((hook, data))
        await self.changed.poke()

    def hooks(self, hook: str) -> list[Any]:
        return [data for name, data in self.calls if name == hook]

    async def setup(self) -> None:
        await self._record("setup")

    async def cleanup(self) -> None:
        await self._record("cleanup")

    async def on_activated(self, args: Payload | None) -> None:
        await self._record("on_activated", args)

    async def on_deactivated(self) -> None:
        await self._record("on_deactivated")

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        await self._record("on_worker_ready", data)

    async def on_worker_failed(self, data: WorkerErrorData) -> None:
        await self._record("on_worker_failed", data)

    @job(name="sleep")
    async def sleep(self, message: BusJobRequestMessage) -> Payload:
        await self._record("job_started", message.job_id)
        try:
            await asyncio.sleep((message.payload or {})["seconds"])
        except asyncio.CancelledError:
            await self._record("job_cancelled", message.job_id)
            raise
        await self._record("job_finished", message.job_id)
        return {"slept": True}


async def test_ready_worker_is_activated_and_announced() -> None:
    worker = Recording("w")
    async with running(worker) as runner:
        await worker.changed.until(lambda: bool(worker.hooks("on_activated")))
        assert worker.calls[:2] == [("setup", None), ("on_activated", None)]
        assert worker.active and worker.state is WorkerState.READY
        assert worker.started_at is not None
        (ready,) = worker.of(BusWorkerReadyMessage)
        assert (ready.source, ready.runner, ready.parent, ready.active) == (
            "w",
            runner.name,
            None,
            True,
        )
        assert runner.registry.local_workers == ["w"]


async def test_activation_args_and_deactivation_hooks() -> None:
    a, b = Recording("a"), Recording("b", active=False)
    async with running(a, b):
        assert not b.active and b.hooks("on_activated") == []
        await a.activate_worker("b", args={"mode": "greeting", "n": 1})
        await b.changed.until(lambda: bool(b.hooks("on_activated")))
        assert b.hooks("on_activated") == [{"mode": "greeting", "n": 1}]
        assert b.activation_args == {"mode": "greeting", "n": 1}
        await a.deactivate_worker("b")
        await b.changed.until(lambda: bool(b.hooks("on_deactivated")))
        assert not b.active and b.activation_args is None


async def test_hand_off_with_deactivate_self_never_has_both_active() -> None:
    overlaps: list[str] = []

    class Agent(Recording):
        async def on_activated(self, args: Payload | None) -> None:
            other = agents[1 - agents.index(self)]
            if other.active:
                overlaps.append(f"{self.name} activated while {other.name} active")
            await super().on_activated(args)
            turns = (args or {}).get("turns", 0)
            if turns > 0:
                await self.activate_worker(
                    other.name, args={"turns": turns - 1}, deactivate_self=True
                )

    agents = [Agent("agent-a"), Agent("agent-b", active=False)]
    a, b = agents
    async with running(a, b):
        await a.changed.until(lambda: bool(a.hooks("on_activated")))
        await a.activate_worker("agent-b", args={"turns": 40}, deactivate_self=True)
        await b.changed.until(
            lambda: {"turns": 0} in a.hooks("on_activated") + b.hooks("on_activated")
        )
        assert overlaps == []
        assert len(a.hooks("on_activated")) + len(b.hooks("on_activated")) == 42
        assert a.active != b.active


async def test_inactive_worker_answers_jobs_error() -> None:
    sleeper, client = Recording("sleeper", active=False), Recording("client")
    async with running(sleeper, client):
        with pytest.raises(JobError, match="inactive") as caught:
            async with client.job("sleeper", name="sleep", payload={"seconds": 0}):
                pass
        assert caught.value.status is JobStatus.ERROR


async def test_children_are_hosted_watched_and_ended_with_their_parent() -> None:
    class Parent(Recording):
        async def on_activated(self, args: Payload | None) -> None:
            await super().on_activated(args)
            await self.add_workers(child)

    parent, child = Parent("parent"), Recording("child")
    runner = WorkerRunner(bus=AsyncQueueBus(), handle_signals=False, grace_period=1)
    await runner.add_workers(parent)
    run = asyncio.create_task(runner.run())
    await parent.changed.until(lambda: bool(parent.hooks("on_worker_ready")))
    (ready,) = parent.hooks("on_worker_ready")
    assert (ready.worker_name, ready.parent, ready.runner, ready.local) == (
        "child",
        "parent",
        runner.name,
        True,
    )
    assert child.parent == "parent" and parent.children == [child]
    assert runner.get_worker("child") is child
    await child.end("done")  # a BusEndMessage: the runner ends the parent, the parent the child
    await within(run)
    assert child.state is WorkerState.ENDED and parent.state is WorkerState.ENDED
    assert ("cleanup", None) in child.calls and ("cleanup", None) in parent.calls
    assert child.calls.index(("cleanup", None)) >= 0


async def test_cancel_propagates_to_children_and_cancels_their_jobs() -> None:
    parent, child, client = Recording("parent"), Recording("child"), Recording("client")
    runner = WorkerRunner(bus=AsyncQueueBus(), handle_signals=False, grace_period=30)
    await runner.add_workers(parent, client)
    run = asyncio.create_task(runner.run())
    await within(runner.registry.wait_ready(["parent", "client"]))
    await parent.add_workers(child)
    await within(runner.registry.wait_ready(["child"]))
    job_id = await client.request_job("child", name="sleep", payload={"seconds": 3600})
    await child.changed.until(lambda: bool(child.hooks("job_started")))
    await client.cancel("stop everything")
    await within(run)
    assert child.hooks("job_cancelled") == [job_id]
    assert child.state is WorkerState.ENDED


async def test_graceful_end_lets_running_jobs_finish() -> None:
    worker, client = Recording("worker"), Recording("client")
    runner = WorkerRunner(bus=AsyncQueueBus(), handle_signals=False, grace_period=5)
    await runner.add_workers(worker, client)
    run = asyncio.create_task(runner.run())
    await within(runner.registry.wait_ready(["worker", "client"]))
    answers: list[JobStatus | None] = []

    async def ask() -> None:
        async with client.job("worker", name="sleep", payload={"seconds": 0.3}) as j:
            pass
        answers.append(j.status)

    asking = asyncio.create_task(ask())
    await worker.changed.until(lambda: bool(worker.hooks("job_started")))
    await runner.end("maintenance")
    # New requests are refused at once while the running one finishes.
    with pytest.raises(JobError, match="ending"):
        async with client.job("worker", name="sleep", payload={"seconds": 0}):
            pass
    await within(asking)
    await within(run)
    assert answers == [JobStatus.COMPLETED]
    assert len(worker.hooks("job_finished")) == 1


async def test_grace_period_expiry_cancels_the_job() -> None:
    worker, client = Recording("worker"), Recording("client")
    runner = WorkerRunner(bus=AsyncQueueBus(), handle_signals=False, grace_period=0.1)
    await runner.add_workers(worker, client)
    run = asyncio.create_task(runner.run())
    await within(runner.registry.wait_ready(["worker", "client"]))
    await client.request_job("worker", name="sleep", payload={"seconds": 3600})
    await worker.changed.until(lambda: bool(worker.hooks("job_started")))
    await runner.end()
    await within(run)
    assert len(worker.hooks("job_cancelled")) == 1


async def test_child_error_reaches_the_parent_only() -> None:
    parent, child, bystander = Recording("parent"), Recording("child"), Recording("bystander")
    async with running(parent, bystander):
        await parent.add_workers(child)
        await parent.changed.until(lambda: bool(parent.hooks("on_worker_ready")))
        await child.send_bus_error_message("disk full")
        await parent.changed.until(lambda: bool(parent.hooks("on_worker_failed")))
        assert parent.hooks("on_worker_failed") == [WorkerErrorData("child", "disk full")]
        assert bystander.hooks("on_worker_failed") == []


async def test_root_error_is_broadcast_to_watchers() -> None:
    failing, watcher, other = Recording("failing"), Recording("watcher"), Recording("other")
    async with running(failing, watcher, other):
        await watcher.watch_workers("failing")
        await failing.send_bus_error_message("lost connection")
        await watcher.changed.until(lambda: bool(watcher.hooks("on_worker_failed")))
        assert watcher.hooks("on_worker_failed") == [WorkerErrorData("failing", "lost connection")]
        (message,) = other.of(BusWorkerErrorMessage)
        assert message.error == "lost connection"
        assert other.hooks("on_worker_failed") == []


async def test_failed_setup_ends_the_worker_and_reports_it() -> None:
    class Broken(Recording):
        async def setup(self) -> None:
            raise OSError("no model file")

    broken, watcher = Broken("broken"), Recording("watcher")
    runner = WorkerRunner(bus=AsyncQueueBus(), handle_signals=False)
    await watcher_first(runner, watcher)
    await runner.add_workers(broken)
    await watcher.changed.until(lambda: bool(watcher.of(BusWorkerErrorMessage)))
    (error,) = watcher.of(BusWorkerErrorMessage)
    assert error.source == "broken" and "no model file" in error.error
    await within(broken.wait())
    assert "broken" not in runner.registry
    await runner.cancel()


async def watcher_first(runner: WorkerRunner, watcher: BaseWorker) -> None:
    await runner.add_workers(watcher)
    asyncio.get_running_loop().create_task(runner.run())
    await within(runner.registry.wait_ready([watcher.name]))


async def test_run_returns_when_every_worker_has_ended() -> None:
    a, b = Recording("a"), Recording("b")
    runner = WorkerRunner(bus=AsyncQueueBus(), handle_signals=False)
    await runner.add_workers(a, b)
    run = asyncio.create_task(runner.run())
    await within(runner.registry.wait_ready(["a", "b"]))
    await a.end()
    await within(run)
    assert runner.bus.state.value == "stopped"  # the runner started its bus, so it stops it


async def test_worker_misuse_is_reported() -> None:
    worker = Recording("w")
    with pytest.raises(RuntimeError, match="no bus"):
        _ = worker.bus
    with pytest.raises(ValueError, match="non-empty"):
        Recording("")
    runner = WorkerRunner(handle_signals=False)
    await runner.add_workers(worker)
    # As in pipecat: a duplicate name, or a worker attached already, is logged and skipped.
    duplicate = Recording("w")
    await runner.add_workers(duplicate)
    assert runner.get_worker("w") is worker and duplicate._registry is None
    # Not started yet: it may move to another runner (as in pipecat), leaving the first.
    other = WorkerRunner(handle_signals=False)
    await other.add_workers(worker)
    assert worker.worker_runner is other and runner.get_worker("w") is None
    async with running(Recording("started")) as third:
        started = third.get_worker("started")
        assert started is not None
        await other.add_workers(started)  # started: logged and skipped
        assert started.worker_runner is third and other.get_worker("started") is None


def test_default_names_are_kebab_case_class_names() -> None:
    class TranslatorWorker(BaseWorker):
        pass

    class Named(BaseWorker):
        default_name = "custom"

    assert TranslatorWorker().name == "translator-worker"
    assert Named().name == "custom"
