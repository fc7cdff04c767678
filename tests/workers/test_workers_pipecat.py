"""The worker layer behaves as pipecat's does: spelling, event handlers, open jobs, job groups.

Each test names the pipecat behaviour it pins; where natsbus keeps its own, the test says so.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

import pytest

from natsbus import (
    AsyncQueueBus,
    BaseWorker,
    BusActivateWorkerMessage,
    BusAddWorkerMessage,
    BusCancelWorkerMessage,
    BusDeactivateWorkerMessage,
    BusEndWorkerMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobStreamEndMessage,
    BusMessage,
    BusState,
    JobError,
    JobEvent,
    JobGroup,
    JobGroupError,
    JobGroupEvent,
    JobParams,
    JobStatus,
    PipelineRunner,
    TaskManager,
    WorkerReadyData,
    WorkerRegistry,
    WorkerRunner,
    job,
)

from helpers.recorders import Inbox
from helpers.workers import running, within


async def attached(*workers: BaseWorker, bus: AsyncQueueBus | None = None) -> AsyncQueueBus:
    """Attach workers to a started bus and registry without running them (as pipecat's tests do)."""
    bus = bus or AsyncQueueBus()
    await bus.setup(TaskManager())
    await bus.start()
    registry = WorkerRegistry(runner_name="test-runner")
    runner = WorkerRunner(bus=bus, handle_sigint=False, handle_sigterm=False)
    for worker in workers:
        await worker.attach(registry=registry, bus=bus, worker_runner=runner)
        await worker.setup(bus.task_manager)
        await registry.register(WorkerReadyData(worker_name=worker.name, runner="test-runner"))
    return bus


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll a condition that no event signals (the state of another object)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)


class Answering(BaseWorker):
    """Answers from outside its on_job_request, as a pipecat worker may."""

    def __init__(self, name: str, response: dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.response = response or {}
        self.later: list[asyncio.Task[None]] = []

    async def on_job_request(self, message: BusJobRequestMessage) -> None:
        self.later.append(asyncio.create_task(self._answer_later(message.job_id)))

    async def _answer_later(self, job_id: str) -> None:
        await asyncio.sleep(0.01)
        await self.send_job_update(job_id, {"progress": 1})
        await self.send_job_response(job_id, self.response)


class Swallower(BaseWorker):
    """A handler that swallows its CancelledError and returns normally."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.started = asyncio.Event()
        self.swallowed = False

    async def on_job_request(self, message: BusJobRequestMessage) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed = True


# --- spelling -----------------------------------------------------------------------------


async def test_pipecat_spellings_reach_the_same_objects() -> None:
    bus = AsyncQueueBus()
    manager = TaskManager()
    await bus.setup(manager)
    assert bus.task_manager is manager
    runner = WorkerRunner(bus=bus, handle_sigint=False)
    worker = BaseWorker("w")
    with pytest.raises(RuntimeError):
        _ = worker.worker_runner
    await runner.add_workers(worker)
    assert worker.worker_runner is runner and worker.runner is runner
    assert worker.active_jobs == {} and worker.job_groups == {}
    assert JobGroupEvent is JobEvent and JobEvent.UPDATE == "update"
    event = JobEvent(JobEvent.STREAM_DATA, "w", {"x": 1})
    assert (event.type, event.worker_name) == (event.kind, event.worker) == ("stream_data", "w")


async def test_deprecated_spellings_warn_and_work() -> None:
    worker = BaseWorker("w")
    with pytest.warns(DeprecationWarning, match="task="):
        message = BusAddWorkerMessage(source="parent", task=worker)
    assert message.worker is worker
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = PipelineRunner(handle_sigint=False)
    assert isinstance(runner, WorkerRunner)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


# --- event handlers -----------------------------------------------------------------------


async def test_event_handlers_run_after_the_hook_with_pipecat_arguments() -> None:
    order: list[Any] = []

    class Hooked(BaseWorker):
        async def on_activated(self, args: Any) -> None:
            order.append(("hook", args))

    worker = Hooked("hooked")

    @worker.event_handler("on_activated")
    async def activated(w: BaseWorker, args: Any) -> None:
        order.append(("event", w, args))

    deactivated = asyncio.Event()
    worker.add_event_handler("on_deactivated", lambda w: deactivated.set())
    ready: list[Any] = []

    async with running(worker) as runner:

        @runner.event_handler("on_ready")
        async def never(r: WorkerRunner) -> None:  # added after start: not called
            ready.append(r)

        await until(lambda: len(order) == 2)
        assert order == [("hook", None), ("event", worker, None)]
        await worker.deactivate_worker("hooked")
        await within(deactivated.wait())
    assert ready == []


async def test_runner_on_ready_fires_once_started() -> None:
    runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
    await runner.add_workers(BaseWorker("idle"))
    seen: list[WorkerRunner] = []

    @runner.event_handler("on_ready")
    async def on_ready(r: WorkerRunner) -> None:
        seen.append(r)
        await r.end("done")

    await within(runner.run())
    assert seen == [runner]


async def test_an_unknown_event_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    worker = BaseWorker("w")
    with caplog.at_level(logging.WARNING):
        worker.add_event_handler("on_no_such_thing", lambda w: None)
    assert "on_no_such_thing" in caplog.text


async def test_a_failing_event_handler_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = BaseWorker("w")
    seen: list[str] = []

    def broken(w: BaseWorker, message: Any) -> None:
        raise RuntimeError("handler bug")

    worker.add_event_handler("on_job_request", broken)
    worker.add_event_handler("on_job_request", lambda w, m: seen.append(m.job_id))
    await attached(worker)
    await worker.on_bus_message(BusJobRequestMessage("j1", source="p", target="w"))
    await until(lambda: seen == ["j1"])
    assert "handler bug" in caplog.text


# --- activity -----------------------------------------------------------------------------


async def test_an_active_worker_runs_jobs_before_any_runner_starts_it() -> None:
    class Echo(BaseWorker):
        @job(name="echo")
        async def echo(self, message: BusJobRequestMessage) -> dict[str, Any]:
            return {"echo": message.payload}

    requester, echo = BaseWorker("requester"), Echo("echo")
    assert echo.active and echo.started_at is None
    await attached(requester, echo)
    async with requester.job("echo", name="echo", payload={"a": 1}) as handle:
        pass
    assert handle.response == {"echo": {"a": 1}}


async def test_active_keeps_its_value_when_the_worker_ends() -> None:
    worker = BaseWorker("w")
    async with running(worker):
        assert worker.active
    await within(worker.wait())
    assert worker.active


async def test_deactivate_self_flips_at_once_and_tells_the_bus_before_the_activation() -> None:
    sink = Inbox("sink")
    worker = BaseWorker("a")
    bus = await attached(worker)
    await bus.subscribe(sink)
    sent: list[tuple[str, bool]] = []
    original = worker.send_bus_message

    async def record(message: BusMessage) -> None:
        sent.append((type(message).__name__, worker.active))
        await original(message)

    worker.send_bus_message = record  # type: ignore[method-assign]
    await worker.activate_worker("b", args={"k": 1}, deactivate_self=True)
    assert not worker.active
    assert sent == [("BusDeactivateWorkerMessage", False), ("BusActivateWorkerMessage", False)]
    await until(lambda: len(sink.received) == 2)
    deactivate, activate = sink.received
    assert isinstance(deactivate, BusDeactivateWorkerMessage) and deactivate.target == "a"
    assert isinstance(activate, BusActivateWorkerMessage) and activate.args == {"k": 1}


# --- open jobs ----------------------------------------------------------------------------


async def test_a_worker_without_a_handler_keeps_the_job_open_until_it_answers() -> None:
    sink = Inbox("sink")
    worker = BaseWorker("w")
    bus = await attached(worker)
    await bus.subscribe(sink)
    await worker.on_bus_message(BusJobRequestMessage("j1", source="p", target="w"))
    await asyncio.sleep(0.01)
    assert "j1" in worker.active_jobs and sink.of_type(BusJobResponseMessage) == []
    await worker.send_job_response("j1", {"late": True})
    assert "j1" not in worker.active_jobs
    await until(lambda: bool(sink.of_type(BusJobResponseMessage)))
    [answer] = sink.of_type(BusJobResponseMessage)
    assert (answer.status, answer.response, answer.target) == (
        JobStatus.COMPLETED,
        {"late": True},
        "p",
    )
    with pytest.raises(RuntimeError, match="no active job"):
        await worker.send_job_response("j1")


async def test_a_job_answered_from_another_task_reaches_the_requester() -> None:
    requester, answering = BaseWorker("requester"), Answering("answering", {"ok": 1})
    await attached(requester, answering)
    async with requester.job("answering") as handle:
        events = [event async for event in handle]
    assert [(e.type, e.data) for e in events] == [(JobEvent.UPDATE, {"progress": 1})]
    assert handle.response == {"ok": 1}


async def test_the_end_of_a_stream_answers_the_job() -> None:
    class Streamer(BaseWorker):
        @job(name="stream")
        async def stream(self, message: BusJobRequestMessage) -> None:
            await self.send_job_stream_start(message.job_id, {"type": "text"})
            await self.send_job_stream_data(message.job_id, {"text": "hi"})
            await self.send_job_stream_end(message.job_id, {"final": True})

    sink, requester, streamer = Inbox("sink"), BaseWorker("requester"), Streamer("streamer")
    bus = await attached(requester, streamer)
    await bus.subscribe(sink)
    completed: list[Any] = []
    requester.add_event_handler("on_job_completed", lambda w, result: completed.append(result))
    async with requester.job("streamer", name="stream") as handle:
        types = [event.type async for event in handle]
    assert types == [JobEvent.STREAM_START, JobEvent.STREAM_DATA, JobEvent.STREAM_END]
    assert handle.response == {"final": True} and handle.status is JobStatus.COMPLETED
    await until(lambda: bool(completed))
    assert completed[0].responses == {"streamer": {"final": True}}
    assert sink.of_type(BusJobResponseMessage) == []  # the stream end was the only answer
    assert len(sink.of_type(BusJobStreamEndMessage)) == 1


async def test_a_cancel_answers_cancelled_even_when_the_handler_swallows_it() -> None:
    sink, requester, worker = Inbox("sink"), BaseWorker("requester"), Swallower("swallower")
    bus = await attached(requester, worker)
    await bus.subscribe(sink)
    cancelled: list[Any] = []
    worker.add_event_handler("on_job_cancelled", lambda w, m: cancelled.append(m.reason))
    job_id = await requester.request_job("swallower")
    await within(worker.started.wait())
    await requester.cancel_job_group(job_id, reason="no longer needed")
    await until(lambda: bool(sink.of_type(BusJobResponseMessage)))
    [answer] = sink.of_type(BusJobResponseMessage)
    assert worker.swallowed and answer.status is JobStatus.CANCELLED
    await until(lambda: cancelled == ["no longer needed"])
    assert worker.active_jobs == {}


async def test_a_cancel_of_an_open_job_whose_handler_returned_answers_once() -> None:
    sink, worker = Inbox("sink"), BaseWorker("w")
    bus = await attached(worker)
    await bus.subscribe(sink)
    await worker.on_bus_message(BusJobRequestMessage("j1", source="p", target="w"))
    await worker.on_bus_message(BusJobCancelMessage("j1", "stop", source="p", target="w"))
    await asyncio.sleep(0.05)
    await worker.on_bus_message(BusJobCancelMessage("j1", "again", source="p", target="w"))
    await asyncio.sleep(0.05)
    answers = sink.of_type(BusJobResponseMessage)
    assert [a.status for a in answers] == [JobStatus.CANCELLED]
    assert worker.active_jobs == {}


async def test_a_worker_of_job_handlers_answers_an_unclaimed_name_at_once() -> None:
    # natsbus's own: a misspelt job name is an error the requester hears about, not a job
    # left open for ever (a worker without @job handlers keeps it open, as in pipecat).
    class Named(BaseWorker):
        @job(name="known")
        async def known(self, message: BusJobRequestMessage) -> None:
            return None

    requester = BaseWorker("requester")
    await attached(requester, Named("named"))
    with pytest.raises(JobError, match="no handler"):
        async with requester.job("named", name="unknown"):
            pass


# --- job groups ---------------------------------------------------------------------------


async def test_request_cancel_honours_cancellable_and_the_requester_overrides_it() -> None:
    parent = BaseWorker("parent")
    await attached(parent)
    parent.job_groups["j1"] = JobGroup(job_id="j1", worker_names=["w1"], cancellable=True)
    parent.job_groups["j2"] = JobGroup(job_id="j2", worker_names=["w1"], cancellable=False)
    assert await parent.request_cancel_job_group("j1", reason="user")
    assert not await parent.request_cancel_job_group("j2", reason="user")
    assert not await parent.request_cancel_job_group("unknown")
    assert list(parent.job_groups) == ["j2"]
    await parent.cancel_job_group("j2", reason="shutdown")
    assert parent.job_groups == {}


async def test_a_cancellable_flag_set_by_params_is_kept_on_the_group() -> None:
    parent = BaseWorker("parent")
    await attached(parent, BaseWorker("slow"))
    job_id = await parent.request_job("slow", params=JobParams(cancellable=False, label="L"))
    group = parent.job_groups[job_id]
    assert (group.cancellable, group.label, group.timeout_task) == (False, "L", None)
    assert not await parent.request_cancel_job_group(job_id)


async def test_group_failures_raise_job_group_error_with_their_reason() -> None:
    parent = BaseWorker("parent")
    await attached(parent, BaseWorker("silent"))
    with pytest.raises(JobGroupError, match="timeout"):
        async with parent.job_group("silent", timeout=0.05):
            pass
    with pytest.raises(JobGroupError, match="not ready"):
        async with parent.job_group("ghost", timeout=0.05):
            pass
    with pytest.raises(JobGroupError, match="manual"):
        async with parent.job_group("silent") as group:
            canceller = asyncio.ensure_future(
                parent.cancel_job_group(group.job_id, reason="manual")
            )
    await canceller
    assert parent.job_groups == {}


async def test_a_failing_block_cancels_with_pipecats_reason() -> None:
    sink, parent = Inbox("sink"), BaseWorker("parent")
    bus = await attached(parent, BaseWorker("silent"))
    await bus.subscribe(sink)

    async def cancelled_block() -> None:
        async with parent.job("silent"):
            raise asyncio.CancelledError

    with pytest.raises(ValueError, match="boom"):
        async with parent.job_group("silent"):
            raise ValueError("boom")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_block())
    reasons = [m.reason for m in sink.of_type(BusJobCancelMessage)]
    assert reasons == ["context exited with error"] * 2
    assert parent.job_groups == {}


async def test_an_error_fires_on_job_error_and_keeps_partial_responses() -> None:
    class Fails(BaseWorker):
        async def on_job_request(self, message: BusJobRequestMessage) -> None:
            await self.send_job_response(message.job_id, {"e": 1}, status=JobStatus.ERROR)

    parent = BaseWorker("parent")
    await attached(parent, Fails("fails"), BaseWorker("silent"))
    errors: list[Any] = []
    parent.add_event_handler("on_job_error", lambda w, m: errors.append(m.source))
    with pytest.raises(JobGroupError) as caught:
        async with parent.job_group("fails", "silent") as group:
            pass
    assert group.responses == {"fails": {"e": 1}}
    assert caught.value.statuses == {"fails": JobStatus.ERROR}
    await until(lambda: errors == ["fails"])


# --- the runner ---------------------------------------------------------------------------


async def test_the_runners_end_and_cancel_go_through_bus_send() -> None:
    for method, cls in (("end", BusEndWorkerMessage), ("cancel", BusCancelWorkerMessage)):
        bus, sink = AsyncQueueBus(), Inbox("sink")
        root, child = BaseWorker("root"), BaseWorker("child")
        async with running(root, bus=bus) as runner:
            await root.add_workers(child)
            await within(runner.registry.wait_ready(["child"]))
            await bus.subscribe(sink)
            await getattr(runner, method)("bye")
            await within(root.wait())
            await within(child.wait())
        targets = [(m.source, m.target) for m in sink.of_type(cls)]
        # The runner tells the root; the root tells its child.
        assert targets[:2] == [(runner.name, "root"), ("root", "child")], method


async def test_a_parents_end_returns_once_its_children_ended() -> None:
    parent, child = BaseWorker("parent"), BaseWorker("child")
    await attached(parent)
    await parent.add_workers(child)
    order: list[str] = []

    async def child_finishes() -> None:
        await asyncio.sleep(0.05)
        order.append("child ended")
        child._finished_event.set()

    async def end_parent() -> None:
        await parent.on_bus_message(BusEndWorkerMessage("bye", source="r", target="parent"))
        order.append("parent returned")

    await within(asyncio.gather(end_parent(), child_finishes()))
    assert order == ["child ended", "parent returned"]


# --- a stopped bus ------------------------------------------------------------------------


async def test_a_stopped_in_process_bus_starts_again_and_counts_what_it_drops() -> None:
    bus, sink = AsyncQueueBus(), Inbox("sink")
    await bus.subscribe(sink)
    await bus.start()
    await bus.stop()
    assert bus.state is BusState.STOPPED
    await bus.send(BusActivateWorkerMessage(source="x"))
    assert bus.statistics().dropped == 1 and sink.received == []
    await bus.start()
    await bus.send(BusActivateWorkerMessage(source="y"))
    await until(lambda: len(sink.received) == 1)
    assert sink.received[0].source == "y"
    await bus.stop()


# --- over NATS: the answers that acknowledge a JetStream job -------------------------------


async def test_over_nats_an_open_job_and_a_stream_end_are_each_answered_once(
    nats_url: str,
) -> None:
    from natsbus import JetStreamOptions, NatsBus

    class Streamer(BaseWorker):
        def __init__(self) -> None:
            super().__init__("streamer")
            self.requests: list[str] = []

        @job(name="stream")
        async def stream(self, message: BusJobRequestMessage) -> None:
            self.requests.append(message.job_id)
            await self.send_job_stream_start(message.job_id)
            await self.send_job_stream_end(message.job_id, {"final": True})

    bus = NatsBus(
        servers=nats_url,
        channel=f"pipecat-{id(nats_url)}",
        jetstream_options=JetStreamOptions(ack_wait=1),
    )
    streamer, answering, requester = Streamer(), Answering("answering", {"ok": 1}), BaseWorker("r")
    async with running(streamer, answering, requester, bus=bus):
        async with requester.job("streamer", name="stream", timeout=10) as streamed:
            pass
        async with requester.job("answering", timeout=10) as answered:
            pass
        assert (streamed.response, answered.response) == ({"final": True}, {"ok": 1})
        # Past the acknowledgement wait: an unacknowledged request would be redelivered now.
        await asyncio.sleep(2.5)
        assert len(streamer.requests) == 1 and len(answering.later) == 1
        stats = await bus.consumer_statistics()
        assert all(s.ack_pending == 0 for s in stats if s.role == "job_requests"), stats


async def test_worker_ready_and_failed_fire_their_events_for_children() -> None:
    class Failing(BaseWorker):
        async def on_activated(self, args: Any) -> None:
            await self.send_bus_error_message("child broke")

    parent = BaseWorker("parent")
    ready: list[str] = []
    failed: list[tuple[str, str]] = []
    parent.add_event_handler("on_worker_ready", lambda w, data: ready.append(data.worker_name))
    parent.add_event_handler(
        "on_worker_failed", lambda w, data: failed.append((data.worker_name, data.error))
    )
    async with running(parent):
        await parent.add_workers(Failing("child"))
        await until(lambda: bool(ready) and bool(failed))
    assert ready == ["child"] and failed == [("child", "child broke")]


async def test_an_event_handler_that_never_returns_cannot_hold_the_worker_for_ever() -> None:
    worker = BaseWorker("w")
    started = asyncio.Event()

    async def forever(w: BaseWorker, args: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    worker.add_event_handler("on_activated", forever)
    async with running(worker):
        await within(started.wait())
    await within(worker.wait(), 10)  # cleanup waited 5 s for the handler, then cancelled it
