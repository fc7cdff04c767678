"""natsbus: a message bus for fleets of Python workers, in one process or across pods over NATS.

Everything a user imports is re-exported here; modules whose names start with ``_`` are
private.

- The bus: :class:`WorkerBus`, :class:`AsyncQueueBus` (in-process) and :class:`NatsBus`
  (NATS and JetStream).
- The workers: :class:`BaseWorker`, :func:`job`, and the :class:`WorkerRunner` that hosts them.
- A client, for scripts and web handlers: :func:`connect` (a :class:`BusClient` on NATS).
- Least privilege: :func:`permissions` (what ``natsbus permissions`` prints).
- The messages: the ``Bus*`` hierarchy, :class:`JobStatus`, :class:`WorkerRegistryEntry`.
- Frames between pipelines: :class:`BusFrameMessage`, :class:`BusBridgeProcessor` (the frames
  themselves and the pipeline model are in :mod:`natsbus.frames` and :mod:`natsbus.pipeline`).
- The wire: :func:`encode`, :func:`decode`, :func:`register_message_type`,
  :func:`register_frame_type`.
- The errors: :class:`NatsBusError` and its subclasses.
"""

import importlib
from typing import TYPE_CHECKING

from natsbus.bus import (
    AsyncQueueBus,
    BusState,
    BusStatistics,
    BusSubscriber,
    DispatcherStatistics,
    DispatchObserver,
    Lane,
    LaneStatistics,
    NetworkStatistics,
    NoOpDispatchObserver,
    QueueLimits,
    WorkerBus,
)
from natsbus.client import BusClient, connect
from natsbus.codec import Codec, decode, encode, register_frame_type, register_message_type
from natsbus.errors import (
    BusClosedError,
    BusPermissionError,
    BusUnavailableError,
    CodecError,
    DecodeError,
    EncodeError,
    LocalOnlyMessageError,
    MalformedMessageError,
    MessageTooLargeError,
    NatsBusError,
    PayloadTooDeepError,
    RegistrationError,
    UnknownMessageTypeError,
    UnsupportedValueError,
)
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusAddWorkerMessage,
    BusCancelMessage,
    BusCancelWorkerLocalMessage,
    BusCancelWorkerMessage,
    BusDataMessage,
    BusDeactivateWorkerMessage,
    BusEndMessage,
    BusEndWorkerLocalMessage,
    BusEndWorkerMessage,
    BusFrameMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    BusTTSSpeakMessage,
    BusWorkerErrorMessage,
    BusWorkerLocalErrorMessage,
    BusWorkerReadyMessage,
    BusWorkerRegistryMessage,
    JobStatus,
    Payload,
    WorkerRegistryEntry,
)
from natsbus.pipeline import BusBridgeProcessor
from natsbus.tasks import TaskManager
from natsbus.workers import (
    BaseWorker,
    JobContext,
    JobError,
    JobEvent,
    JobEventKind,
    JobGroup,
    JobGroupContext,
    JobGroupError,
    JobGroupEvent,
    JobGroupHandle,
    JobGroupParams,
    JobGroupResponse,
    JobGroupResult,
    JobGroupTimeoutError,
    JobHandle,
    JobParams,
    JobTimeoutError,
    PipelineRunner,
    WorkerActivationArgs,
    WorkerErrorData,
    WorkerNotFoundError,
    WorkerReadyData,
    WorkerRegistry,
    WorkerRunner,
    job,
)

__version__ = "0.1.0"

# NatsBus and its options load nats-py: imported on first use, so that `import natsbus` (or a
# module of it) stays cheap for code that runs in process only.
_LAZY: dict[str, str] = {
    "JetStreamOptions": "natsbus.bus.nats",
    "NatsBus": "natsbus.bus.nats",
    "NatsConnectOptions": "natsbus.bus.nats",
    "NatsConnections": "natsbus.bus.nats",
    "BusRole": "natsbus.access",
    "PermissionSet": "natsbus.access",
    "permissions": "natsbus.access",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'natsbus' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from natsbus.access import BusRole, PermissionSet, permissions
    from natsbus.bus.nats import JetStreamOptions, NatsBus, NatsConnections, NatsConnectOptions

__all__ = [
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
