"""The worker side of jobs: run each request's handler in a task and answer exactly once.

Every job a worker takes ends with exactly one answer (a response, or the end of its stream),
because a NatsBus acknowledges the JetStream request when that answer is stored: a ``@job``
handler's return value answers ``completed``, its exception ``error``, a cancel ``cancelled``;
a job ``on_job_request`` left open is answered by the worker later, or ``cancelled`` when the
worker ends. Requests that must not run are answered at once: a repeated job id (``error``,
the running handler is left alone), a job cancelled before it arrived or past its deadline
(``cancelled``), a name no ``@job`` handler claims, or a job sent to an inactive worker
(``error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from natsbus._job_messages import error_answer
from natsbus.errors import EncodeError, MessageTooLargeError
from natsbus.messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamEndMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    JobStatus,
    Payload,
)
from natsbus.workers.decorator import JobHandler, collect_job_handlers

if TYPE_CHECKING:
    from natsbus.workers.worker import BaseWorker

__all__ = ["LEGACY_DEADLINE_KEY", "JobExecutor"]

logger = logging.getLogger(__name__)

LEGACY_DEADLINE_KEY: Final = "__natsbus_deadline__"
"""Payload key in which natsbus before 0.2 sent a request's deadline: still honoured (and
removed before the handler runs) for a rolling upgrade; the deadline now travels in the
envelope (``BusJobRequestMessage.deadline``)."""

RECENT_CANCELS: Final = 4096
"""How many cancelled job ids a worker remembers, for requests that arrive after their cancel."""


@dataclass(slots=True)
class _RunningJob:
    request: BusJobRequestMessage
    notification: bool = False  # handled by on_job_request: its None return leaves it open
    task: asyncio.Task[None] | None = None
    begun: bool = False  # the task has started (a task cancelled before that never runs)
    responded: bool = False
    finishing: bool = False
    cancel_reason: str | None = None
    cancel_message: BusJobCancelMessage | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.perf_counter)


class JobExecutor:
    """Runs the job handlers of one worker.

    A ``@job`` handler's return value answers ``completed`` (an exception ``error``). A request
    no ``@job`` handler claims goes to ``on_job_request``, which, as in pipecat, is a
    notification: unless it returns a dict (which answers), the job stays open until the worker
    answers it with ``send_job_response`` or ``send_job_stream_end``, from anywhere. A cancel
    cancels the handler and answers ``cancelled``, even if the handler swallowed the
    cancellation or had already returned.

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

    @property
    def running(self) -> dict[str, BusJobRequestMessage]:
        """The requests taken and not yet answered, by job id."""
        return {job_id: job.request for job_id, job in self._running.items() if not job.responded}

    @property
    def draining(self) -> bool:
        """Whether new requests are refused (the worker is ending)."""
        return self._draining

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
        if entry is not None:
            handler, sequential, notification = entry[0], entry[1].sequential, False
        elif self._handlers and not self._worker._takes_any_job:
            # A worker of @job handlers and nothing else: a name none claims is a mistake the
            # requester must hear about now, not a job left open for ever.
            await self._answer(
                request,
                JobStatus.ERROR,
                {"error": f"worker {self._worker.name!r} has no handler for {request.job_name!r}"},
            )
            return
        else:
            handler, sequential, notification = self._worker.on_job_request, False, True
        deadline = request.deadline
        if request.payload is not None and LEGACY_DEADLINE_KEY in request.payload:
            # From a natsbus before 0.2, which kept the deadline in the payload.
            payload = dict(request.payload)
            legacy = payload.pop(LEGACY_DEADLINE_KEY)
            request.payload = payload or None
            if deadline is None and isinstance(legacy, int | float):
                deadline = float(legacy)
        job = _RunningJob(request, notification)
        self._running[job_id] = job
        lock = self._locks.setdefault(request.job_name, asyncio.Lock()) if sequential else None
        job.task = asyncio.create_task(
            self._run(job, handler, lock, deadline),
            name=f"natsbus-job[{self._worker.name}:{job_id}]",
        )
        await self._worker._fire_event("on_job_request", request)

    async def on_cancel(self, message: BusJobCancelMessage) -> None:
        """Cancel a running job; remember the id of one not (yet) running here."""
        job = self._running.get(message.job_id)
        if job is None:
            # Another replica may be running it, or the request is still on its way.
            self._remember_cancel(message.job_id)
            return
        if job.responded:
            return  # answered already (its handler may still be winding down): nothing to undo
        job.cancel_message = message
        reason = message.reason or f"cancelled by {message.source}"
        if job.task is not None and job.task.done():
            # An open job whose handler returned: cancel it here.
            job.cancel_reason = reason
            await self._worker._fire("on_job_cancelled", message)
            await self._finish(job, JobStatus.CANCELLED, {"reason": reason})
            return
        self._cancel(job, reason)

    async def on_update_request(self, message: BusJobUpdateRequestMessage) -> None:
        """Pass an update request for a running job to the worker's hook."""
        job = self._running.get(message.job_id)
        if job is not None and not job.responded:
            await self._worker._fire("on_job_update_requested", message)

    # --- the worker's own calls -------------------------------------------------------------

    def request_of(self, job_id: str, action: str) -> BusJobRequestMessage:
        """The request of a job still to be answered, for a reply about it.

        Raises:
            RuntimeError: No such job is running, or it was already answered.
        """
        job = self._running.get(job_id)
        if job is None or job.responded:
            raise RuntimeError(f"{self._worker}: no active job {job_id!r} to {action}")
        return job.request

    async def respond(
        self,
        job_id: str,
        status: JobStatus,
        response: Payload | None,
        *,
        urgent: bool = False,
        stream_end: bool = False,
    ) -> None:
        """Send a job's one answer now: its response, or the end of its stream.

        Raises:
            RuntimeError: No such job is open here (unknown, or answered already).
        """
        self.request_of(job_id, "answer")
        job = self._running[job_id]
        await self._finish(job, status, response, urgent=urgent, stream_end=stream_end, quiet=False)

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
        """Cancel every open job and wait (at most ``timeout``) for their answers."""
        jobs = list(self._running.values())
        for job in jobs:
            if job.task is not None and job.task.done() and not job.responded:
                await self._finish(job, JobStatus.CANCELLED, {"reason": reason})
            else:
                self._cancel(job, reason)
        if jobs and not await self.wait_idle(timeout):
            logger.error("%s: jobs %s ignored their cancel", self._worker, list(self._running))

    # --- internals --------------------------------------------------------------------------

    def _cancel(self, job: _RunningJob, reason: str) -> None:
        # A job sending its final answer is past cancelling: interrupting the send would lose it.
        if job.task is None or job.task.done() or job.finishing or job.cancel_reason is not None:
            return
        job.cancel_reason = reason
        if job.begun:
            job.task.cancel()
        # else: _run sees the reason when it starts, and answers without running the handler

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
        job.begun = True
        status: JobStatus | None = JobStatus.COMPLETED
        response: Payload | None = None
        try:
            if job.cancel_reason is not None:
                raise asyncio.CancelledError  # cancelled before it started: as if cancelled now
            if lock is not None:
                async with lock:
                    result = await self._call(handler, request, deadline)
            else:
                result = await self._call(handler, request, deadline)
            status, response = _outcome(job, result)
        except asyncio.CancelledError:
            # This task is ours and ends here: the cancel was for the job, and answering it is
            # the last thing the task does.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status = JobStatus.CANCELLED
            response = {"reason": job.cancel_reason or "cancelled"}
        except Exception as error:
            logger.warning("%s: job %r raised", self._worker, request.job_id, exc_info=True)
            status, response = JobStatus.ERROR, {"error": str(error) or type(error).__name__}
        if status is JobStatus.CANCELLED and job.cancel_message is not None:
            await self._worker._fire("on_job_cancelled", job.cancel_message)
        if job.responded:
            if status is JobStatus.COMPLETED and response is not None:
                logger.warning(
                    "%s: job %r returned a value after answering; ignored",
                    self._worker,
                    request.job_id,
                )
            self._forget(job)
        elif status is not None:
            await self._finish(job, status, response)

    async def _finish(
        self,
        job: _RunningJob,
        status: JobStatus,
        response: Payload | None,
        *,
        urgent: bool = False,
        stream_end: bool = False,
        quiet: bool = True,
    ) -> None:
        """Send the job's one answer, then forget it once its handler is done too."""
        job.responded = True
        job.finishing = True
        try:
            await self._answer(
                job.request,
                status,
                response,
                urgent=urgent,
                stream_end=stream_end,
                quiet=quiet,
                started=job.started,
            )
        finally:
            if job.task is None or job.task.done() or job.task is asyncio.current_task():
                self._forget(job)

    def _forget(self, job: _RunningJob) -> None:
        if self._running.get(job.request.job_id) is job:
            del self._running[job.request.job_id]
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
        stream_end: bool = False,
        quiet: bool = True,
        started: float | None = None,
    ) -> None:
        worker = self._worker
        duration = None if started is None else time.perf_counter() - started
        tally = worker.bus.tally
        if tally is not None:
            # Every answer counts by status; a job that ran (``started``) also by duration.
            tally.count_job(worker.name, status.value, duration)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s worker=%s name=%s status=%s duration=%s requester=%s",
                request.job_id,
                worker.name,
                request.job_name,
                status.value,
                "-" if duration is None else f"{duration * 1000:.1f}ms",
                request.source,
            )
        message: BusMessage
        if stream_end:
            message = BusJobStreamEndMessage(
                request.job_id, response, source=worker.name, target=request.source
            )
        else:
            cls = BusJobResponseUrgentMessage if urgent else BusJobResponseMessage
            message = cls(
                request.job_id, status, response, source=worker.name, target=request.source
            )
        try:
            await worker.send_bus_message(message)
        except (EncodeError, MessageTooLargeError) as error:
            # The result cannot travel (a set, a datetime, too large): the job still gets its
            # one answer, an error that says why, and a caller of send_job_response hears it.
            logger.error(
                "%s: the answer to job %r cannot be sent: %s", worker, request.job_id, error
            )
            failure = error_answer(
                request, f"the job's result cannot be sent: {error}", source=worker.name
            )
            await self._send_quietly(failure, request)
            if not quiet:
                raise
        except Exception:
            if not quiet:
                raise
            # Nobody to raise to: the answer is sent on the worker's behalf.
            logger.exception("%s: could not answer job %r", worker, request.job_id)

    async def _send_quietly(self, message: BusMessage, request: BusJobRequestMessage) -> None:
        try:
            await self._worker.send_bus_message(message)
        except Exception:
            logger.exception("%s: could not answer job %r", self._worker, request.job_id)


_PAST_DEADLINE: Final = object()


def _outcome(job: _RunningJob, result: object) -> tuple[JobStatus | None, Payload | None]:
    """The answer a handler's return value makes; None for a job left open."""
    if job.cancel_reason is not None:
        # The handler swallowed its cancellation: the job is cancelled all the same.
        return JobStatus.CANCELLED, {"reason": job.cancel_reason}
    if result is _PAST_DEADLINE:
        return JobStatus.CANCELLED, {"reason": "deadline passed"}
    if result is None and job.notification:
        return None, None  # on_job_request left the job open: it is answered later
    if result is not None and not isinstance(result, dict):
        return JobStatus.ERROR, {"error": f"handler returned {type(result).__name__}, not a dict"}
    return JobStatus.COMPLETED, result
