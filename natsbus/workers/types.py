"""Plain data the worker API takes and hands out: job parameters, job events, worker data."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from natsbus.messages import JobStatus, Payload

__all__ = [
    "JobEvent",
    "JobEventKind",
    "JobGroupEvent",
    "JobGroupParams",
    "JobGroupResponse",
    "JobGroupResult",
    "JobParams",
    "WorkerActivationArgs",
    "WorkerErrorData",
    "WorkerReadyData",
]


@dataclass(frozen=True, kw_only=True)
class JobParams:
    """How to run a job on one worker.

    Attributes:
        name: Job name, routing the request to the worker's ``@job(name=...)`` handler; None
            reaches its unnamed handler.
        payload: Structured data describing the work.
        timeout: Seconds to wait for the worker to be ready *and* answer. When it passes, the
            job is cancelled on the worker and :class:`~natsbus.workers.JobTimeoutError` is
            raised. None waits for ever.
        deadline: Unix time after which the worker must not start the job: a request still
            queued then is answered ``cancelled`` without running. Defaults to the moment the
            timeout passes (nobody waits for the answer after that); None with no timeout
            means no deadline. The clocks of requester and worker are assumed in sync (NTP).
        wait_ready: Wait until the worker is known to be ready (in this runner's registry)
            before sending the request.
        ready_timeout: Seconds to wait for a worker the registry does not know yet; then
            :class:`~natsbus.workers.WorkerNotFoundError` names it (a misspelt or absent
            worker must not hang the requester). None waits for ever, as pipecat does; with
            ``timeout`` set too, the sooner applies.
        label: A human-readable description of the work (``"Research: Radiohead"``), kept
            on the job group.
        cancellable: Whether a cancel asked for from outside the requester
            (:meth:`~natsbus.BaseWorker.request_cancel_job_group`) is honoured; the
            requester's own cancels (a timeout, an error, its end) always are.
    """

    name: str | None = None
    payload: Payload | None = None
    timeout: float | None = None
    deadline: float | None = None
    wait_ready: bool = True
    ready_timeout: float | None = 30.0
    label: str | None = None
    cancellable: bool = True

    def __post_init__(self) -> None:
        for name in ("timeout", "ready_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"JobParams.{name} must be positive, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class JobGroupParams(JobParams):
    """How to run one job on several workers at once (every :class:`JobParams` field applies).

    Attributes:
        cancel_on_error: When one worker answers ``error`` or ``failed``, cancel the others and
            raise :class:`~natsbus.workers.JobGroupError` at once.
    """

    cancel_on_error: bool = True


class JobEventKind(enum.StrEnum):
    """What a :class:`JobEvent` reports."""

    UPDATE = "update"
    """A progress update (``send_job_update``)."""
    STREAM_START = "stream_start"
    """The worker started streaming (``send_job_stream_start``)."""
    STREAM_DATA = "stream_data"
    """One stream chunk (``send_job_stream_data``)."""
    STREAM_END = "stream_end"
    """The worker finished streaming (``send_job_stream_end``); the response still follows."""


@dataclass(frozen=True, slots=True)
class JobEvent:
    """Something a worker sent about a job before its response (or, for a stream, as its end).

    The same class serves a job and a job group (``JobGroupEvent`` is another name for it).
    Compare :attr:`type` with the class constants, as in pipecat::

        async for event in handle:
            if event.type == JobEvent.UPDATE:
                print(event.worker_name, event.data)

    Attributes:
        type: What the event reports.
        worker_name: The worker that sent it.
        data: The update or chunk payload.
        urgent: Whether it was sent with system priority (and so may overtake data events).
    """

    UPDATE: ClassVar[JobEventKind] = JobEventKind.UPDATE
    STREAM_START: ClassVar[JobEventKind] = JobEventKind.STREAM_START
    STREAM_DATA: ClassVar[JobEventKind] = JobEventKind.STREAM_DATA
    STREAM_END: ClassVar[JobEventKind] = JobEventKind.STREAM_END

    type: JobEventKind
    worker_name: str = ""
    data: Payload | None = None
    urgent: bool = False

    @property
    def kind(self) -> JobEventKind:
        """Another name for :attr:`type`."""
        return self.type

    @property
    def worker(self) -> str:
        """Another name for :attr:`worker_name`."""
        return self.worker_name


JobGroupEvent = JobEvent
"""pipecat's name for the events of a job group: the same class as :class:`JobEvent`."""


@dataclass(frozen=True, slots=True)
class JobGroupResult:
    """How every worker of a job (or job group) answered; passed to ``on_job_completed``.

    Attributes:
        job_id: The job's id, shared by the group.
        responses: Each worker's response payload (``{}`` when it sent none), by worker name.
        statuses: Each worker's status, by worker name.
    """

    job_id: str
    responses: Mapping[str, Payload] = field(default_factory=dict)
    statuses: Mapping[str, JobStatus] = field(default_factory=dict)


JobGroupResponse = JobGroupResult
"""pipecat's name for :class:`JobGroupResult`."""


@dataclass(frozen=True, slots=True)
class WorkerReadyData:
    """A worker that became ready, here or on another runner.

    Attributes:
        worker_name: The worker's name.
        runner: The runner hosting it.
        parent: Its parent worker, or None for a root worker.
        active: Whether it was active when announced.
        bridged: Whether it is bridged.
        started_at: Unix time at which it became ready.
        local: Whether it runs on this process's runner.
    """

    worker_name: str
    runner: str
    parent: str | None = None
    active: bool = False
    bridged: bool = False
    started_at: float | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class WorkerErrorData:
    """An error a worker reported.

    Attributes:
        worker_name: The worker that reported it.
        error: Its description of the error.
    """

    worker_name: str
    error: str


@dataclass
class WorkerActivationArgs:
    """Structured activation arguments, as pipecat's ``activate_worker(args=...)`` takes them.

    ``activate_worker`` sends :meth:`to_dict`; a plain dict works too. Subclass it to add
    fields of your own.

    Attributes:
        metadata: Structured data for the activated worker.
    """

    metadata: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Make one from an ``on_activated`` dict, ignoring keys that are not fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as the activation's ``args``."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }
