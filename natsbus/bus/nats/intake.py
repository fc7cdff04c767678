"""What a NatsBus does with each JetStream delivery before its subscribers see it.

Job requests: a redelivery of a job still running here is kept alive, one already answered is
acknowledged again without running (this bus remembers what it answered; for what another bus
answered it asks the stream, see :mod:`natsbus.bus.nats.answers`), one past its last attempt
is answered ``error`` instead of run, and a job id that is already running for the same worker
is refused; anything else is recorded in the ledger and handed to the local subscribers. Job
controls and replies: de-duplicated by message id, handed over, acknowledged. Whatever does
not decode is terminated so that it is not redelivered forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Final

from nats.aio.msg import Msg

from natsbus._job_messages import dead_letter_reason
from natsbus.bus.nats.inbound import InboundDecoder, RecentIds
from natsbus.bus.nats.ledger import JobLedger, TakenJob
from natsbus.bus.nats.outbox import MSG_ID_HEADER
from natsbus.bus.nats.writes import acknowledge_soon
from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import BusJobRequestMessage, BusMessage

__all__ = ["MSG_ID_HEADER", "REPLY_TO_HEADER", "SENDER_HEADER", "BurstAcks", "JobIntake"]

logger = logging.getLogger("natsbus.bus.nats")

REPLY_TO_HEADER: Final = "Natsbus-Reply-To"
SENDER_HEADER: Final = "Natsbus-Instance"
"""Names the bus instance that stored a lifecycle message (it skips its own)."""
_RECHECK_DELAY: Final = 1.0
"""Seconds before a redelivered request is delivered again when the stream could not say
whether it was answered (the server is away or electing a leader)."""

Spawn = Callable[[Coroutine[Any, Any, Any]], None]
Admits = Callable[[BusMessage, str], bool]
AnswerError = Callable[[BusJobRequestMessage, TakenJob, str], None]
StoreDeadLetter = Callable[[TakenJob], None]
WasAnswered = Callable[[TakenJob], Awaitable[bool]]


class JobIntake:
    """Filters JetStream deliveries and keeps the ledger of taken jobs.

    Args:
        ledger: The jobs taken and not yet answered.
        decoder: Decodes (or counts and drops) what arrives.
        max_attempts: Deliveries of one request before it is answered ``error``.
        deliver: Hands a message to the local subscribers.
        answer_error: Answers a request with status ``error`` and a reason, then terminates
            its delivery: ``(request, delivery, reason)``.
        store_dead_letter: Keeps a request given up after its last attempt, for
            ``natsbus dlq`` (before it is answered ``error``).
        was_answered: Asks the stream whether a delivery before this one of the job's request
            was answered (:meth:`AnsweredCheck.answered
            <natsbus.bus.nats.answers.AnsweredCheck.answered>`).
        instance: This bus's instance id (it skips the lifecycle messages it stored itself).
        counts: Where ``duplicates``, ``dead_lettered``, ``duplicate_job_ids``,
            ``redelivered`` (requests delivered more than once) and ``answered_elsewhere``
            are counted.
        spawn: Runs a coroutine in the background (acknowledgements, checks).
        admits: Whether a decoded message that arrived on a subject may be delivered (the
            bus's :class:`~natsbus.bus.nats.senders.SenderCheck`); what it refuses is
            terminated.
    """

    def __init__(
        self,
        *,
        ledger: JobLedger,
        decoder: InboundDecoder,
        max_attempts: int,
        deliver: Callable[[BusMessage], None],
        answer_error: AnswerError,
        store_dead_letter: StoreDeadLetter,
        was_answered: WasAnswered,
        instance: str,
        counts: NetworkCounts,
        spawn: Spawn,
        admits: Admits,
    ) -> None:
        self._ledger = ledger
        self._decoder = decoder
        self._max_attempts = max_attempts
        self._deliver = deliver
        self._answer_error = answer_error
        self._store_dead_letter = store_dead_letter
        self._was_answered = was_answered
        self._instance = instance
        self._counts = counts
        self._spawn = spawn
        self._admits = admits
        self._seen = RecentIds()

    def on_job_request(self, worker: str, msg: Msg) -> None:
        """A job request for ``worker`` from its shared consumer.

        Its identity and routing come from the envelope (``id``, ``reply_to``); the NATS
        headers natsbus also sets are a fallback, so a producer that builds the envelope from
        the ``.proto`` files needs none. A request with no id at all is known by its stream
        sequence.
        """
        message = self._decoder.decode(msg.data, msg.subject)
        if not isinstance(message, BusJobRequestMessage) or not self._admits(message, msg.subject):
            self._spawn(msg.term())
            return
        headers = msg.headers or {}
        message_id = (
            message.id or headers.get(MSG_ID_HEADER) or f"seq-{msg.metadata.sequence.stream}"
        )
        message.id = message_id  # one identity from here on, whoever produced it
        if self._ledger.has_message(message_id):
            # Redelivered while still running here (ack_wait passed during an outage).
            self._spawn(msg.in_progress())
            return
        if message_id in self._seen:
            self._counts.duplicates += 1
            _ack_soon(msg, self._spawn)
            return
        job = TakenJob(
            job_id=message.job_id,
            worker=worker,
            reply_to=message.reply_to or headers.get(REPLY_TO_HEADER, ""),
            message_id=message_id,
            delivery=msg,
            attempt=msg.metadata.num_delivered,
            requester=message.source,
        )
        if job.attempt == 1:
            self._admit(message, job)
            return
        self._counts.redelivered += 1
        self._spawn(self._check_redelivered(message, job))

    async def _check_redelivered(self, message: BusJobRequestMessage, job: TakenJob) -> None:
        """Run a redelivered request only if no earlier delivery of it was answered."""
        try:
            answered = await self._was_answered(job)
        except Exception as error:
            # Cannot tell now: running it could run it twice. Let it come back shortly.
            logger.info("could not check job %s for a stored answer (%s)", job.job_id, error)
            self._spawn(_nak(job.delivery, _RECHECK_DELAY))
            return
        if answered:
            self._counts.answered_elsewhere += 1
            self._seen.add(job.message_id)
            await _ack(job.delivery)
            return
        if self._ledger.has_message(job.message_id) or job.message_id in self._seen:
            return  # another delivery of it was admitted meanwhile (it acknowledges it)
        self._admit(message, job)

    def _admit(self, message: BusJobRequestMessage, job: TakenJob) -> None:
        """Take a request that was not answered yet, or answer ``error`` for it."""
        if job.attempt > self._max_attempts:
            logger.error(
                "job %s for %s was not answered after %d deliveries; answering 'error'",
                job.job_id,
                job.worker,
                job.attempt - 1,
            )
            self._counts.dead_lettered += 1
            self._store_dead_letter(job)
            reason = dead_letter_reason(job.attempt - 1)
            self._answer_error(message, job, reason)
            return
        if (job.worker, job.job_id) in self._ledger:
            self._counts.duplicate_job_ids += 1
            self._answer_error(message, job, f"job id {job.job_id!r} is already running")
            return
        self._ledger.take(job)
        message.attempt = job.attempt
        self._deliver(message)

    def routed_reader(self) -> Callable[[Msg], None]:
        """The handler of one instance consumer's deliveries (:meth:`on_routed_message`)."""
        return partial(self.on_routed_message, BurstAcks(self._spawn))

    def on_routed_message(self, acks: BurstAcks, msg: Msg) -> None:
        """A job control or reply for this bus instance or its workers, or a lifecycle message.

        Args:
            acks: Acknowledges the deliveries of the instance consumer it came from.
            msg: The delivery.
        """
        headers = msg.headers or {}
        message_id = headers.get(MSG_ID_HEADER, "")
        if headers.get(SENDER_HEADER) == self._instance:
            acks.ack(msg)  # our own lifecycle message: delivered when it was sent
            return
        if message_id in self._seen:
            if self._seen.fast(message_id):
                self._counts.fast_copies += 1  # its fast copy was delivered first
            else:
                self._counts.duplicates += 1
            acks.ack(msg)
            return
        message = self._decoder.decode(msg.data, msg.subject)
        if message is None or not self._admits(message, msg.subject):
            self._spawn(msg.term())
            return
        self._seen.add(message_id)
        self._deliver(message)
        acks.ack(msg)

    def on_fast_copy(self, message: BusMessage, subject: str) -> None:
        """The core NATS copy of a stored message (see :mod:`natsbus.bus.nats.copies`).

        Delivered unless its stored copy was; a message with no id (a producer that is not
        natsbus) is delivered as it comes.
        """
        message_id = message.id
        if message_id and message_id in self._seen:
            return  # the stored copy came first
        if not self._admits(message, subject):
            return
        if message_id:
            self._seen.add(message_id, fast=True)
        self._deliver(message)

    def answered(self, key: tuple[str, str], *, duplicate: bool = False) -> TakenJob | None:
        """The response to job ``(worker, job_id)`` is stored: acknowledge its request.

        Args:
            key: The job.
            duplicate: The stream called the answer a duplicate: stored before (a resend of
                ours), or refused because another bus claimed this delivery and runs it again.
                The request is then not acknowledged: if it was ours, its next delivery finds
                the answer and is acknowledged then; if not, the other bus answers it.

        Returns:
            The job, or None if it was not taken here (or was already answered).
        """
        job = self._ledger.finish(key)
        if job is not None and not duplicate:
            self._seen.add(job.message_id)
            _ack_soon(job.delivery, self._spawn)
        return job


class BurstAcks:
    """Acknowledges the deliveries of an ``AckPolicy.ALL`` consumer once per burst.

    Such a consumer takes the acknowledgement of one delivery for all those before it, so of
    the deliveries handled in one turn of the event loop only the last is acknowledged, just
    after the turn: at 64 jobs in flight, one acknowledgement serves many replies.

    Args:
        spawn: Runs the acknowledgement in the background.
    """

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._last: Msg | None = None

    def ack(self, msg: Msg) -> None:
        """Acknowledge ``msg`` and every delivery before it, at the end of this turn."""
        if self._last is None:
            asyncio.get_running_loop().call_soon(self._flush)
        self._last = msg

    def _flush(self) -> None:
        msg, self._last = self._last, None
        if msg is not None:
            _ack_soon(msg, self._spawn)


async def _nak(msg: Msg, delay: float) -> None:
    try:
        await msg.nak(delay=delay)
    except Exception:  # disconnected: ack_wait redelivers it anyway
        logger.debug("nak failed", exc_info=True)


def _ack_soon(msg: Msg, spawn: Spawn) -> None:
    """Acknowledge with the connection's next write when it allows, in a task otherwise."""
    if not acknowledge_soon(msg):
        spawn(_ack(msg))


async def _ack(msg: Msg) -> None:
    try:
        await msg.ack()
    except Exception:  # disconnected: the message is redelivered and de-duplicated
        logger.debug("ack failed", exc_info=True)
