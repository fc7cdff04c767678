"""The worker side of jobs: run each request's handler in a task and answer exactly once.

Every job a worker takes ends with exactly one response, because a NatsBus acknowledges the
JetStream request when that response is stored: the handler's return value answers
``completed``, its exception ``error``, a cancel ``cancelled``. Requests that must not run are
answered at once: a repeated job id (``error``, the running handler is left alone), a job
cancelled before it arrived or past its deadline (``cancelled``), a job nobody handles or sent
to an inactive worker (``error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from natsbus.messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    JobStatus,
    Payload,
)
from natsbus.workers.decorator import JobHandler, collect_job_handlers

if TYPE_CHECKING:
    from natsbus.workers.worker import BaseWorker

__all__ = ["DEADLINE_KEY", "JobExecutor"]

logger = logging.getLogger(__name__)

DEADLINE_KEY: Final = "__natsbus_deadline__"
"""Payload key carrying a request's deadline (Unix time). The request message of the reference
has no deadline field, so it travels in the payload and is removed before the handler runs."""

RECENT_CANCELS: Final = 4096
"""How many cancelled job ids a worker remembers, for requests that arrive after their cancel."""


@dataclass(slots=True)
class _RunningJob:
    request: BusJobRequestMessage
    task: asyncio.Task[None] | None = None
    responded: bool = False
    finishing: bool = False
    cancel_reason: str | None = None
    cancel_message: BusJobCancelMessage | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.perf_counter)


class JobExecutor:
    """Runs the job handlers of one worker.

    Args:
        worker: The worker whose handlers run and whose name answers.
    """

    def __init__(self, worker: BaseWorker) -> None:
        self._worker = worker
        self._handlers = collect_job_handlers(worker)
        self._locks: dict[str | None, asyncio.Lock] = {}
        self._running: dict[str, _RunningJob] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._draining = False
        self._fallback: JobHandler | None = None

    @property
    def running(self) -> dict[str, BusJobRequestMessage]:
        """The requests being handled, by job id."""
        return {job_id: job.request for job_id, job in self._running.items()}

    @property
    def draining(self) -> bool:
        """Whether new requests are refused (the worker is ending)."""
        return self._draining

    def set_fallback(self, handler: JobHandler | None) -> None:
        """Set the handler for requests no ``@job`` method claims (``on_job_request``)."""
        self._fallback = handler

    # --- incoming ---------------------------------------------------------------------------

    async def on_request(self, request: BusJobRequestMessage) -> None:
        """Take a job request addressed to this worker."""
        job_id = request.job_id
        if job_id in self._running:
            # Answering for the running job would end it for the requester while its handler
            # runs on, unowned; refuse the newcomer instead.
            logger.warning("%s: job id %r is already running; refused", self._worker, job_id)
            await self._answer(request, JobStatus.ERROR, {"error": f"job {job_id!r} is running"})
            return
        if job_id in self._cancelled:
            del self._cancelled[job_id]
            await self._answer(request, JobStatus.CANCELLED, {"reason": "cancelled before start"})
            return
        if self._draining:
            await self._decline(request)
            return
        if not self._worker.active:
            await self._answer(
                request, JobStatus.ERROR, {"error": f"worker {self._worker.name!r} is inactive"}
            )
            return
        entry = self._handlers.get(request.job_name)
        handler, sequential = (entry[0], entry[1].sequential) if entry else (self._fallback, False)
        if handler is None:
            await self._answer(
                request,
                JobStatus.ERROR,
                {"error": f"worker {self._worker.name!r} has no handler for {request.job_name!r}"},
            )
            return
        deadline = None
        if request.payload is not None and DEADLINE_KEY in request.payload:
            payload = dict(request.payload)
            deadline = payload.pop(DEADLINE_KEY)
            request.payload = payload or None
        job = _RunningJob(request)
        self._running[job_id] = job
        lock = self._locks.setdefault(request.job_name, asyncio.Lock()) if sequential else None
        job.task = asyncio.create_task(
            self._run(job, handler, lock, deadline),
            name=f"natsbus-job[{self._worker.name}:{job_id}]",
        )

    async def on_cancel(self, message: BusJobCancelMessage) -> None:
        """Cancel a running job; remember the id of one not (yet) running here."""
        job = self._running.get(message.job_id)
        if job is None:
            # Another replica may be running it, or the request is still on its way.
            self._remember_cancel(message.job_id)
            return
        job.cancel_message = message
        self._cancel(job, message.reason or f"cancelled by {message.source}")

    async def on_update_request(self, message: BusJobUpdateRequestMessage) -> None:
        """Pass an update request for a running job to the worker's hook."""
        if message.job_id in self._running:
            await self._worker.on_job_update_requested(message)

    # --- the worker's own calls -------------------------------------------------------------

    def request_of(self, job_id: str, action: str) -> BusJobRequestMessage:
        """The request of a job still to be answered, for a reply about it.

        Raises:
            RuntimeError: No such job is running, or it was already answered.
        """
        job = self._running.get(job_id)
        if job is None or job.responded:
            raise RuntimeError(f"{self._worker}: no running job {job_id!r} to {action}")
        return job.request

    async def respond(
        self, job_id: str, status: JobStatus, response: Payload | None, *, urgent: bool
    ) -> None:
        """Send a running job's one response (the handler's task ends on its own)."""
        request = self.request_of(job_id, "answer")
        job = self._running[job_id]
        job.responded = True
        await self._answer(
            request, status, response, urgent=urgent, quiet=False, started=job.started
        )

    def drain(self) -> None:
        """Refuse new requests from now on; running jobs go on."""
        self._draining = True

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no job runs, for at most ``timeout`` seconds.

        Returns:
            True if every job finished in time.
        """
        jobs = list(self._running.values())
        if not jobs:
            return True
        try:
            async with asyncio.timeout(timeout):
                for job in jobs:
                    await job.done.wait()
        except TimeoutError:
            return not self._running
        return True

    async def cancel_all(self, reason: str, *, timeout: float = 5.0) -> None:
        """Cancel every running job and wait (at most ``timeout``) for their answers."""
        jobs = list(self._running.values())
        for job in jobs:
            self._cancel(job, reason)
        if jobs and not await self.wait_idle(timeout):
            logger.error("%s: jobs %s ignored their cancel", self._worker, list(self._running))

    # --- internals --------------------------------------------------------------------------

    def _cancel(self, job: _RunningJob, reason: str) -> None:
        # A job sending its final answer is past cancelling: interrupting the send would lose it.
        if job.task is None or job.task.done() or job.finishing or job.cancel_reason is not None:
            return
        job.cancel_reason = reason
        job.task.cancel()

    def _remember_cancel(self, job_id: str) -> None:
        self._cancelled[job_id] = None
        if len(self._cancelled) > RECENT_CANCELS:
            self._cancelled.popitem(last=False)

    async def _run(
        self,
        job: _RunningJob,
        handler: JobHandler,
        lock: asyncio.Lock | None,
        deadline: object,
    ) -> None:
        request = job.request
        status, response = JobStatus.COMPLETED, None
        try:
            if lock is not None:
                async with lock:
                    result = await self._call(handler, request, deadline)
            else:
                result = await self._call(handler, request, deadline)
            if result is _PAST_DEADLINE:
                status, response = JobStatus.CANCELLED, {"reason": "deadline passed"}
            elif result is not None and not isinstance(result, dict):
                status = JobStatus.ERROR
                response = {"error": f"handler returned {type(result).__name__}, not a dict"}
            else:
                response = result
        except asyncio.CancelledError:
            # This task is ours and ends here: the cancel was for the job, and answering it is
            # the last thing the task does.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status = JobStatus.CANCELLED
            response = {"reason": job.cancel_reason or "cancelled"}
            if job.cancel_message is not None:
                await self._guarded(self._worker.on_job_cancelled(job.cancel_message))
        except Exception as error:
            logger.warning("%s: job %r raised", self._worker, request.job_id, exc_info=True)
            status, response = JobStatus.ERROR, {"error": str(error) or type(error).__name__}
        job.finishing = True
        try:
            if not job.responded:
                job.responded = True
                await self._answer(request, status, response, started=job.started)
            elif status is JobStatus.COMPLETED and response is not None:
                logger.warning(
                    "%s: job %r returned a value after answering; ignored",
                    self._worker,
                    request.job_id,
                )
        finally:
            del self._running[request.job_id]
            job.done.set()

    async def _call(
        self, handler: JobHandler, request: BusJobRequestMessage, deadline: object
    ) -> object:
        if isinstance(deadline, int | float) and time.time() > deadline:
            return _PAST_DEADLINE
        return await handler(request)

    async def _decline(self, request: BusJobRequestMessage) -> None:
        if self._worker.bus.redelivers_jobs:
            # Unanswered, the request goes back to the stream when the bus stops and another
            # replica takes it: better than cancelling work someone else can do.
            logger.info(
                "%s: draining; job %r left for another replica", self._worker, request.job_id
            )
            return
        await self._answer(request, JobStatus.CANCELLED, {"reason": "worker is ending"})

    async def _answer(
        self,
        request: BusJobRequestMessage,
        status: JobStatus,
        response: Payload | None,
        *,
        urgent: bool = False,
        quiet: bool = True,
        started: float | None = None,
    ) -> None:
        tally = self._worker.bus.tally
        if tally is not None:
            # Every answer counts by status; a job that ran (``started``) also by duration.
            duration = None if started is None else time.perf_counter() - started
            tally.count_job(self._worker.name, status.value, duration)
        cls = BusJobResponseUrgentMessage if urgent else BusJobResponseMessage
        message: BusMessage = cls(
            request.job_id, status, response, source=self._worker.name, target=request.source
        )
        try:
            await self._worker.bus.send(message)
        except Exception:
            if not quiet:
                raise
            # Nobody to raise to: the answer is sent on the worker's behalf.
            logger.exception("%s: could not answer job %r", self._worker, request.job_id)

    async def _guarded(self, hook: Coroutine[Any, Any, None]) -> None:
        try:
            await hook
        except Exception:
            logger.exception("%s: job hook raised", self._worker)


_PAST_DEADLINE: Final = object()
