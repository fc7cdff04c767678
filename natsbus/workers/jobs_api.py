"""The job methods of :class:`~natsbus.workers.BaseWorker`: requesting, answering, hooks.

Kept apart from the worker's lifecycle so that each module stays readable; the work itself is
done by :class:`~natsbus.workers.executor.JobExecutor` (answering) and
:class:`~natsbus.workers.requests.JobTracker` (requesting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from natsbus.messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    JobStatus,
    Payload,
)
from natsbus.workers.handles import JobGroupHandle, JobHandle
from natsbus.workers.types import JobGroupParams, JobGroupResult, JobParams

if TYPE_CHECKING:
    from natsbus.workers.executor import JobExecutor
    from natsbus.workers.requests import JobGroup, JobTracker
    from natsbus.workers.runner import WorkerRunner

__all__ = ["JobMethods"]


def _group_params(
    params: JobParams | None,
    name: str | None,
    payload: Payload | None,
    timeout: float | None,
    cancel_on_error: bool | None = None,
) -> JobGroupParams:
    """Merge a params object with the keyword shortcuts (which win when given)."""
    base = params or JobGroupParams()
    return JobGroupParams(
        name=name if name is not None else base.name,
        payload=payload if payload is not None else base.payload,
        timeout=timeout if timeout is not None else base.timeout,
        deadline=base.deadline,
        wait_ready=base.wait_ready,
        ready_timeout=base.ready_timeout,
        label=base.label,
        cancellable=base.cancellable,
        cancel_on_error=(
            cancel_on_error
            if cancel_on_error is not None
            else getattr(base, "cancel_on_error", True)
        ),
    )


class JobMethods:
    """Job requests, answers and hooks; mixed into :class:`~natsbus.workers.BaseWorker`."""

    if TYPE_CHECKING:  # provided by BaseWorker

        @property
        def name(self) -> str:  # noqa: D102
            ...

        async def send_bus_message(self, message: BusMessage) -> None:  # noqa: D102
            ...

        _executor: JobExecutor
        _tracker: JobTracker

        @property
        def worker_runner(self) -> WorkerRunner:  # noqa: D102
            ...

    # --- requesting -------------------------------------------------------------------------

    async def request_job(
        self,
        worker_name: str,
        *,
        params: JobParams | None = None,
        name: str | None = None,
        payload: Payload | None = None,
        timeout: float | None = None,
    ) -> str:
        """Send a job to one worker without waiting for its answer.

        The answer reaches :meth:`on_job_response` (and :meth:`on_job_completed`); updates and
        stream events reach their hooks. Waits for the worker to be ready first (see
        :attr:`JobParams.wait_ready`).

        Args:
            worker_name: The worker to ask.
            params: How to run the job; ``name``, ``payload`` and ``timeout`` override it.
            name: The job name (routes to the worker's ``@job(name=...)`` handler).
            payload: Structured data describing the work.
            timeout: Seconds before the job is cancelled and counted failed.

        Returns:
            The job id.
        """
        merged = _group_params(params, name, payload, timeout)
        group = await self._tracker.start((worker_name,), merged, single=True, events=False)
        return group.job_id

    def job(
        self,
        worker_name: str,
        *,
        params: JobParams | None = None,
        name: str | None = None,
        payload: Payload | None = None,
        timeout: float | None = None,
        channel: str | None = None,
    ) -> JobHandle:
        """Run a job on one worker as an ``async with`` block.

        Example::

            async with self.job("writer", name="draft", payload={"topic": t}, timeout=30) as j:
                async for event in j:  # updates and stream chunks, in order
                    print(event.type, event.data)
            print(j.response)  # raises JobError on error, failed, cancelled or timeout

        Args:
            worker_name: The worker to ask.
            params: How to run the job; ``name``, ``payload`` and ``timeout`` override it.
            name: The job name.
            payload: Structured data describing the work.
            timeout: Seconds before the job is cancelled and ``JobTimeoutError`` raised.
            channel: Ask a worker of another channel (a shared service, say), through the
                client the runner has for it (``WorkerRunner.add_channel``); the answers
                come back to that client's bus instance, and priority holds as on this one.

        Returns:
            The handle to enter with ``async with``.

        Raises:
            UnknownChannelError: The runner has no client for ``channel``.
        """
        if channel is not None:
            return self.worker_runner.channel(channel).job(
                worker_name, name=name, payload=payload, timeout=timeout, params=params
            )
        merged = _group_params(params, name, payload, timeout)
        return JobHandle(self._tracker, self.name, (worker_name,), merged, single=True)

    async def request_job_group(
        self,
        *worker_names: str,
        params: JobGroupParams | None = None,
        name: str | None = None,
        payload: Payload | None = None,
        timeout: float | None = None,
        cancel_on_error: bool | None = None,
    ) -> str:
        """Send one job to several workers without waiting; they share the job id.

        Args:
            *worker_names: The workers to ask.
            params: How to run the group; the keyword arguments override it.
            name: The job name.
            payload: Structured data describing the work.
            timeout: Seconds before the group is cancelled and counted failed.
            cancel_on_error: Whether the first worker not to complete cancels the others.

        Returns:
            The job id.
        """
        merged = _group_params(params, name, payload, timeout, cancel_on_error)
        group = await self._tracker.start(worker_names, merged, single=False, events=False)
        return group.job_id

    def job_group(
        self,
        *worker_names: str,
        params: JobGroupParams | None = None,
        name: str | None = None,
        payload: Payload | None = None,
        timeout: float | None = None,
        cancel_on_error: bool | None = None,
    ) -> JobGroupHandle:
        """Run one job on several workers as an ``async with`` block.

        Example::

            async with self.job_group("a", "b", name="score", payload=doc) as group:
                async for event in group:
                    print(event.worker_name, event.type, event.data)
            print(group.responses)  # raises JobGroupError if one failed (cancel_on_error)

        Args:
            *worker_names: The workers to ask.
            params: How to run the group; the keyword arguments override it.
            name: The job name.
            payload: Structured data describing the work.
            timeout: Seconds before the group is cancelled and ``JobTimeoutError`` raised.
            cancel_on_error: Whether the first worker not to complete cancels the others.

        Returns:
            The handle to enter with ``async with``.
        """
        merged = _group_params(params, name, payload, timeout, cancel_on_error)
        return JobGroupHandle(self._tracker, self.name, worker_names, merged, single=False)

    async def create_job_group_and_request_job(
        self, worker_names: list[str], *, params: JobGroupParams | None = None
    ) -> JobGroup:
        """Wait for the workers to be ready, then send each the request (pipecat's spelling).

        Args:
            worker_names: The workers to ask.
            params: How to run the group.

        Returns:
            The open group (``await group.wait()`` for its end).
        """
        merged = _group_params(params, None, None, None)
        return await self._tracker.start(tuple(worker_names), merged, single=False, events=False)

    async def cancel_job_group(self, job_id: str, *, reason: str | None = None) -> None:
        """Cancel a job (or job group) this worker requested, and stop tracking it.

        Every worker that has not answered gets a ``BusJobCancelMessage``; whoever waits on
        the job gets :class:`~natsbus.workers.JobError` (``JobGroupError`` for a group) naming
        the reason. Never refused: this is the requester's own decision.

        Args:
            job_id: The job.
            reason: Why, for the workers.
        """
        await self._tracker.cancel(job_id, reason)

    cancel_job = cancel_job_group

    async def request_cancel_job_group(self, job_id: str, *, reason: str | None = None) -> bool:
        """Cancel a job group on behalf of someone else (a client UI, an operator).

        Honoured only for a group made with ``cancellable=True`` (the default).

        Args:
            job_id: The job.
            reason: Why, for the workers.

        Returns:
            Whether it was cancelled (False: unknown, or not cancellable).
        """
        return await self._tracker.cancel(job_id, reason, external=True)

    async def request_job_update(self, job_id: str, worker_name: str) -> None:
        """Ask a worker for a progress update on a job (its ``on_job_update_requested``).

        Args:
            job_id: The job.
            worker_name: The worker running it.
        """
        await self.send_bus_message(
            BusJobUpdateRequestMessage(job_id, source=self.name, target=worker_name)
        )

    # --- answering --------------------------------------------------------------------------

    async def send_job_response(
        self,
        job_id: str,
        response: Payload | None = None,
        *,
        status: JobStatus = JobStatus.COMPLETED,
        urgent: bool = False,
    ) -> None:
        """Answer a running job now (a handler's return value is then ignored).

        Args:
            job_id: The job.
            response: The result data.
            status: How the job ended (``failed`` for a business failure, say).
            urgent: Send with system priority, ahead of queued data messages.

        Raises:
            RuntimeError: No such job is running here, or it was already answered.
        """
        await self._executor.respond(job_id, JobStatus(status), response, urgent=urgent)

    async def send_job_update(
        self, job_id: str, update: Payload | None = None, *, urgent: bool = False
    ) -> None:
        """Send a progress update about a running job to its requester.

        Args:
            job_id: The job.
            update: The progress data.
            urgent: Send with system priority (it may then overtake earlier data messages).

        Raises:
            RuntimeError: No such job is running here, or it was already answered.
        """
        request = self._executor.request_of(job_id, "update")
        cls = BusJobUpdateUrgentMessage if urgent else BusJobUpdateMessage
        await self.send_bus_message(cls(job_id, update, source=self.name, target=request.source))

    async def send_job_stream_start(self, job_id: str, data: Payload | None = None) -> None:
        """Tell the requester a stream of results begins (``data``: metadata, e.g. a type).

        Raises:
            RuntimeError: No such job is running here, or it was already answered.
        """
        await self._send_stream(BusJobStreamStartMessage, job_id, data)

    async def send_job_stream_data(self, job_id: str, data: Payload | None = None) -> None:
        """Send the requester one chunk of the stream.

        Raises:
            RuntimeError: No such job is running here, or it was already answered.
        """
        await self._send_stream(BusJobStreamDataMessage, job_id, data)

    async def send_job_stream_end(self, job_id: str, data: Payload | None = None) -> None:
        """End the stream, which answers the job (``data`` is its response), as in pipecat.

        Raises:
            RuntimeError: No such job is running here, or it was already answered.
        """
        await self._executor.respond(job_id, JobStatus.COMPLETED, data, stream_end=True)

    async def _send_stream(
        self,
        cls: type[BusJobStreamStartMessage | BusJobStreamDataMessage],
        job_id: str,
        data: Payload | None,
    ) -> None:
        request = self._executor.request_of(job_id, "stream")
        await self.send_bus_message(cls(job_id, data, source=self.name, target=request.source))

    # --- hooks: the worker side -------------------------------------------------------------

    async def on_job_request(self, message: BusJobRequestMessage) -> Payload | None:
        """Called for a request no ``@job`` method claims (in a task of its own).

        As in pipecat, a notification: the job stays open (it is in :attr:`active_jobs`) until
        the worker answers it with :meth:`send_job_response` or :meth:`send_job_stream_end`,
        from here or from anywhere later. Returning a dict answers ``completed`` with it, and
        raising answers ``error``. A worker that has ``@job`` handlers, does not override
        this and has no ``on_job_request`` event handler answers an unclaimed name ``error``.

        Args:
            message: The request.

        Returns:
            None to answer later, or the response payload.
        """
        return None

    async def on_job_cancelled(self, message: BusJobCancelMessage) -> None:
        """Called after a running job's handler was cancelled, before it is answered.

        Args:
            message: The cancel.
        """

    async def on_job_update_requested(self, message: BusJobUpdateRequestMessage) -> None:
        """Called when a requester asks for an update on a running job.

        Answer with :meth:`send_job_update`.

        Args:
            message: The update request.
        """

    # --- hooks: the requester side ----------------------------------------------------------

    async def on_job_response(
        self, message: BusJobResponseMessage | BusJobResponseUrgentMessage
    ) -> None:
        """Called for every job response addressed to this worker.

        Args:
            message: The response.
        """

    async def on_job_update(self, message: BusJobUpdateMessage | BusJobUpdateUrgentMessage) -> None:
        """Called for every progress update addressed to this worker.

        Args:
            message: The update.
        """

    async def on_job_stream_start(self, message: BusJobStreamStartMessage) -> None:
        """Called when a worker starts streaming to this worker.

        Args:
            message: The stream start.
        """

    async def on_job_stream_data(self, message: BusJobStreamDataMessage) -> None:
        """Called for each stream chunk addressed to this worker.

        Args:
            message: The chunk.
        """

    async def on_job_stream_end(self, message: BusJobStreamEndMessage) -> None:
        """Called when a worker finishes streaming to this worker.

        Args:
            message: The stream end.
        """

    async def on_job_completed(self, result: JobGroupResult) -> None:
        """Called when every worker of a job (or group) this worker requested has answered.

        Args:
            result: Each worker's status and response.
        """

    async def on_job_error(
        self, message: BusJobResponseMessage | BusJobResponseUrgentMessage
    ) -> None:
        """Called when a worker's answer fails a group with ``cancel_on_error``.

        The other workers are being cancelled; :meth:`on_job_completed` will not fire.

        Args:
            message: The failing answer.
        """
