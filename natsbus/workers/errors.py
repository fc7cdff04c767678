"""Errors raised by the worker layer.

They extend the tree of :mod:`natsbus.errors`::

    NatsBusError
    └── JobError                       a job did not complete (error, failed, cancelled)
        ├── JobTimeoutError (TimeoutError)  no answer (or no ready worker) within the timeout
        └── JobGroupError                   a job group did not complete
            └── JobGroupTimeoutError        ... because its timeout passed (also a JobTimeoutError)
"""

from __future__ import annotations

from collections.abc import Mapping

from natsbus.errors import NatsBusError
from natsbus.messages import JobStatus, Payload

__all__ = ["JobError", "JobGroupError", "JobGroupTimeoutError", "JobTimeoutError"]


class JobError(NatsBusError):
    """A job ended without completing: the worker answered error, failed or cancelled.

    Attributes:
        job_id: The job's id.
        worker: The worker that answered, or None when no single worker is to blame.
        status: The status the worker answered with; None when no answer came (a timeout).
        response: The worker's response payload, if any (``{"error": ...}`` for an error).
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        worker: str | None = None,
        status: JobStatus | None = None,
        response: Payload | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.worker = worker
        self.status = status
        self.response = response


class JobTimeoutError(JobError, TimeoutError):
    """No answer came within the job's timeout (the job was cancelled on the worker side).

    Also raised when the target worker did not become ready within the timeout.
    """


class WorkerNotFoundError(JobTimeoutError):
    """No worker of the name asked for became ready within ``JobParams.ready_timeout``.

    The request was never sent. Attributes as :class:`JobError`; ``worker`` names the first
    worker missing.
    """


class JobGroupError(JobError):
    """A job group ended without every worker completing (``cancel_on_error`` or a timeout).

    Attributes:
        statuses: The status of every worker that answered, by worker name.
        responses: The response of every worker that answered, by worker name.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        worker: str | None = None,
        status: JobStatus | None = None,
        response: Payload | None = None,
        statuses: Mapping[str, JobStatus] | None = None,
        responses: Mapping[str, Payload | None] | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id, worker=worker, status=status, response=response)
        self.statuses = dict(statuses or {})
        self.responses = dict(responses or {})


class JobGroupTimeoutError(JobGroupError, JobTimeoutError):
    """A job group's timeout passed: its workers were not ready, or did not all answer, in time."""
