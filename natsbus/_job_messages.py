"""The job messages: a request, its controls, updates, stream chunks and answers.

Part of :mod:`natsbus.messages`, which re-exports every name here; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Final

from natsbus._message_base import (
    BusDataMessage,
    BusMessage,
    BusSystemMessage,
    JobRole,
    JobStatus,
    Payload,
)

__all__ = [
    "JOB_MESSAGE_TYPES",
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
    "dead_letter_reason",
    "error_answer",
    "is_job_message",
]


# --- Jobs ------------------------------------------------------------------------------------


@dataclass
class BusJobMessage(BusMessage):
    """Base of every job message: it carries the job's id and says its role.

    Each job class also extends :class:`BusDataMessage` or :class:`BusSystemMessage`, which
    choose its lane, and sets :attr:`job_role`, the one place that says what it does for its
    job (a NatsBus carries every job message on JetStream).

    Attributes:
        job_id: The job's id, shared by every worker of a job group.
    """

    job_role: ClassVar[JobRole | None] = JobRole.REQUEST

    job_id: str


@dataclass
class BusJobRequestMessage(BusDataMessage, BusJobMessage):
    """Requests a worker to start work.

    Attributes:
        job_id: Unique identifier for this job.
        job_name: Optional job name for routing to named ``@job`` handlers.
        payload: Optional structured data describing the work.
    """

    job_role: ClassVar[JobRole | None] = JobRole.REQUEST

    job_name: str | None = None
    payload: Payload | None = None
    deadline: float | None = field(default=None, init=False, compare=False, repr=False)
    """Envelope routing: Unix time after which the worker must not start the job (it is
    answered ``cancelled``); set by the requester from its timeout. None: no deadline."""
    reply_to: str = field(default="", init=False, compare=False, repr=False)
    """Envelope routing: where the answers go (the asking bus instance); stamped by a
    network bus. Empty: answered on the core subject of ``source``."""
    attempt: int = field(default=1, init=False, compare=False, repr=False)
    """Which delivery of the request this is: 1, or more when JetStream delivered it again
    (the bus that took it died, or did not answer within ``ack_wait``). Not on the wire: set
    by the receiving bus. A request already answered is never run again, whatever this says;
    a handler with side effects that must not happen twice can key them on ``job_id`` when
    ``attempt > 1``."""


@dataclass
class BusJobResponseMessage(BusDataMessage, BusJobMessage):
    """Response from a worker when its job completes.

    Attributes:
        job_id: The job identifier.
        status: Completion status.
        response: Optional result data.
    """

    job_role: ClassVar[JobRole | None] = JobRole.ANSWER

    status: JobStatus
    response: Payload | None = None


@dataclass
class BusJobResponseUrgentMessage(BusSystemMessage, BusJobMessage):
    """High-priority job response: as BusJobResponseMessage, preempting queued data messages.

    Attributes:
        job_id: The job identifier.
        status: Completion status.
        response: Optional result data.
    """

    job_role: ClassVar[JobRole | None] = JobRole.ANSWER

    status: JobStatus
    response: Payload | None = None


@dataclass
class BusJobUpdateMessage(BusDataMessage, BusJobMessage):
    """Progress update from a worker.

    Attributes:
        job_id: The job identifier.
        update: Optional progress data.
    """

    job_role: ClassVar[JobRole | None] = JobRole.UPDATE

    update: Payload | None = None


@dataclass
class BusJobUpdateUrgentMessage(BusSystemMessage, BusJobMessage):
    """High-priority progress update: as BusJobUpdateMessage, preempting queued data messages.

    Attributes:
        job_id: The job identifier.
        update: Optional progress data.
    """

    job_role: ClassVar[JobRole | None] = JobRole.UPDATE

    update: Payload | None = None


@dataclass
class BusJobUpdateRequestMessage(BusDataMessage, BusJobMessage):
    """Requests a progress update from a worker.

    Attributes:
        job_id: The job identifier.
    """

    job_role: ClassVar[JobRole | None] = JobRole.CONTROL


@dataclass
class BusJobStreamStartMessage(BusDataMessage, BusJobMessage):
    """Signals the start of a streaming job response.

    Attributes:
        job_id: The job identifier.
        data: Optional metadata (e.g. content type).
    """

    job_role: ClassVar[JobRole | None] = JobRole.STREAM

    data: Payload | None = None


@dataclass
class BusJobStreamDataMessage(BusDataMessage, BusJobMessage):
    """A chunk of streaming job data.

    Attributes:
        job_id: The job identifier.
        data: The chunk payload.
    """

    job_role: ClassVar[JobRole | None] = JobRole.STREAM

    data: Payload | None = None


@dataclass
class BusJobStreamEndMessage(BusDataMessage, BusJobMessage):
    """Signals the end of a streaming job response.

    Attributes:
        job_id: The job identifier.
        data: Optional final metadata.
    """

    job_role: ClassVar[JobRole | None] = JobRole.ANSWER

    data: Payload | None = None


@dataclass
class BusJobCancelMessage(BusSystemMessage, BusJobMessage):
    """Cancels a running job.

    Attributes:
        job_id: The job identifier.
        reason: Optional human-readable reason for cancellation.
    """

    job_role: ClassVar[JobRole | None] = JobRole.CONTROL

    reason: str | None = None


JOB_MESSAGE_TYPES: Final[tuple[type[BusJobMessage], ...]] = (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    BusJobUpdateRequestMessage,
    BusJobStreamStartMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobCancelMessage,
)
"""Every job message class of the reference."""


def is_job_message(message: BusMessage) -> bool:
    """Tell whether a message belongs to a job (every :class:`BusJobMessage`).

    Args:
        message: Any bus message.

    Returns:
        True for job messages, which a NatsBus carries on JetStream.
    """
    return message.job_role is not None


def error_answer(
    request: BusJobRequestMessage, reason: str, *, source: str | None = None
) -> BusJobResponseMessage:
    """The ``error`` response to ``request``: ``{"error": reason}``, back to its requester.

    Every place that must answer a job it cannot run (a dead letter, a result that cannot be
    sent, a request the server refused) answers with this, on the worker's behalf.

    Args:
        request: The request answered.
        reason: What went wrong, for the requester.
        source: Who answers; the worker asked (``request.target``) by default.
    """
    return BusJobResponseMessage(
        request.job_id,
        JobStatus.ERROR,
        {"error": reason},
        source=source or request.target or "natsbus",
        target=request.source,
    )


def dead_letter_reason(deliveries: int) -> str:
    """What the requester is told of a job given up after ``deliveries`` deliveries."""
    return f"job was not completed after {deliveries} deliveries"
