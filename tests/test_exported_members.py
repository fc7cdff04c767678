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
    "NoOpDispatchObserver",
    "Payload",
    "PipelineRunner",
    "RegistrationError",
    "TaskManager",
    "UnknownMessageTypeError",
    "UnsupportedValueError",
    "WorkerActivationArgs",
    "WorkerBus",
    "WorkerErrorData",
    "WorkerReadyData",
    "WorkerRegistry",
    "WorkerRegistryEntry",
    "WorkerRunner",
    "decode",
    "encode",
    "job",
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
