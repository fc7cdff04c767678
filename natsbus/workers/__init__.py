"""Workers and the runner that hosts them: lifecycle, registry and jobs over a WorkerBus.

- :class:`BaseWorker`: subclass it; mark job handlers with :func:`job`.
- :class:`WorkerRunner`: hosts workers on one bus (in-process or NATS) until they end.
- ``worker.job(...)`` / ``worker.job_group(...)``: run jobs as ``async with`` blocks
  (:class:`JobHandle`, :class:`JobGroupHandle`), configured by :class:`JobParams` /
  :class:`JobGroupParams`; failures raise :class:`JobError`.

Module map: ``worker`` (the worker facade), ``actions`` (what it does to others),
``compat`` (pipecat's private spellings), ``lifecycle`` (start, activation, end, cancel),
``jobs_api`` (the worker's job methods and hooks), ``executor`` (running handlers),
``requests`` and ``handles`` (the requester side), ``registry``, ``runner``, ``signals``.
"""

from natsbus.messages import JobStatus
from natsbus.workers.decorator import job
from natsbus.workers.errors import (
    JobError,
    JobGroupError,
    JobGroupTimeoutError,
    JobTimeoutError,
    WorkerNotFoundError,
)
from natsbus.workers.handles import JobContext, JobGroupContext, JobGroupHandle, JobHandle
from natsbus.workers.lifecycle import WorkerState
from natsbus.workers.registry import WorkerRegistry
from natsbus.workers.requests import JobGroup
from natsbus.workers.runner import PipelineRunner, RunnerState, WorkerRunner
from natsbus.workers.types import (
    JobEvent,
    JobEventKind,
    JobGroupEvent,
    JobGroupParams,
    JobGroupResponse,
    JobGroupResult,
    JobParams,
    WorkerActivationArgs,
    WorkerErrorData,
    WorkerReadyData,
)
from natsbus.workers.worker import BaseWorker

__all__ = [
    "BaseWorker",
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
    "PipelineRunner",
    "RunnerState",
    "WorkerActivationArgs",
    "WorkerErrorData",
    "WorkerNotFoundError",
    "WorkerReadyData",
    "WorkerRegistry",
    "WorkerRunner",
    "WorkerState",
    "job",
]
