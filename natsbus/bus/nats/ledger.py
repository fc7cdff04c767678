"""The job requests a NatsBus has taken from JetStream and not yet answered.

A job request is acknowledged only when the local worker's final response is stored, so that a
bus that dies mid-job has its job redelivered to another. Until then the ledger tells the
server, every third of ``ack_wait``, that the job is still in progress, and it remembers which
bus instance asked, so that updates, stream chunks and the response go back to that instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from nats.aio.msg import Msg

from natsbus.tasks import cancel_and_wait

__all__ = ["JobLedger", "TakenJob"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class TakenJob:
    """One job request taken from the stream.

    Attributes:
        job_id: The job's id.
        worker: The worker (consumer) it was taken for.
        reply_to: Instance id of the bus that sent the request.
        message_id: The request's message id (the stream's de-duplication id).
        delivery: The JetStream message, to acknowledge when the job is answered.
        attempt: Which delivery of the request this is (its answer's id says so).
        answer_sent: Whether its final answer was sent (any later reply is an ordinary one).
        requester: The request's source: the only worker whose cancels and update requests
            for this job are accepted.
        held: Whether the server surely still counts this delivery as this bus's: False once
            a progress signal failed or came late, or the connection was lost, since the
            delivery may then have gone to another bus (whose answer would be the one
            stored); its answer then has no fast copy (see natsbus.bus.nats.copies).
    """

    job_id: str
    worker: str
    reply_to: str
    message_id: str
    delivery: Msg
    attempt: int = 1
    answer_sent: bool = False
    requester: str = ""
    held: bool = True


class JobLedger:
    """Tracks taken jobs, their capacity per worker, and keeps them alive on the server.

    Args:
        ack_wait: The consumers' ack wait in seconds; progress is signalled every third of it.
        max_in_flight: Jobs taken at once per worker.
    """

    def __init__(self, *, ack_wait: float, max_in_flight: int) -> None:
        self._progress_interval = ack_wait / 3
        self._max_in_flight = max_in_flight
        # Keyed by (worker, job id): the members of a job group share one job id.
        self._jobs: dict[tuple[str, str], TakenJob] = {}
        self._message_ids: set[str] = set()
        self._per_worker: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._started = False

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def start(self) -> None:
        """Signal progress for the jobs in the ledger from now on.

        The task that does it runs only while there are jobs (a bus of an idle session holds
        none: one task less per session).
        """
        self._started = True
        self._keep_signalling()

    def _keep_signalling(self) -> None:
        if self._started and self._jobs and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._keep_alive(), name="natsbus-job-progress")

    async def stop(self, *, release: bool) -> None:
        """Stop signalling progress.

        Args:
            release: Ask the server to redeliver every unanswered job now (``nak``) instead of
                after ``ack_wait``, so another bus takes them over at once.
        """
        self._started = False
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait((task,))
        if release:
            for job in list(self._jobs.values()):
                try:
                    await job.delivery.nak()
                except Exception:  # the connection is gone: ack_wait redelivers it anyway
                    logger.debug("could not release job %s", job.job_id, exc_info=True)
        self._jobs.clear()
        self._message_ids.clear()
        self._per_worker.clear()

    def room(self, worker: str) -> int:
        """How many more jobs may be taken for ``worker``."""
        return self._max_in_flight - self._per_worker[worker]

    def has_message(self, message_id: str) -> bool:
        """Tell whether the request with this message id is being handled here."""
        return message_id in self._message_ids

    def get(self, key: tuple[str, str]) -> TakenJob | None:
        """Job ``(worker, job_id)``, if this bus is handling it."""
        return self._jobs.get(key)

    def take(self, job: TakenJob) -> None:
        """Record a job handed to the local subscribers."""
        self._jobs[(job.worker, job.job_id)] = job
        self._message_ids.add(job.message_id)
        self._per_worker[job.worker] += 1
        self._keep_signalling()

    def finish(self, key: tuple[str, str]) -> TakenJob | None:
        """Forget job ``(worker, job_id)`` once its response is stored; return it to ack."""
        job = self._jobs.pop(key, None)
        if job is not None:
            self._message_ids.discard(job.message_id)
            self._per_worker[job.worker] -= 1
        return job

    def loosen(self) -> None:
        """The connection was lost: no job taken so far is surely held any more."""
        for job in self._jobs.values():
            job.held = False

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            slept_from = loop.time()
            await asyncio.sleep(self._progress_interval)
            if not self._jobs:
                return  # none left: the next job taken starts this again
            # A loop blocked for an ack_wait lets the server give the jobs to another bus.
            late = loop.time() - slept_from > 2 * self._progress_interval
            for job in list(self._jobs.values()):
                if late:
                    job.held = False
                try:
                    await job.delivery.in_progress()
                except Exception:  # disconnected: the next round, or a redelivery, follows
                    job.held = False
                    logger.debug("progress signal for job %s failed", job.job_id, exc_info=True)
