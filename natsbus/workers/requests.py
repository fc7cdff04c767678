"""The requester side of jobs: send requests, track the answers, hand them to the caller.

One job id is shared by every worker of a group (a single job is a group of one). The tracker
keeps each open group until every worker answered, the group failed (an error with
``cancel_on_error``, a timeout) or the requester abandoned it; replies for a job it no longer
tracks still reach the worker's hooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from natsbus._ids import new_id
from natsbus.messages import (
    BusJobCancelMessage,
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
    Payload,
)
from natsbus.workers.errors import JobError, JobGroupError, JobTimeoutError
from natsbus.workers.executor import DEADLINE_KEY
from natsbus.workers.types import JobEvent, JobEventKind, JobGroupParams, JobGroupResult

if TYPE_CHECKING:
    from natsbus.workers.worker import BaseWorker

__all__ = ["JobGroup", "JobTracker"]

logger = logging.getLogger(__name__)

_EVENT_KINDS: dict[type[BusMessage], tuple[JobEventKind, bool]] = {
    BusJobUpdateMessage: (JobEventKind.UPDATE, False),
    BusJobUpdateUrgentMessage: (JobEventKind.UPDATE, True),
    BusJobStreamStartMessage: (JobEventKind.STREAM_START, False),
    BusJobStreamDataMessage: (JobEventKind.STREAM_DATA, False),
    BusJobStreamEndMessage: (JobEventKind.STREAM_END, False),
}


def _detail(response: Payload | None) -> str:
    if not response:
        return ""
    detail = response.get("error", response.get("reason"))
    return f": {detail}" if detail is not None else ""


@dataclass(eq=False)
class JobGroup:
    """One job in flight on one or more workers (shared job id).

    Attributes:
        job_id: The job's id.
        workers: The workers asked, in order.
        name: The job name.
        single: Whether it is a single job (any non-completed answer fails it).
        cancel_on_error: For a group: whether the first non-completed answer fails it.
        statuses: The status of each worker that answered.
        responses: The response of each worker that answered.
        events: Updates and stream events, when the caller iterates them.
        done: Resolved when the job is over; its exception is the :class:`JobError`.
    """

    job_id: str
    workers: tuple[str, ...]
    name: str | None
    single: bool
    cancel_on_error: bool
    statuses: dict[str, JobStatus] = field(default_factory=dict)
    responses: dict[str, Payload | None] = field(default_factory=dict)
    events: asyncio.Queue[JobEvent | None] | None = None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    sent: bool = False
    timer: asyncio.TimerHandle | None = None

    def pending(self) -> list[str]:
        """The workers that have not answered."""
        return [w for w in self.workers if w not in self.statuses]

    def describe(self) -> str:
        """Name the job for an error message."""
        what = f"job {self.name!r} ({self.job_id})" if self.name else f"job {self.job_id}"
        return what if self.single else f"{what} on {list(self.workers)}"


class JobTracker:
    """The jobs one worker requested and is still waiting for.

    Args:
        worker: The requesting worker (its name is the requests' source).
    """

    def __init__(self, worker: BaseWorker) -> None:
        self._worker = worker
        self._groups: dict[str, JobGroup] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def groups(self) -> dict[str, JobGroup]:
        """The open jobs and groups, by job id."""
        return dict(self._groups)

    async def start(
        self, workers: tuple[str, ...], params: JobGroupParams, *, single: bool, events: bool
    ) -> JobGroup:
        """Wait for the workers to be ready and send each of them the request.

        Raises:
            JobTimeoutError: The workers were not ready within the timeout.
        """
        if not workers:
            raise ValueError("a job needs at least one worker")
        for name in workers:
            if not isinstance(name, str) or not name:
                raise TypeError(f"a worker name must be a non-empty str, got {name!r}")
        group = JobGroup(
            job_id=new_id(),
            workers=workers,
            name=params.name,
            single=single,
            cancel_on_error=params.cancel_on_error,
            events=asyncio.Queue() if events else None,
        )
        self._groups[group.job_id] = group  # before sending: no answer can come too early
        self._idle.clear()
        if params.timeout is not None:
            group.timer = asyncio.get_running_loop().call_later(
                params.timeout, self._on_timeout, group
            )
        deadline = params.deadline
        if deadline is None and params.timeout is not None:
            deadline = time.time() + params.timeout
        payload = params.payload
        if deadline is not None:
            payload = {**(payload or {}), DEADLINE_KEY: deadline}
        try:
            registry = self._worker.registry_or_none
            if params.wait_ready and registry is not None:
                await self._wait_ready(group, registry.wait_ready(workers))
            me = self._worker.name
            group.sent = True
            for name in workers:
                await self._worker.bus.send(
                    BusJobRequestMessage(group.job_id, params.name, payload, source=me, target=name)
                )
        except BaseException:
            self._close(group)
            raise
        return group

    async def send(self, message: BusMessage) -> None:
        """Send a message about a job on the worker's bus."""
        await self._worker.bus.send(message)

    async def cancel(self, job_id: str, reason: str | None, *, wait_answers: bool) -> None:
        """Ask every worker that has not answered to cancel the job.

        Args:
            job_id: The job.
            reason: Why, for the workers.
            wait_answers: Keep tracking the job until the workers answer (``cancelled``, or
                whatever they answered first); otherwise fail it now with ``JobError``.
        """
        group = self._groups.get(job_id)
        if group is None:
            return
        pending = group.pending()
        if not wait_answers:
            self._fail(
                group,
                JobError(
                    f"{group.describe()} cancelled by the requester",
                    job_id=job_id,
                    status=JobStatus.CANCELLED,
                ),
            )
        await self._send_cancels(job_id, pending, reason)

    async def on_reply(self, message: BusMessage) -> None:
        """Take an update, stream event or response addressed to this worker."""
        job_id: str = message.job_id  # type: ignore[attr-defined]
        group = self._groups.get(job_id)
        known = group is not None and message.source in group.workers
        if isinstance(message, BusJobResponseMessage | BusJobResponseUrgentMessage):
            await self._guarded(self._worker.on_job_response(message))
            if known:
                assert group is not None
                await self._on_response(group, message)
            return
        kind, urgent = _EVENT_KINDS[type(message)]
        data: Payload | None = (
            message.update
            if isinstance(message, BusJobUpdateMessage | BusJobUpdateUrgentMessage)
            else getattr(message, "data", None)
        )
        if known:
            assert group is not None
            if group.events is not None and not group.done.done():
                group.events.put_nowait(JobEvent(kind, message.source, data, urgent))
        await self._guarded(self._worker.dispatch_job_event(kind, message))

    async def wait_idle(self) -> None:
        """Wait until every job this worker requested is over."""
        await self._idle.wait()

    async def close(self, reason: str) -> None:
        """Cancel every open job (the worker is ending)."""
        for group in list(self._groups.values()):
            await self.cancel(group.job_id, reason, wait_answers=False)
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)

    # --- internals --------------------------------------------------------------------------

    async def _wait_ready(self, group: JobGroup, ready: Coroutine[Any, Any, None]) -> None:
        waiter = asyncio.ensure_future(ready)
        try:
            await asyncio.wait((waiter, group.done), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if group.done.done():
            group.done.result()  # raises the timeout

    async def _on_response(
        self, group: JobGroup, message: BusJobResponseMessage | BusJobResponseUrgentMessage
    ) -> None:
        source, status = message.source, message.status
        if source in group.statuses or group.done.done():
            return
        group.statuses[source] = status
        group.responses[source] = message.response
        if status is not JobStatus.COMPLETED and (group.single or group.cancel_on_error):
            error: JobError
            detail = _detail(message.response)
            text = f"{group.describe()}: {source!r} answered {status.value}{detail}"
            if group.single:
                error = JobError(
                    text,
                    job_id=group.job_id,
                    worker=source,
                    status=status,
                    response=message.response,
                )
            else:
                error = JobGroupError(
                    text,
                    job_id=group.job_id,
                    worker=source,
                    status=status,
                    response=message.response,
                    statuses=group.statuses,
                    responses=group.responses,
                )
            pending = group.pending()
            self._fail(group, error)
            if not group.single:
                await self._guarded(self._worker.on_job_error(message))
                await self._send_cancels(group.job_id, pending, f"{source!r} answered {status}")
            return
        if not group.pending():
            self._close(group)
            group.done.set_result(None)
            result = JobGroupResult(group.job_id, dict(group.statuses), dict(group.responses))
            await self._guarded(self._worker.on_job_completed(result))

    def _on_timeout(self, group: JobGroup) -> None:
        if group.done.done():
            return
        pending = group.pending()
        what = "no answer" if group.sent else "workers not ready"
        self._fail(
            group,
            JobTimeoutError(
                f"{group.describe()}: {what} from {pending} in time",
                job_id=group.job_id,
                worker=pending[0] if len(pending) == 1 else None,
            ),
        )
        if group.sent:
            self._spawn(self._send_cancels(group.job_id, pending, "timeout"))

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
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        if group.events is not None:
            group.events.put_nowait(None)

    async def _send_cancels(self, job_id: str, workers: list[str], reason: str | None) -> None:
        me = self._worker.name
        for name in workers:
            try:
                await self._worker.bus.send(
                    BusJobCancelMessage(job_id, reason, source=me, target=name)
                )
            except Exception:
                logger.exception("%s: could not cancel job %s on %r", me, job_id, name)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _guarded(self, hook: Coroutine[Any, Any, None]) -> None:
        try:
            await hook
        except Exception:
            logger.exception("%s: job hook raised", self._worker)
