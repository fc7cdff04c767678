"""The bus message hierarchy that users construct, send and receive.

Every class mirrors the reference worker-bus API: same name, bases, fields and defaults, with
``source`` and ``target`` keyword-only. Priority is chosen by base class:
:class:`BusSystemMessage` is handled ahead of queued :class:`BusDataMessage`; the
:class:`BusLocalMessage` mixin keeps a message inside its process.

Messages compare equal by value. The envelope metadata that the bus stamps on ``send()``
(``id``, ``sent_at``, ``trace_context``) is not a constructor argument and takes no part in
equality: two messages with the same fields are equal whoever sent them and when.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from natsbus._job_messages import (
    JOB_MESSAGE_TYPES,
    BusJobCancelMessage,
    BusJobMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    is_job_message,
)
from natsbus._message_base import (
    BusDataMessage,
    BusLocalMessage,
    BusMessage,
    BusSystemMessage,
    JobRole,
    JobStatus,
    Lane,
    Payload,
)
from natsbus.frames import Frame, FrameDirection

__all__ = [
    "JOB_MESSAGE_TYPES",
    "BusActivateWorkerMessage",
    "BusAddWorkerMessage",
    "BusCancelMessage",
    "BusCancelWorkerMessage",
    "BusDataMessage",
    "BusDeactivateWorkerMessage",
    "BusEndMessage",
    "BusEndWorkerMessage",
    "BusFrameMessage",
    "BusJobCancelMessage",
    "BusJobMessage",
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
    "BusSystemMessage",
    "BusTTSSpeakMessage",
    "BusWorkerErrorMessage",
    "BusWorkerLocalErrorMessage",
    "BusWorkerReadyMessage",
    "BusWorkerRegistryMessage",
    "JobRole",
    "JobStatus",
    "Lane",
    "Payload",
    "WorkerRegistryEntry",
    "is_job_message",
]

# The message model (lanes, roles, statuses, the three bases) lives in _message_base.py, the
# job messages in _job_messages.py; this module is where every message class is imported from.

# --- Lifecycle -------------------------------------------------------------------------------


@dataclass
class BusActivateWorkerMessage(BusDataMessage):
    """Tells a targeted worker to become active and start processing.

    Attributes:
        args: Optional activation arguments forwarded to ``on_activated``.
    """

    durable: ClassVar[bool] = True

    args: Payload | None = None


@dataclass
class BusDeactivateWorkerMessage(BusDataMessage):
    """Tells a targeted worker to become inactive and stop processing."""

    durable: ClassVar[bool] = True


@dataclass
class BusEndMessage(BusDataMessage):
    """Requests a graceful end of the session; the runner answers with BusEndWorkerMessage.

    Attributes:
        reason: Optional human-readable reason for ending.
    """

    durable: ClassVar[bool] = True

    reason: str | None = None


@dataclass
class BusEndWorkerMessage(BusDataMessage):
    """Tells a targeted worker to end its pipeline gracefully (sent by the runner).

    Attributes:
        reason: Optional human-readable reason for ending.
    """

    durable: ClassVar[bool] = True

    reason: str | None = None


@dataclass
class BusCancelMessage(BusSystemMessage):
    """Requests a hard cancel of the session; the runner answers with BusCancelWorkerMessage.

    Attributes:
        reason: Optional human-readable reason for the cancellation.
    """

    durable: ClassVar[bool] = True

    reason: str | None = None


@dataclass
class BusCancelWorkerMessage(BusSystemMessage):
    """Tells a targeted worker to cancel its pipeline (sent by the runner).

    Attributes:
        reason: Optional human-readable reason for the cancellation.
    """

    durable: ClassVar[bool] = True

    reason: str | None = None


@dataclass
class BusEndWorkerLocalMessage(BusEndWorkerMessage, BusLocalMessage):
    """A :class:`BusEndWorkerMessage` that never leaves the process.

    A runner ends its own root workers, and a parent its children, with it: the same worker
    hosted by other runners (replicas share a name) must go on. Subscribers in the process see
    it as a ``BusEndWorkerMessage``.
    """


@dataclass
class BusCancelWorkerLocalMessage(BusCancelWorkerMessage, BusLocalMessage):
    """A :class:`BusCancelWorkerMessage` that never leaves the process (as the end one)."""


@dataclass(init=False)
class BusAddWorkerMessage(BusSystemMessage, BusLocalMessage):
    """Requests that the local runner add a worker.

    Local-only: it carries an in-memory worker object that cannot be serialized. pipecat's
    deprecated ``task=`` keyword is still taken for ``worker`` (with a ``DeprecationWarning``).

    Attributes:
        worker: The worker instance to add (a ``natsbus.workers.BaseWorker``).
    """

    worker: Any

    def __init__(
        self,
        worker: Any = None,
        *,
        source: str,
        target: str | None = None,
        task: Any = None,
    ) -> None:
        if task is not None:
            warnings.warn(
                "BusAddWorkerMessage(task=...) is deprecated; use worker=...",
                DeprecationWarning,
                stacklevel=2,
            )
            worker = task if worker is None else worker
        if worker is None:
            raise TypeError("BusAddWorkerMessage needs a worker")
        self.worker = worker
        self.source = source
        self.target = target
        self.id = ""
        self.sent_at = 0.0
        self.trace_context = None


@dataclass
class BusWorkerErrorMessage(BusSystemMessage):
    """Reports an error from a root worker; crosses the network so remote workers can react.

    Attributes:
        error: Description of the error.
    """

    durable: ClassVar[bool] = True

    error: str


@dataclass
class BusWorkerLocalErrorMessage(BusSystemMessage, BusLocalMessage):
    """Reports an error from a child worker to its parent (local-only, see ``on_worker_failed``).

    Attributes:
        error: Description of the error.
    """

    error: str


@dataclass
class WorkerRegistryEntry:
    """Information about one worker in a registry snapshot.

    Attributes:
        name: The worker's name.
        parent: Name of the parent worker, or None for root workers.
        active: Whether the worker is currently active.
        bridged: Whether the worker is bridged.
        started_at: Unix timestamp when the worker became ready.
    """

    name: str
    parent: str | None = None
    active: bool = False
    bridged: bool = False
    started_at: float | None = None


@dataclass
class BusWorkerReadyMessage(BusDataMessage):
    """Announces that a worker (root or child) is ready.

    Attributes:
        runner: Name of the runner managing this worker.
        parent: Name of the parent worker, or None for root workers.
        active: Whether the worker started active.
        bridged: Whether the worker is bridged (receives pipeline frames from the bus).
        started_at: Unix timestamp when the worker became ready.
    """

    durable: ClassVar[bool] = True

    runner: str
    parent: str | None = None
    active: bool = False
    bridged: bool = False
    started_at: float | None = None


@dataclass
class BusWorkerRegistryMessage(BusSystemMessage):
    """Snapshot of the workers a runner manages, so that remote runners discover them.

    Attributes:
        runner: Name of the runner that owns these workers.
        workers: The workers with their state.
    """

    durable: ClassVar[bool] = True

    runner: str
    workers: list[WorkerRegistryEntry]


@dataclass
class BusTTSSpeakMessage(BusDataMessage):
    """Asks a PipelineWorker to speak the given text via its TTS service.

    Attributes:
        text: The text to be spoken.
        append_to_context: Whether the spoken text should also be appended to the conversation
            context (forwarded to ``TTSSpeakFrame``).
    """

    text: str
    append_to_context: bool | None = None


@dataclass
class BusFrameMessage(BusDataMessage):
    """Wraps a pipeline frame for transport over the bus (see ``natsbus.pipeline``).

    Attributes:
        frame: The frame to transport (a built-in frame or a registered application frame).
        direction: Direction the frame should travel in the recipient's pipeline.
        bridge: Optional bridge name for routing in multi-bridge setups.
    """

    frame: Frame
    direction: FrameDirection
    bridge: str | None = None
