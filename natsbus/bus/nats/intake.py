"""What a NatsBus does with each JetStream delivery before its subscribers see it.

Job requests: a redelivery of a job still running here is kept alive, one already answered is
acknowledged again, one past its last attempt is answered ``error`` instead of run, and a job
id that is already running for the same worker is refused; anything else is recorded in the
ledger and handed to the local subscribers. Job controls and replies: de-duplicated by message
id, handed over, acknowledged. Whatever does not decode is terminated so that it is not
redelivered forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from nats.aio.msg import Msg

from natsbus.bus.nats.inbound import InboundDecoder, RecentIds
from natsbus.bus.nats.ledger import JobLedger, TakenJob
from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import BusJobRequestMessage, BusMessage

__all__ = ["MSG_ID_HEADER", "REPLY_TO_HEADER", "JobIntake"]

logger = logging.getLogger("natsbus.bus.nats")

MSG_ID_HEADER: Final = "Nats-Msg-Id"
REPLY_TO_HEADER: Final = "Natsbus-Reply-To"

Spawn = Callable[[Coroutine[Any, Any, Any]], None]
AnswerError = Callable[[BusJobRequestMessage, str, str, Msg], None]


class JobIntake:
    """Filters JetStream deliveries and keeps the ledger of taken jobs.

    Args:
        ledger: The jobs taken and not yet answered.
        decoder: Decodes (or counts and drops) what arrives.
        max_attempts: Deliveries of one request before it is answered ``error``.
        deliver: Hands a message to the local subscribers.
        answer_error: Answers a request with status ``error`` and a reason, then terminates
            its delivery: ``(request, reply_to, reason, delivery)``.
        counts: Where ``duplicates``, ``dead_lettered``, ``duplicate_job_ids`` and
            ``redelivered`` (requests delivered more than once) are counted.
        spawn: Runs a coroutine in the background (acknowledgements).
    """

    def __init__(
        self,
        *,
        ledger: JobLedger,
        decoder: InboundDecoder,
        max_attempts: int,
        deliver: Callable[[BusMessage], None],
        answer_error: AnswerError,
        counts: NetworkCounts,
        spawn: Spawn,
    ) -> None:
        self._ledger = ledger
        self._decoder = decoder
        self._max_attempts = max_attempts
        self._deliver = deliver
        self._answer_error = answer_error
        self._counts = counts
        self._spawn = spawn
        self._seen = RecentIds()

    def on_job_request(self, worker: str, msg: Msg) -> None:
        """A job request for ``worker`` from its shared consumer.

        Its identity and routing come from the envelope (``id``, ``reply_to``); the NATS
        headers natsbus also sets are a fallback, so a producer that builds the envelope from
        the ``.proto`` files needs none. A request with no id at all is known by its stream
        sequence.
        """
        message = self._decoder.decode(msg.data, msg.subject)
        if not isinstance(message, BusJobRequestMessage):
            self._spawn(msg.term())
            return
        headers = msg.headers or {}
        message_id = (
            message.id or headers.get(MSG_ID_HEADER) or f"seq-{msg.metadata.sequence.stream}"
        )
        if self._ledger.has_message(message_id):
            # Redelivered while still running here (ack_wait passed during an outage).
            self._spawn(msg.in_progress())
            return
        if message_id in self._seen:
            self._counts.duplicates += 1
            self._spawn(_ack(msg))
            return
        reply_to = message.reply_to or headers.get(REPLY_TO_HEADER, "")
        delivered = msg.metadata.num_delivered
        if delivered > 1:
            self._counts.redelivered += 1
        if delivered > self._max_attempts:
            logger.error(
                "job %s for %s was not answered after %d deliveries; answering 'error'",
                message.job_id,
                worker,
                delivered - 1,
            )
            self._counts.dead_lettered += 1
            reason = f"job was not completed after {delivered - 1} deliveries"
            self._answer_error(message, reply_to, reason, msg)
            return
        if (worker, message.job_id) in self._ledger:
            self._counts.duplicate_job_ids += 1
            reason = f"job id {message.job_id!r} is already running"
            self._answer_error(message, reply_to, reason, msg)
            return
        self._ledger.take(
            TakenJob(
                job_id=message.job_id,
                worker=worker,
                reply_to=reply_to,
                message_id=message_id,
                delivery=msg,
            )
        )
        self._deliver(message)

    def on_routed_message(self, msg: Msg) -> None:
        """A job control or reply addressed to this bus instance or its workers."""
        message_id = (msg.headers or {}).get(MSG_ID_HEADER, "")
        if message_id in self._seen:
            self._counts.duplicates += 1
            self._spawn(_ack(msg))
            return
        message = self._decoder.decode(msg.data, msg.subject)
        if message is None:
            self._spawn(msg.term())
            return
        self._seen.add(message_id)
        self._deliver(message)
        self._spawn(_ack(msg))

    def answered(self, key: tuple[str, str]) -> TakenJob | None:
        """The response to job ``(worker, job_id)`` is stored: acknowledge its request.

        Returns:
            The job, or None if it was not taken here (or was already answered).
        """
        job = self._ledger.finish(key)
        if job is not None:
            self._seen.add(job.message_id)
            self._spawn(_ack(job.delivery))
        return job


async def _ack(msg: Msg) -> None:
    try:
        await msg.ack()
    except Exception:  # disconnected: the message is redelivered and de-duplicated
        logger.debug("ack failed", exc_info=True)
