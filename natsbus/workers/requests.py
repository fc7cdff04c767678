"""The requester side of jobs: send requests, track the answers, hand them to the caller.

One job id is shared by every worker of a group (a single job is a group of one). The tracker
keeps each open group until every worker answered (a response, or the end of its stream), the
group failed (an error with ``cancel_on_error``, a timeout) or the requester cancelled it;
replies for a job it no longer tracks still reach the worker's hooks and event handlers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from natsbus._ids import new_id
from natsbus._lazy_event import LazyEvent
from natsbus.messages import (
    BusJobCancelMessage,
    BusJobMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    JobStatus,
    Lane,
    Payload,
)
from natsbus.workers.errors import (
    JobError,
    JobGroupError,
    JobGroupTimeoutError,
    JobTimeoutError,
    WorkerNotFoundError,
)
from natsbus.workers.types import JobEvent, JobEventKind, JobGroupParams, JobGroupResult

if TYPE_CHECKING:
    from natsbus.workers.registry import WorkerRegistry
    from natsbus.workers.worker import BaseWorker

__all__ = ["JobGroup", "JobTracker"]

logger = logging.getLogger(__name__)

_EVENT_KINDS: dict[type[BusMessage], JobEventKind] = {
    BusJobUpdateMessage: JobEventKind.UPDATE,
    BusJobUpdateUrgentMessage: JobEventKind.UPDATE,
    BusJobStreamStartMessage: JobEventKind.STREAM_START,
    BusJobStreamDataMessage: JobEventKind.STREAM_DATA,
    BusJobStreamEndMessage: JobEventKind.STREAM_END,
}

_EVENT_HOOKS: dict[JobEventKind, str] = {
    JobEventKind.UPDATE: "on_job_update",
    JobEventKind.STREAM_START: "on_job_stream_start",
    JobEventKind.STREAM_DATA: "on_job_stream_data",
    JobEventKind.STREAM_END: "on_job_stream_end",
}


def _detail(response: Payload | None) -> str:
    if not response:
        return ""
    detail = response.get("error", response.get("reason"))
    return f": {detail}" if detail is not None else ""


@dataclass(eq=False)
class JobGroup:
    """One job in flight on one or more workers (shared job id); a single job is a group of one.

    The fields pipecat's ``JobGroup`` has come first, with the same names and defaults, so that
    ``JobGroup(job_id="j1", worker_names=["w1"])`` works as there.

    Attributes:
        job_id: The job's id.
        worker_names: The workers asked, in order.
        responses: The response of each worker that answered (``{}`` when it sent none).
        timeout_task: The task that cancels the group when its timeout passes, or None.
        cancel_on_error: For a group: whether the first ``error``/``failed`` answer fails it.
        label: A human-readable description of the work.
        cancellable: Whether an outside request may cancel it (:meth:`JobTracker.cancel` with
            ``external=True``).
        terminated: The workers that answered (by a response or the end of their stream).
        event_queue: Updates and stream events, when a caller iterates them.
        name: The job name.
        single: Whether it is a single job (any answer but ``completed`` fails it).
        statuses: The status of each worker that answered.
        done: Resolved when the job is over; its exception is the :class:`JobError`.
        sent: Whether the requests were sent (the workers were ready).
    """

    job_id: str
    worker_names: list[str]
    responses: dict[str, Payload] = field(default_factory=dict)
    timeout_task: asyncio.Task[None] | None = None
    cancel_on_error: bool = True
    label: str | None = None
    cancellable: bool = True
    terminated: set[str] = field(default_factory=set)
    event_queue: asyncio.Queue[JobEvent | None] | None = None
    name: str | None = None
    single: bool = False
    statuses: dict[str, JobStatus] = field(default_factory=dict)
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    sent: bool = False

    @property
    def is_done(self) -> bool:
        """Whether the job is over (answered, failed, cancelled or timed out)."""
        return self.done.done()

    async def wait(self) -> None:
        """Wait until the job is over.

        Raises:
            JobError: It failed (a :class:`JobGroupError` for a group).
        """
        await asyncio.shield(self.done)

    def pending(self) -> list[str]:
        """The workers that have not answered."""
        return [w for w in self.worker_names if w not in self.terminated]

    def describe(self) -> str:
        """Name the job for an error message."""
        what = f"job {self.name!r} ({self.job_id})" if self.name else f"job {self.job_id}"
        return what if self.single else f"{what} on {self.worker_names}"


class JobTracker:
    """The jobs one worker requested and is still waiting for.

    Args:
        worker: The requesting worker (its name is the requests' source).
    """

    def __init__(self, worker: BaseWorker) -> None:
        self._worker = worker
        self._groups: dict[str, JobGroup] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._idle = LazyEvent(True)  # lazy: waited on only while the worker ends

    @property
    def groups(self) -> dict[str, JobGroup]:
        """The open jobs and groups, by job id (the tracker's own dict, as pipecat exposes it)."""
        return self._groups

    async def start(
        self, workers: tuple[str, ...], params: JobGroupParams, *, single: bool, events: bool
    ) -> JobGroup:
        """Wait for the workers to be ready and send each of them the request.

        Raises:
            JobGroupError: The workers were not ready within the timeout (a
                :class:`JobTimeoutError` too), or the group was cancelled meanwhile.
        """
        if not workers:
            raise ValueError("a job needs at least one worker")
        for name in workers:
            if not isinstance(name, str) or not name:
                raise TypeError(f"a worker name must be a non-empty str, got {name!r}")
        group = JobGroup(
            job_id=new_id(),
            worker_names=list(workers),
            cancel_on_error=params.cancel_on_error,
            label=params.label,
            cancellable=params.cancellable,
            event_queue=asyncio.Queue() if events else None,
            name=params.name,
            single=single,
        )
        self._groups[group.job_id] = group  # before sending: no answer can come too early
        self._idle.clear()
        if params.timeout is not None:
            group.timeout_task = asyncio.get_running_loop().create_task(
                self._time_out(group, params.timeout),
                name=f"natsbus-job-timeout[{group.job_id}]",
            )
        deadline = params.deadline
        if deadline is None and params.timeout is not None:
            deadline = time.time() + params.timeout
        try:
            registry = self._worker._registry
            if params.wait_ready and registry is not None and not registry.all_ready(workers):
                # Only a worker not known yet costs a task and a wait (the usual case is not).
                await self._wait_ready(group, registry, workers, params.ready_timeout)
            me = self._worker.name
            group.sent = True
            for name in workers:
                request = BusJobRequestMessage(
                    group.job_id, params.name, params.payload, source=me, target=name
                )
                request.deadline = deadline
                await self._worker.send_bus_message(request)
        except BaseException:
            self._close(group)
            raise
        return group

    async def send(self, message: BusMessage) -> None:
        """Send a message about a job on the worker's bus."""
        await self._worker.send_bus_message(message)

    async def cancel(
        self,
        job_id: str,
        reason: str | None,
        *,
        wait_answers: bool = False,
        external: bool = False,
    ) -> bool:
        """Ask every worker that has not answered to cancel the job.

        Args:
            job_id: The job.
            reason: Why, for the workers (and in the :class:`JobError`).
            wait_answers: Keep tracking the job until the workers answer (``cancelled``, or
                whatever they answered first); otherwise fail it now with :class:`JobError`
                (:class:`JobGroupError` for a group) naming the reason.
            external: The cancel comes from outside the requester (a client, an operator):
                refused for a group made with ``cancellable=False``.

        Returns:
            Whether the job was cancelled (False: unknown, or not cancellable).
        """
        group = self._groups.get(job_id)
        if group is None or (external and not group.cancellable):
            return False
        pending = group.pending()
        if not wait_answers:
            text = f"cancelled ({reason or 'no reason given'})"
            self._fail(group, self._error(group, text, status=JobStatus.CANCELLED))
        if group.sent:
            await self._send_cancels(job_id, pending, reason)
        return True

    async def on_reply(self, message: BusJobMessage) -> None:
        """Take an update, stream event or response addressed to this worker."""
        job_id = message.job_id
        group = self._groups.get(job_id)
        known = group is not None and message.source in group.worker_names
        worker = self._worker
        if isinstance(message, BusJobResponseMessage | BusJobResponseUrgentMessage):
            await worker._fire("on_job_response", message)
            if known:
                assert group is not None
                await self._on_answer(
                    group, message.source, message.status, message.response, message
                )
            return
        kind = _EVENT_KINDS[type(message)]
        urgent = message.lane is Lane.SYSTEM
        data: Payload | None = (
            message.update
            if isinstance(message, BusJobUpdateMessage | BusJobUpdateUrgentMessage)
            else getattr(message, "data", None)
        )
        if known:
            assert group is not None
            if group.event_queue is not None and not group.done.done():
                group.event_queue.put_nowait(JobEvent(kind, message.source, data, urgent))
        await worker._fire(_EVENT_HOOKS[kind], message)
        if known and kind is JobEventKind.STREAM_END:
            # The end of a stream is the worker's answer, as in pipecat.
            assert group is not None
            await self._on_answer(group, message.source, JobStatus.COMPLETED, data)

    async def wait_idle(self) -> None:
        """Wait until every job this worker requested is over."""
        await self._idle.wait()

    async def close(self, reason: str) -> None:
        """Cancel every open job (the worker is ending)."""
        for group in list(self._groups.values()):
            await self.cancel(group.job_id, reason)
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)

    # --- internals --------------------------------------------------------------------------

    async def _wait_ready(
        self,
        group: JobGroup,
        registry: WorkerRegistry,
        workers: tuple[str, ...],
        timeout: float | None,
    ) -> None:
        waiter = asyncio.ensure_future(registry.wait_ready(workers))
        try:
            await asyncio.wait(
                (waiter, group.done), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if group.done.done():
            group.done.result()  # raises the timeout, or the cancel
        if not waiter.done() or waiter.cancelled():
            missing = [name for name in workers if not registry.all_ready((name,))]
            raise WorkerNotFoundError(
                f"no worker named {', '.join(map(repr, missing))} became ready within"
                f" {timeout:g} s: is the name right, and is it running on this channel?",
                job_id=group.job_id,
                worker=missing[0] if missing else None,
            )

    async def _on_answer(
        self,
        group: JobGroup,
        source: str,
        status: JobStatus,
        response: Payload | None,
        message: BusJobResponseMessage | BusJobResponseUrgentMessage | None = None,
    ) -> None:
        if source in group.terminated or group.done.done():
            return
        group.terminated.add(source)
        group.statuses[source] = status
        group.responses[source] = response or {}
        if status is not JobStatus.COMPLETED and (
            group.single or (group.cancel_on_error and status is not JobStatus.CANCELLED)
        ):
            pending = group.pending()
            error = self._error(
                group, f"{source!r} answered {status.value}{_detail(response)}", source, status
            )
            self._fail(group, error)
            if message is not None and group.cancel_on_error and status is not JobStatus.CANCELLED:
                await self._worker._fire("on_job_error", message)
            if pending:
                await self._send_cancels(group.job_id, pending, f"worker {source!r} errored")
            return
        if not group.pending():
            self._close(group)
            group.done.set_result(None)
            result = JobGroupResult(group.job_id, dict(group.responses), dict(group.statuses))
            await self._worker._fire("on_job_completed", result)

    async def _time_out(self, group: JobGroup, timeout: float) -> None:
        await asyncio.sleep(timeout)
        if group.done.done():
            return
        pending = group.pending()
        group.timeout_task = None  # this task: _close must not cancel it
        if group.sent:
            text = f"timeout: no answer from {pending} in time"
        else:
            text = f"workers {pending} not ready within timeout"
        kind = JobTimeoutError if group.single else JobGroupTimeoutError
        self._fail(group, self._error(group, text, kind=kind))
        if group.sent:
            await self._send_cancels(group.job_id, pending, "timeout")

    def _error(
        self,
        group: JobGroup,
        text: str,
        worker: str | None = None,
        status: JobStatus | None = None,
        *,
        kind: type[JobError] | None = None,
    ) -> JobError:
        message = f"{group.describe()}: {text}"
        response = group.responses.get(worker) if worker is not None else None
        if group.single:
            cls = kind or JobError
            return cls(
                message, job_id=group.job_id, worker=worker, status=status, response=response
            )
        group_cls = kind if kind is not None and issubclass(kind, JobGroupError) else JobGroupError
        return group_cls(
            message,
            job_id=group.job_id,
            worker=worker,
            status=status,
            response=response,
            statuses=group.statuses,
            responses=group.responses,
        )

    def _fail(self, group: JobGroup, error: JobError) -> None:
        self._close(group)
        if not group.done.done():
            group.done.set_exception(error)
            # Whoever awaits it gets the error; nobody may (a fire-and-forget request).
            group.done.exception()

    def _close(self, group: JobGroup) -> None:
        self._groups.pop(group.job_id, None)
        if not self._groups:
            self._idle.set()
        task = group.timeout_task
        if task is not None:
            group.timeout_task = None
            task.cancel()
        if group.event_queue is not None:
            group.event_queue.put_nowait(None)

    async def _send_cancels(self, job_id: str, workers: list[str], reason: str | None) -> None:
        me = self._worker.name
        for name in workers:
            try:
                await self._worker.send_bus_message(
                    BusJobCancelMessage(job_id, reason, source=me, target=name)
                )
            except Exception:
                logger.exception("%s: could not cancel job %s on %r", me, job_id, name)
