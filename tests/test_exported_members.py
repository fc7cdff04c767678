"""The public surface of ``natsbus`` is pinned: a change to it is a deliberate change here."""

from __future__ import annotations

import dataclasses
import inspect

import natsbus

# Every class of the reference worker-bus API.
REFERENCE_NAMES = {
    "AsyncQueueBus",
    "BusBridgeProcessor",
    "BusFrameMessage",
    "BusActivateWorkerMessage",
    "BusAddWorkerMessage",
    "BusCancelMessage",
    "BusCancelWorkerMessage",
    "BusDataMessage",
    "BusDeactivateWorkerMessage",
    "BusEndMessage",
    "BusEndWorkerMessage",
    "BusJobCancelMessage",
    "BusJobRequestMessage",
    "BusJobResponseMessage",
    "BusJobResponseUrgentMessage",
    "BusJobStreamDataMessage",
    "BusJobStreamEndMessage",
    "BusJobStreamStartMessage",
    "BusJobUpdateMessage",
    "BusJobUpdateRequestMessage",
    "BusJobUpdateUrgentMessage",
    "BusLocalMessage",
    "BusMessage",
    "BusSubscriber",
    "BusSystemMessage",
    "BusTTSSpeakMessage",
    "BusWorkerErrorMessage",
    "BusWorkerLocalErrorMessage",
    "BusWorkerReadyMessage",
    "BusWorkerRegistryMessage",
    "JobStatus",
    "WorkerBus",
    "WorkerRegistryEntry",
}

EXPECTED_ALL = [
    "AsyncQueueBus",
    "BaseWorker",
    "BusActivateWorkerMessage",
    "BusAddWorkerMessage",
    "BusBridgeProcessor",
    "BusCancelMessage",
    "BusCancelWorkerLocalMessage",
    "BusCancelWorkerMessage",
    "BusClient",
    "BusClosedError",
    "BusDataMessage",
    "BusDeactivateWorkerMessage",
    "BusEndMessage",
    "BusEndWorkerLocalMessage",
    "BusEndWorkerMessage",
    "BusFrameMessage",
    "BusJobCancelMessage",
    "BusJobRequestMessage",
    "BusJobResponseMessage",
    "BusJobResponseUrgentMessage",
    "BusJobStreamDataMessage",
    "BusJobStreamEndMessage",
    "BusJobStreamStartMessage",
    "BusJobUpdateMessage",
    "BusJobUpdateRequestMessage",
    "BusJobUpdateUrgentMessage",
    "BusLocalMessage",
    "BusMessage",
    "BusPermissionError",
    "BusRole",
    "BusState",
    "BusStatistics",
    "BusSubscriber",
    "BusSystemMessage",
    "BusTTSSpeakMessage",
    "BusUnavailableError",
    "BusWorkerErrorMessage",
    "BusWorkerLocalErrorMessage",
    "BusWorkerReadyMessage",
    "BusWorkerRegistryMessage",
    "Codec",
    "CodecError",
    "DecodeError",
    "DispatchObserver",
    "DispatcherStatistics",
    "EncodeError",
    "JetStreamOptions",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobEventKind",
    "JobGroup",
    "JobGroupContext",
    "JobGroupError",
    "JobGroupEvent",
    "JobGroupHandle",
    "JobGroupParams",
    "JobGroupResponse",
    "JobGroupResult",
    "JobGroupTimeoutError",
    "JobHandle",
    "JobParams",
    "JobStatus",
    "JobTimeoutError",
    "Lane",
    "LaneStatistics",
    "LocalOnlyMessageError",
    "MalformedMessageError",
    "MessageTooLargeError",
    "NatsBus",
    "NatsBusError",
    "NatsConnectOptions",
    "NatsConnections",
    "NetworkStatistics",
    "NoOpDispatchObserver",
    "Payload",
    "PayloadTooDeepError",
    "PermissionSet",
    "PipelineRunner",
    "QueueLimits",
    "RegistrationError",
    "TaskManager",
    "UnknownMessageTypeError",
    "UnsupportedValueError",
    "WorkerActivationArgs",
    "WorkerBus",
    "WorkerErrorData",
    "WorkerNotFoundError",
    "WorkerReadyData",
    "WorkerRegistry",
    "WorkerRegistryEntry",
    "WorkerRunner",
    "connect",
    "decode",
    "encode",
    "job",
    "permissions",
    "register_frame_type",
    "register_message_type",
]


def test_all_is_pinned() -> None:
    assert natsbus.__all__ == EXPECTED_ALL


def test_every_exported_name_exists() -> None:
    missing = [name for name in natsbus.__all__ if not hasattr(natsbus, name)]
    assert missing == []


def test_every_reference_name_is_exported() -> None:
    assert REFERENCE_NAMES - set(natsbus.__all__) == set()


def test_message_signatures_match_the_reference() -> None:
    # Positional fields first, then keyword-only source and target, as in the reference.
    signature = inspect.signature(natsbus.BusJobRequestMessage)
    assert str(signature) == (
        "(job_id: 'str', job_name: 'str | None' = None, payload: 'Payload | None' = None, "
        "*, source: 'str', target: 'str | None' = None) -> None"
    )
    registry = [f.name for f in dataclasses.fields(natsbus.WorkerRegistryEntry)]
    assert registry == ["name", "parent", "active", "bridged", "started_at"]
    for name in REFERENCE_NAMES:
        cls = getattr(natsbus, name)
        if isinstance(cls, type) and issubclass(cls, natsbus.BusMessage):
            parameters = inspect.signature(cls).parameters
            assert parameters["source"].kind is inspect.Parameter.KEYWORD_ONLY, name
            assert parameters["target"].default is None, name


def test_priorities_and_locality_follow_the_reference() -> None:
    system = {
        "BusCancelMessage",
        "BusCancelWorkerMessage",
        "BusAddWorkerMessage",
        "BusWorkerErrorMessage",
        "BusWorkerLocalErrorMessage",
        "BusWorkerRegistryMessage",
        "BusJobResponseUrgentMessage",
        "BusJobUpdateUrgentMessage",
        "BusJobCancelMessage",
    }
    local = {"BusAddWorkerMessage", "BusWorkerLocalErrorMessage"}
    for name in REFERENCE_NAMES:
        cls = getattr(natsbus, name)
        if not (isinstance(cls, type) and issubclass(cls, natsbus.BusMessage)):
            continue
        if cls in (natsbus.BusMessage, natsbus.BusDataMessage, natsbus.BusSystemMessage):
            continue
        assert issubclass(cls, natsbus.BusSystemMessage) == (name in system), name
        assert issubclass(cls, natsbus.BusDataMessage) == (name not in system), name
        assert issubclass(cls, natsbus.BusLocalMessage) == (name in local), name


# BaseWorker is subclassed by users: everything public on it is API (pipecat's and natsbus's);
# its collaborators (executor, tracker, lifecycle) are private, so a subclass cannot clobber
# them by accident.
EXPECTED_BASEWORKER = [
    "activate_worker",
    "activation_args",
    "active",
    "active_jobs",
    "add_event_handler",
    "add_workers",
    "attach",
    "bridged",
    "bus",
    "bus_job_targets",
    "bus_taking_jobs",
    "bus_targets",
    "cancel",
    "cancel_job",
    "cancel_job_group",
    "cancel_task",
    "children",
    "cleanup",
    "create_job_group_and_request_job",
    "create_task",
    "deactivate_worker",
    "default_name",
    "end",
    "event_handler",
    "event_names",
    "job",
    "job_group",
    "job_groups",
    "name",
    "on_activated",
    "on_bus_message",
    "on_deactivated",
    "on_job_cancelled",
    "on_job_completed",
    "on_job_error",
    "on_job_request",
    "on_job_response",
    "on_job_stream_data",
    "on_job_stream_end",
    "on_job_stream_start",
    "on_job_update",
    "on_job_update_requested",
    "on_worker_failed",
    "on_worker_ready",
    "parent",
    "registry",
    "remove_event_handler",
    "request_cancel_job_group",
    "request_job",
    "request_job_group",
    "request_job_update",
    "runner",
    "running_jobs",
    "runs_jobs",
    "send_bus_error_message",
    "send_bus_message",
    "send_job_response",
    "send_job_stream_data",
    "send_job_stream_end",
    "send_job_stream_start",
    "send_job_update",
    "setup",
    "spawn",
    "started_at",
    "state",
    "task_manager",
    "wait",
    "watch_workers",
    "worker_runner",
]


def test_base_worker_public_names_are_pinned() -> None:
    names = sorted(n for n in dir(natsbus.BaseWorker) if not n.startswith("_"))
    assert names == EXPECTED_BASEWORKER


async def test_a_subclass_attribute_named_like_an_old_internal_breaks_nothing() -> None:
    from concurrent.futures import ThreadPoolExecutor

    class Mine(natsbus.BaseWorker):
        def __init__(self) -> None:
            super().__init__("mine")
            self.executor = ThreadPoolExecutor(max_workers=1)
            self.tracker = "my tracker"
            self.lifecycle = "my lifecycle"

        @natsbus.job(name="echo")
        async def echo(self, message: natsbus.BusJobRequestMessage) -> dict[str, object]:
            return {"echo": message.payload}

    mine, asker = Mine(), natsbus.BaseWorker("asker")
    runner = natsbus.WorkerRunner(handle_sigint=False, handle_sigterm=False)
    await runner.add_workers(mine, asker)

    @runner.event_handler("on_ready")
    async def ask(r: natsbus.WorkerRunner) -> None:
        async with asker.job("mine", name="echo", payload={"x": 1}) as handle:
            pass
        answers.append(handle.response)
        await r.end("done")

    answers: list[object] = []
    await runner.run()
    mine.executor.shutdown()
    assert answers == [{"echo": {"x": 1}}]
