"""The base of every bus message: its lanes, job roles and statuses, and the three bases.

Kept apart from :mod:`natsbus.messages` (which re-exports everything here) so that the
message classes themselves stay one readable module.
"""

from __future__ import annotations

import enum
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, TypeAlias

__all__ = [
    "BusDataMessage",
    "BusLocalMessage",
    "BusMessage",
    "BusSystemMessage",
    "JobRole",
    "JobStatus",
    "Lane",
    "Payload",
]

Payload: TypeAlias = dict[str, Any]
"""A structured payload: str keys; int (64-bit), float, str, bool, None, bytes, list, dict."""


class JobStatus(enum.StrEnum):
    """How a job ended."""

    COMPLETED = "completed"
    """The handler finished and returned its response."""
    CANCELLED = "cancelled"
    """The job was cancelled (by the requester, a deadline, or the worker ending)."""
    FAILED = "failed"
    """The handler reported that the work itself failed."""
    ERROR = "error"
    """The handler raised, or the job could not be delivered (redeliveries exhausted)."""


class Lane(enum.StrEnum):
    """The two priority lanes a message travels on (a subscriber's, and a NatsBus's subjects)."""

    SYSTEM = "system"
    """:class:`BusSystemMessage`: handled ahead of queued data messages."""
    DATA = "data"
    """:class:`BusDataMessage`: handled in FIFO order."""


class JobRole(enum.Enum):
    """What a job message does for its job (:attr:`BusJobMessage.job_role`)."""

    REQUEST = "request"
    """Asks a worker to run the job (:class:`BusJobRequestMessage`)."""
    CONTROL = "control"
    """Goes to the worker running the job: a cancel or an update request."""
    UPDATE = "update"
    """Progress, from the worker to the requester."""
    STREAM = "stream"
    """The start of a stream, or a chunk of it, from the worker to the requester."""
    ANSWER = "answer"
    """Ends the job: a response (urgent or not), or the end of a stream."""


@dataclass
class BusMessage:
    """Base class for messages carried by the WorkerBus.

    Subclasses choose delivery priority by extending :class:`BusDataMessage` (normal priority,
    FIFO) or :class:`BusSystemMessage` (delivered ahead of queued data messages).

    Attributes:
        source: Name of the worker or component that sent this message.
        target: Name of the intended recipient worker, or None for broadcast.
        id: Unique message id, stamped by the bus on ``send()`` (also the JetStream
            de-duplication id). Empty until sent.
        sent_at: Unix time in seconds at which the bus accepted the message; the start of
            dispatch latency. 0.0 until sent.
        trace_context: W3C trace context (``traceparent``/``tracestate``) carried across
            processes, or None.
    """

    lane: ClassVar[Lane] = Lane.DATA
    """The lane the class travels on (set by BusDataMessage and BusSystemMessage)."""
    job_role: ClassVar[JobRole | None] = None
    """What a job message does for its job; None for every other message."""
    durable: ClassVar[bool] = False
    """Whether a network bus keeps the message across a server outage (lifecycle messages:
    activate, end, cancel, ready, error, registry): stored, and received once by every bus
    that hosts its target. Others travel on core NATS, at most once."""

    _: KW_ONLY
    source: str
    target: str | None = None
    id: str = field(default="", init=False, compare=False, repr=False)
    sent_at: float = field(default=0.0, init=False, compare=False, repr=False)
    trace_context: dict[str, str] | None = field(
        default=None, init=False, compare=False, repr=False
    )


@dataclass
class BusDataMessage(BusMessage):
    """Normal-priority bus message, delivered in FIFO order on the subscriber's data lane."""

    lane: ClassVar[Lane] = Lane.DATA


@dataclass
class BusSystemMessage(BusMessage):
    """High-priority bus message, handled ahead of any queued :class:`BusDataMessage`."""

    lane: ClassVar[Lane] = Lane.SYSTEM


class BusLocalMessage:
    """Mixin: the message stays on the local bus and is never forwarded to remote buses."""

    __slots__ = ()
