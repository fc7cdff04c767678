"""``async with`` handles for a job and a job group, as ``BaseWorker.job()`` returns them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from natsbus.messages import BusJobUpdateRequestMessage, JobStatus, Payload
from natsbus.workers.requests import JobGroup, JobTracker
from natsbus.workers.types import JobEvent, JobGroupParams

__all__ = ["JobContext", "JobGroupContext", "JobGroupHandle", "JobHandle"]


class _Handle:
    """What a job and a job group share: start on enter, events, wait on exit."""

    def __init__(
        self,
        tracker: JobTracker,
        source: str,
        workers: tuple[str, ...],
        params: JobGroupParams,
        *,
        single: bool,
    ) -> None:
        self._tracker = tracker
        self._source = source
        self._workers = workers
        self._params = params
        self._single = single
        self._group: JobGroup | None = None

    @property
    def job_id(self) -> str:
        """The job's id (shared by the group).

        Raises:
            RuntimeError: The job was not started (use ``async with``).
        """
        return self._started().job_id

    @property
    def done(self) -> bool:
        """Whether the job is over (answered, failed, timed out or abandoned)."""
        return self._group is not None and self._group.done.done()

    async def cancel(self, reason: str | None = None) -> None:
        """Ask the workers to cancel the job; their answers (``cancelled``) still arrive.

        Leaving the ``async with`` block then raises :class:`~natsbus.workers.JobError` with
        status ``cancelled``, unless a worker had already answered otherwise.

        Args:
            reason: Why, for the workers.
        """
        await self._tracker.cancel(self._started().job_id, reason, wait_answers=True)

    async def request_update(self) -> None:
        """Ask every worker of the job for a progress update (``on_job_update_requested``)."""
        group = self._started()
        for worker in group.pending():
            await self._tracker_worker_send(worker, group.job_id)

    async def wait(self) -> None:
        """Wait until every worker answered.

        Raises:
            JobError: A worker answered error, failed or cancelled (for a group: with
                ``cancel_on_error``).
            JobTimeoutError: The timeout passed.
        """
        group = self._started()
        try:
            await group.wait()
        except asyncio.CancelledError:
            if not group.done.done():
                await asyncio.shield(self._tracker.cancel(group.job_id, "requester cancelled"))
            raise

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JobEvent:
        """The next update or stream event; ends when the job is over."""
        group = self._started()
        events = group.event_queue
        if events is None:
            raise StopAsyncIteration
        event = await events.get()
        if event is None:
            events.put_nowait(None)  # a second loop ends at once too
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise RuntimeError("a job handle can be entered only once")
        self._group = await self._tracker.start(
            self._workers, self._params, single=self._single, events=True
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._started()
        if exc_type is not None:
            # The block failed (or was cancelled): nobody will read the answer, so stop the
            # work now. Shielded: the cancel must go out even when this task is cancelled.
            if not group.done.done():
                await asyncio.shield(
                    self._tracker.cancel(group.job_id, "context exited with error")
                )
            return
        await self.wait()

    def _started(self) -> JobGroup:
        if self._group is None:
            raise RuntimeError("the job has not started: use it with 'async with'")
        return self._group

    async def _tracker_worker_send(self, worker: str, job_id: str) -> None:
        await self._tracker.send(
            BusJobUpdateRequestMessage(job_id, source=self._source, target=worker)
        )


class JobHandle(_Handle):
    """One job on one worker, from ``async with worker.job(...) as handle``.

    Sends the request on enter (after waiting for the worker to be ready) and waits for the
    answer on exit. ``async for event in handle`` yields the updates and stream events in the
    order the worker sent them (urgent updates may overtake) and ends when the job is over.

    Example::

        async with self.job("translator", name="translate", payload={"text": t}) as j:
            async for event in j:
                print(event.type, event.data)
        print(j.response)

    Leaving the block raises :class:`~natsbus.workers.JobError` if the worker answered
    ``error``, ``failed`` or ``cancelled``, and :class:`~natsbus.workers.JobTimeoutError` if the
    timeout passed. If the block itself raises, the job is cancelled.
    """

    @property
    def worker(self) -> str:
        """The worker asked."""
        return self._workers[0]

    @property
    def status(self) -> JobStatus | None:
        """How the worker answered, or None before its answer."""
        return self._started().statuses.get(self.worker)

    @property
    def response(self) -> Payload | None:
        """The worker's response payload: None before the answer, ``{}`` if it sent none."""
        return self._started().responses.get(self.worker)


class JobGroupHandle(_Handle):
    """One job on several workers, from ``async with worker.job_group(...) as group``.

    As :class:`JobHandle`, with events from every worker (see :attr:`JobEvent.worker_name`).
    With ``cancel_on_error`` (the default) the first worker to answer ``error`` or ``failed``
    cancels the others and leaving the block raises :class:`~natsbus.workers.JobGroupError`.
    """

    @property
    def workers(self) -> tuple[str, ...]:
        """The workers asked."""
        return self._workers

    @property
    def statuses(self) -> Mapping[str, JobStatus]:
        """How each worker answered so far, by name."""
        return dict(self._started().statuses)

    @property
    def responses(self) -> Mapping[str, Payload]:
        """Each worker's response payload so far (``{}`` when it sent none), by name."""
        return dict(self._started().responses)


JobContext = JobHandle
"""pipecat's name for :class:`JobHandle`."""

JobGroupContext = JobGroupHandle
"""pipecat's name for :class:`JobGroupHandle`."""
