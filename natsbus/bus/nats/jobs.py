"""The :class:`JobChannel`: everything a NatsBus does with job messages, in one owner.

A NatsBus keeps its connections, core pub/sub and lifecycle, and hands job messages here. The
channel owns the rest of a job's path on JetStream:

* the streams it is stored in (made at open);
* the :class:`~natsbus.bus.nats.consumer_set.ConsumerSet` whose pull loops take requests for
  the hosted workers and the replies and controls addressed to this instance;
* the :class:`~natsbus.bus.nats.intake.JobIntake` that filters each delivery (redeliveries,
  duplicates, dead letters) and the :class:`~natsbus.bus.nats.ledger.JobLedger` of the
  requests taken and not yet answered;
* the :class:`~natsbus.bus.nats.outbox.JobOutbox` of each lane, which publishes job messages
  and keeps them until the stream acknowledges them; the answer of a taken request, once
  stored, acknowledges that request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final, TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from natsbus._job_messages import error_answer
from natsbus.bus.nats.answers import AnsweredCheck, answer_id
from natsbus.bus.nats.consumer_set import ConsumerSet
from natsbus.bus.nats.consumers import ConsumerStatistics
from natsbus.bus.nats.copies import FastCopy, copy_subject
from natsbus.bus.nats.inbound import InboundDecoder
from natsbus.bus.nats.intake import MSG_ID_HEADER, REPLY_TO_HEADER, SENDER_HEADER, JobIntake
from natsbus.bus.nats.jetstream import TTL_HEADER, ensure_streams, ttl_value
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.ledger import JobLedger, TakenJob
from natsbus.bus.nats.options import JetStreamOptions
from natsbus.bus.nats.outbox import EXPECTED_STREAM_HEADER, JobOutbox, OutboundJobMessage
from natsbus.bus.nats.senders import SenderCheck
from natsbus.bus.nats.shared import NatsConnections
from natsbus.bus.statistics import NetworkCounts
from natsbus.codec import Codec
from natsbus.errors import BusClosedError, BusUnavailableError
from natsbus.messages import (
    BusJobMessage,
    BusJobRequestMessage,
    BusMessage,
    JobRole,
    Lane,
)

__all__ = ["DEAD_LETTER_HEADER", "JobChannel", "mapped"]

logger = logging.getLogger("natsbus.bus.nats")

_T = TypeVar("_T")
_LANES: Final[tuple[Lane, Lane]] = (Lane.SYSTEM, Lane.DATA)
DEAD_LETTER_HEADER: Final = "Natsbus-Deliveries"
"""On a dead-lettered request: how many times it was delivered before it was given up."""
_CHECK_TIMEOUT: Final = 2.0
"""Seconds to wait for each answer of the server while checking a redelivered request."""


async def mapped(step: str, work: Awaitable[_T]) -> _T:
    """Run one step of a start, turning nats-py's errors into natsbus's (cause chained).

    Raises:
        BusUnavailableError: The step failed (JetStream missing, the server away or silent).
    """
    try:
        return await work
    except ServiceUnavailableError as error:
        raise BusUnavailableError(
            f"{step} failed: JetStream is not available on the server (start nats-server with"
            " -js, or enable JetStream for this account)"
        ) from error
    except (NatsError, TimeoutError) as error:
        raise BusUnavailableError(f"{step} failed: {error or type(error).__name__}") from error


class JobChannel:
    """A NatsBus's job messages on JetStream: streams, consumers, intake, ledger, outboxes.

    Args:
        layout: The bus's subjects, streams and consumer names.
        options: Stream, consumer and retry settings.
        instance: The bus instance id (replies to its requests are addressed to it).
        codec: Encodes the answers the channel sends on a worker's behalf.
        decoder: Decodes (or counts and drops) what arrives.
        deliver: Hands a message to the bus's local subscribers.
        stamp: Stamps a message the channel sends on a worker's behalf (id, send time).
        counts: Where the bus counts what happens to its jobs (redeliveries, duplicates...).
        name: The bus's name, for logs.
        shared: The bus's shared connection pair, if it has one: the streams are then made
            once per pair, and the pair's instance consumers read for the bus.
    """

    def __init__(
        self,
        *,
        layout: SubjectLayout,
        options: JetStreamOptions,
        instance: str,
        codec: Codec,
        decoder: InboundDecoder,
        deliver: Callable[[BusMessage], None],
        stamp: Callable[[BusMessage], None],
        counts: NetworkCounts,
        name: str = "",
        shared: NatsConnections | None = None,
    ) -> None:
        self._layout = layout
        self._shared = shared
        self._options = options
        self._ttl = ttl_value(options.message_ttl)
        self._instance = instance
        self._codec = codec
        self._stamp = stamp
        self._deliver = deliver
        self._counts = counts
        self._ledger = JobLedger(
            ack_wait=options.ack_wait, max_in_flight=options.max_jobs_in_flight
        )
        self._senders = SenderCheck(counts=counts, requester=self._requester, name=name)
        self.admits: Callable[[BusMessage, str], bool] = self._senders.admits
        """Whether a message that arrived on a subject passes the sender checks (see
        :mod:`natsbus.bus.nats.senders`); what fails is counted and logged."""
        self._intake = JobIntake(
            ledger=self._ledger,
            decoder=decoder,
            max_attempts=options.max_attempts,
            deliver=deliver,
            answer_error=self._answer_error,
            store_dead_letter=self._store_dead_letter,
            was_answered=self._was_answered,
            instance=instance,
            counts=counts,
            spawn=self._spawn,
            admits=self._senders.admits,
        )
        self._clients: Mapping[Lane, Client] = {}
        self._outboxes: dict[Lane, JobOutbox] = {}
        self._consumers: ConsumerSet | None = None
        self._answers: AnsweredCheck | None = None
        self._paused = False  # may be asked for before open()
        self._background: set[asyncio.Task[Any]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(
        self, clients: Mapping[Lane, Client], jetstream: Mapping[Lane, JetStreamContext]
    ) -> None:
        """Make the streams, start the outboxes, the consumers and the ledger's progress task.

        A step that fails undoes the ones before it.

        Raises:
            BusUnavailableError: A step failed (see :func:`mapped`).
        """
        self._clients = clients
        self._answers = AnsweredCheck(
            jetstream[Lane.DATA],
            stream=self._layout.stream,
            claim_subject=partial(self._layout.job_claims, self._instance),
            ttl=self._ttl,
            timeout=_CHECK_TIMEOUT,
        )
        async with contextlib.AsyncExitStack() as undo:
            streams = partial(ensure_streams, jetstream[Lane.DATA], self._layout, self._options)
            routed = None
            if self._shared is None:
                await mapped("making the job streams", streams())
            else:
                key = ("streams", self._layout.prefix, self._layout.stream, self._options)
                await mapped("making the job streams", self._shared.once(key, streams))
                routed = await mapped(
                    "making the pair's consumers",
                    self._shared.instance_consumers(self._layout, self._options),
                )
            for lane in _LANES:
                outbox = JobOutbox(
                    client=clients[lane],
                    stream=self._layout.stream,
                    size=self._options.outbox_size,
                    retry_interval=self._options.publish_retry_interval,
                    name=f"{lane}-{self._instance}",
                    counts=self._counts,
                )
                undo.push_async_callback(outbox.close, 0)
                await outbox.start()
                self._outboxes[lane] = outbox
            consumers = ConsumerSet(
                clients=clients,
                jetstream=jetstream,
                layout=self._layout,
                options=self._options,
                instance=self._instance,
                intake=self._intake,
                ledger=self._ledger,
                routed=routed,
            )
            undo.push_async_callback(self._release, consumers)
            await mapped("making the bus's consumers", consumers.start())
            self._consumers = consumers
            if self._paused:
                await consumers.pause_jobs()
            self._ledger.start()
            undo.pop_all()

    async def close(self) -> None:
        """Stop taking jobs, store what was sent, release what was taken and not answered.

        Job messages already sent are stored first (for up to 5 seconds), so a job answered
        just before is acknowledged rather than redelivered; jobs taken but not answered are
        then released to the server, for another bus to take at once.
        """
        consumers, self._consumers = self._consumers, None
        if consumers is not None:
            await consumers.stop()
        for outbox in self._outboxes.values():
            await outbox.close()
        await self._ledger.stop(release=True)
        if consumers is not None:
            await consumers.delete_instance_consumers()
        # Acknowledgements and terminations still on their way.
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _release(self, consumers: ConsumerSet) -> None:
        await consumers.stop()
        await consumers.delete_instance_consumers()
        await self._ledger.stop(release=True)

    # --- taking jobs --------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether new job requests are refused (a drain)."""
        return self._paused

    async def pause(self) -> None:
        """Take no new job request; cancels and replies keep flowing."""
        self._paused = True
        if self._consumers is not None:
            await self._consumers.pause_jobs()

    async def sync(
        self,
        workers: Iterable[str],
        taking: Iterable[str],
        listening: Iterable[str] | None,
        *,
        narrow: bool = True,
    ) -> bool:
        """Read ``workers``' controls and ``listening``'s lifecycle; take ``taking``'s jobs.

        Returns True if a consumer was left reading more than that (``narrow=False``: see
        ``ConsumerSet.sync``).
        """
        if self._consumers is None:
            return False
        return await self._consumers.sync(workers, taking, listening, narrow=narrow)

    def missing(self, workers: Iterable[str], taking: Iterable[str]) -> set[str]:
        """The workers whose consumers are not in place (for readiness)."""
        if self._consumers is None:
            return set()
        return self._consumers.missing(workers, taking)

    async def statistics(self, timeout: float) -> list[ConsumerStatistics]:
        """Ask the server how far behind each consumer is (see ``NatsBus.consumer_statistics``)."""
        if self._consumers is None:
            return []
        return await self._consumers.statistics(timeout)

    def renew(self) -> None:
        """Ask again at once on every pull loop (pending pulls died with a connection)."""
        self._ledger.loosen()  # what was taken may have been redelivered meanwhile
        if self._consumers is not None:
            self._consumers.renew()

    # --- sending ------------------------------------------------------------------------------

    async def publish(self, message: BusJobMessage, data: bytes) -> None:
        """Store a job message on its subject: a request, a control, or a reply to a request.

        The answer of a request taken here acknowledges it once stored.

        Raises:
            ValueError: A request or control names no target worker.
        """
        lane, role = message.lane, message.job_role
        headers = {MSG_ID_HEADER: message.id}
        if message.trace_context:
            headers.update(message.trace_context)
        on_stored = on_refused = None
        reply_to: str | None = None
        job: TakenJob | None = None
        if role is JobRole.REQUEST or role is JobRole.CONTROL:
            if message.target is None:
                raise ValueError(f"{type(message).__name__} needs a target worker")
            if role is JobRole.REQUEST:
                assert isinstance(message, BusJobRequestMessage)
                subject = self._layout.job_requests(message.target, message.source)
                headers[REPLY_TO_HEADER] = self._instance  # for workers before 0.2
                headers[EXPECTED_STREAM_HEADER] = self._layout.request_stream
                self._senders.sending(message)
                on_refused = partial(self._request_refused, message)
                if self._consumers is not None:
                    self._consumers.requested(message.target)
            else:
                subject = self._layout.job_control(message.target, message.source)
                headers[TTL_HEADER] = self._ttl
        else:
            headers[TTL_HEADER] = self._ttl
            job_key = (message.source, message.job_id)
            job = self._ledger.get(job_key)
            reply_to = job.reply_to if job is not None else None
            if role is JobRole.ANSWER and job is not None and not job.answer_sent:
                job.answer_sent = True  # its id, set by prepare(), names the delivery
            if not reply_to:
                # Not a job this bus took (or it already answered), or a request that named no
                # instance to answer (a producer that is not natsbus): the requester can only
                # be reached by name, on its core subject, without JetStream's guarantees.
                self._counts.unrouted_replies += 1
                target_subject = (
                    self._layout.broadcast(lane, message.source)
                    if message.target is None
                    else self._layout.targeted(lane, message.target, message.source)
                )
                await self._clients[lane].publish(
                    target_subject, data, headers=message.trace_context
                )
                if reply_to is not None and role is JobRole.ANSWER:
                    self._answered(job_key)  # answered: acknowledge the request
                return
            subject = self._layout.job_replies(reply_to, lane, message.source)
            if role is JobRole.ANSWER:
                on_stored = self._answered_callback(job_key)
        await self._outboxes[lane].put(
            OutboundJobMessage(
                subject=subject,
                data=data,
                headers=headers,
                on_stored=on_stored,
                on_refused=on_refused,
                copy=self._fast_copy(message, reply_to, job),
            )
        )

    def prepare(self, message: BusJobMessage) -> None:
        """Give a job message its final id before it is encoded.

        The answer to a request taken here is known by the delivery it answers (see
        :mod:`natsbus.bus.nats.answers`): its id is that delivery's answer id, in the envelope
        and in the stream alike, so that its fast copy and its stored copy are one message.
        """
        if message.job_role is JobRole.ANSWER:
            job = self._ledger.get((message.source, message.job_id))
            if job is not None and not job.answer_sent:
                message.id = answer_id(job.message_id, job.attempt)

    def on_fast_copy(self, message: BusMessage, subject: str) -> None:
        """A stored message's fast copy arrived on core NATS (see ``JobIntake.on_fast_copy``)."""
        self._intake.on_fast_copy(message, subject)

    def _fast_copy(
        self, message: BusMessage, reply_to: str | None, job: TakenJob | None = None
    ) -> FastCopy | None:
        """The fast copy of a stored message, if it has one (see :mod:`.copies`)."""
        if not self._options.fast_copies:
            return None
        subject = copy_subject(self._layout, message, reply_to or "")
        if subject is None:
            return None
        if message.job_role is JobRole.ANSWER and job is not None:
            # Another bus may answer this delivery once this one no longer surely holds it.
            return FastCopy(subject, message.trace_context, wanted=lambda: job.held)
        return FastCopy(subject, message.trace_context)

    async def publish_stored(self, message: BusMessage, data: bytes, subject: str) -> None:
        """Store a lifecycle message on its subject, for every bus that reads it.

        Its message id de-duplicates resends; the header naming this instance lets this bus
        skip its own message (it delivered it to its subscribers when it was sent).
        """
        # No TTL: `natsbus status` reads the workers' announcements for as long as max_age.
        headers = {MSG_ID_HEADER: message.id, SENDER_HEADER: self._instance}
        if message.trace_context:
            headers.update(message.trace_context)
        await self._outboxes[message.lane].put(
            OutboundJobMessage(
                subject=subject, data=data, headers=headers, copy=self._fast_copy(message, None)
            )
        )

    async def flush(self, timeout: float | None) -> None:
        """Wait until every job message sent so far is stored.

        Raises:
            TimeoutError: Not everything was stored within ``timeout`` seconds.
        """
        for outbox in self._outboxes.values():
            await outbox.flush(timeout)

    # --- internals ----------------------------------------------------------------------------

    def _answered_callback(self, job_key: tuple[str, str]) -> Callable[[bool], None]:
        return lambda duplicate: self._answered(job_key, duplicate=duplicate)

    def _answered(self, job_key: tuple[str, str], *, duplicate: bool = False) -> None:
        job = self._intake.answered(job_key, duplicate=duplicate)
        if job is not None and self._consumers is not None:
            self._consumers.room_made(job.worker)

    async def _was_answered(self, job: TakenJob) -> bool:
        if self._answers is None:
            raise BusClosedError("the job channel is not open")
        return await self._answers.answered(job.message_id, job.attempt, job.worker)

    def refused(self, subject: str) -> None:
        """The server refused a publish on ``subject``: give up what waits to be stored there.

        A job request given up is answered ``error`` here, to its requester, so that it still
        ends with one answer.
        """
        for outbox in self._outboxes.values():
            outbox.refuse(subject)

    def _request_refused(self, request: BusJobRequestMessage) -> None:
        response = error_answer(
            request,
            "the NATS server refused to store the request: this bus's user may not send job"
            f" requests as {request.source!r} (see `natsbus permissions`)",
        )
        self._stamp(response)
        self._deliver(response)

    def _requester(self, worker: str, job_id: str) -> str | None:
        job = self._ledger.get((worker, job_id))
        return None if job is None else job.requester

    def _store_dead_letter(self, job: TakenJob) -> None:
        """Keep a request given up after its last attempt, as it came, for ``natsbus dlq``."""
        headers = {
            MSG_ID_HEADER: f"dlq:{job.message_id}",
            DEAD_LETTER_HEADER: str(job.attempt - 1),
            REPLY_TO_HEADER: job.reply_to,
        }
        self._spawn(
            self._outboxes[Lane.DATA].put(
                OutboundJobMessage(
                    subject=self._layout.dead_letters(job.worker),
                    data=job.delivery.data,
                    headers=headers,
                )
            )
        )

    def _answer_error(self, request: BusJobRequestMessage, job: TakenJob, error: str) -> None:
        """Answer a request ``error`` on its worker's behalf, then terminate its delivery."""
        response = error_answer(request, error)
        self._stamp(response)
        response.id = answer_id(job.message_id, job.attempt)  # one id, stored or not
        data = self._codec.encode(response)
        if not job.reply_to:
            # Nowhere on JetStream to answer (see publish): the requester's core subject.
            self._counts.unrouted_replies += 1
            core = self._layout.targeted(Lane.DATA, request.source, response.source)
            self._spawn(self._clients[Lane.DATA].publish(core, data))
            self._spawn(job.delivery.term())
            return
        self._spawn(
            self._outboxes[Lane.DATA].put(
                OutboundJobMessage(
                    subject=self._layout.job_replies(job.reply_to, Lane.DATA, response.source),
                    data=data,
                    headers={MSG_ID_HEADER: response.id, TTL_HEADER: self._ttl},
                    on_stored=lambda _duplicate: self._spawn(job.delivery.term()),
                )
            )
        )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
