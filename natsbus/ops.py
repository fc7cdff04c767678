"""What an operator asks of a deployment, read from JetStream: ``natsbus status|jobs|dlq``.

Everything here reads the server's state, not the processes': the request stream and its
consumers say which jobs wait and which are running, the job stream keeps the requests given
up after their last attempt (``<root>.dlq.<worker>``, stored by the bus that gave up) and the
lifecycle messages the runners announced their workers with. So the answers hold while
workers are down, and need nothing from them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass
from typing import Any, Final

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from natsbus.bus.nats.intake import MSG_ID_HEADER, REPLY_TO_HEADER
from natsbus.bus.nats.jobs import DEAD_LETTER_HEADER
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.subjects import decode_token
from natsbus.codec import Codec
from natsbus.errors import DecodeError
from natsbus.messages import BusJobRequestMessage, BusWorkerReadyMessage, BusWorkerRegistryMessage

__all__ = [
    "DeadLetter",
    "WorkerJobs",
    "WorkerStatus",
    "as_json",
    "dead_letter",
    "dead_letters",
    "fleet_status",
    "job_backlog",
    "replay",
]

_MAX_LISTED: Final = 10_000
"""Dead letters listed at most in one call."""


@dataclass(frozen=True)
class WorkerJobs:
    """The job requests of one worker, as the server holds them.

    Attributes:
        worker: The worker's name.
        stored: Requests in the stream not answered yet (waiting or running).
        waiting: Requests no bus has taken yet; None when the worker has no consumer (no
            bus hosted it in the last hour): then every stored request waits.
        running: Requests taken and not answered (delivered, not acknowledged).
        redelivered: Requests running now that were delivered more than once (a bus died
            or was too slow while holding them).
        oldest_age: Seconds since the oldest stored request was sent, or None.
        dead_lettered: Requests given up after their last attempt, kept for ``dlq``.
    """

    worker: str
    stored: int
    waiting: int | None
    running: int
    redelivered: int
    oldest_age: float | None
    dead_lettered: int


@dataclass(frozen=True)
class DeadLetter:
    """A job request given up after its last attempt.

    Attributes:
        sequence: Its sequence in the job stream (what ``show`` and ``replay`` take).
        worker: The worker it was for.
        request: The request as it was sent.
        deliveries: How many times it was delivered.
        stored_at: When it was given up.
    """

    sequence: int
    worker: str
    request: BusJobRequestMessage
    deliveries: int
    stored_at: datetime.datetime

    def describe(self) -> dict[str, Any]:
        """Its fields as plain values (for ``--json`` and ``show``)."""
        request = self.request
        return {
            "sequence": self.sequence,
            "worker": self.worker,
            "job_id": request.job_id,
            "job_name": request.job_name,
            "requester": request.source,
            "deliveries": self.deliveries,
            "stored_at": self.stored_at.isoformat(),
            "payload": request.payload,
        }


async def job_backlog(
    js: JetStreamContext, layout: SubjectLayout, *, now: datetime.datetime | None = None
) -> list[WorkerJobs]:
    """The job requests of every worker of ``layout``'s channel, sorted by worker.

    Workers appear that have requests stored, a consumer, or dead letters.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    requests = await _subject_counts(js, layout.request_stream, f"{layout.root}.job.req.>")
    stored: dict[str, int] = {}
    for subject, count in requests.items():
        worker = _token(subject, from_end=1)
        stored[worker] = stored.get(worker, 0) + count
    dead = await _subject_counts(js, layout.stream, layout.dead_letters())
    dead_by_worker = {_token(subject, from_end=0): count for subject, count in dead.items()}
    consumers = await _request_consumers(js, layout)
    rows = []
    for worker in sorted(set(stored) | set(consumers) | set(dead_by_worker)):
        info = consumers.get(worker)
        count = stored.get(worker, 0)
        oldest = None
        if count:
            oldest = await _oldest(js, layout.request_stream, layout.job_requests(worker))
        rows.append(
            WorkerJobs(
                worker=worker,
                stored=count,
                waiting=None if info is None else info.num_pending,
                running=0 if info is None else info.num_ack_pending or 0,
                redelivered=0 if info is None else info.num_redelivered or 0,
                oldest_age=None if oldest is None else (now - oldest).total_seconds(),
                dead_lettered=dead_by_worker.get(worker, 0),
            )
        )
    return rows


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as its runner last announced it, and what the server sees of it now.

    Attributes:
        worker: The worker's name.
        runner: The runner that announced it (a pod's name, with ``natsbus run``).
        parent: Its parent worker, or None for a root worker.
        active: Whether it was active when last announced.
        bridged: Whether it is bridged onto a pipeline.
        ready_since: When it became ready, if it said.
        pulling: Pull requests waiting at the server for its jobs: one or more for each live
            bus hosting it and taking jobs now; None when it has no request consumer.
        running: Its jobs taken and not answered.
    """

    worker: str
    runner: str
    parent: str | None
    active: bool
    bridged: bool
    ready_since: datetime.datetime | None
    pulling: int | None
    running: int


async def fleet_status(
    js: JetStreamContext, layout: SubjectLayout, *, codec: Codec | None = None
) -> list[WorkerStatus]:
    """The workers of ``layout``'s channel, by runner, as announced in the last 24 hours.

    Read from the lifecycle messages the job stream keeps (registry snapshots and ready
    announcements): a runner that died keeps its last announcement, so :attr:`pulling` is
    what tells a worker still served.
    """
    codec = codec or Codec()
    announced: dict[tuple[str, str], WorkerStatus] = {}
    for message in await _lifecycle(js, layout, codec):
        entries: list[tuple[str, str, str | None, bool, bool, float | None]] = []
        if isinstance(message, BusWorkerRegistryMessage):
            for gone in [key for key in announced if key[0] == message.runner]:
                del announced[gone]  # a snapshot is the whole of its runner's workers
            entries = [
                (message.runner, e.name, e.parent, e.active, e.bridged, e.started_at)
                for e in message.workers
            ]
        elif isinstance(message, BusWorkerReadyMessage):
            entries = [
                (
                    message.runner,
                    message.source,
                    message.parent,
                    message.active,
                    message.bridged,
                    message.started_at,
                )
            ]
        for runner, worker, parent, active, bridged, started_at in entries:
            announced[(runner, worker)] = WorkerStatus(
                worker, runner, parent, active, bridged, _when(started_at), None, 0
            )
    live = await _request_consumers(js, layout)
    rows = []
    for (_, worker), status in sorted(announced.items(), key=lambda item: item[0][::-1]):
        info = live.get(worker)
        rows.append(
            dataclasses.replace(
                status,
                pulling=None if info is None else info.num_waiting or 0,
                running=0 if info is None else info.num_ack_pending or 0,
            )
        )
    return rows


async def dead_letters(
    js: JetStreamContext, layout: SubjectLayout, *, codec: Codec | None = None
) -> list[DeadLetter]:
    """The requests given up in ``layout``'s channel, oldest first (at most 10,000)."""
    codec = codec or Codec()
    found: list[DeadLetter] = []
    sequence = 1
    while len(found) < _MAX_LISTED:
        try:
            raw = await js.get_msg(layout.stream, sequence, layout.dead_letters(), next=True)
        except NotFoundError:
            break
        assert raw.seq is not None
        found.append(_dead_letter(raw, codec))
        sequence = raw.seq + 1
    return found


async def dead_letter(
    js: JetStreamContext, layout: SubjectLayout, sequence: int, *, codec: Codec | None = None
) -> DeadLetter:
    """One dead letter of ``layout``'s channel, by its sequence.

    Raises:
        LookupError: No dead letter of this channel has that sequence.
    """
    try:
        raw = await js.get_msg(layout.stream, sequence)
    except NotFoundError:
        raw = None
    if raw is None or not (raw.subject or "").startswith(layout.dead_letters()[:-1]):
        raise LookupError(f"no dead letter of channel {layout.channel!r} at sequence {sequence}")
    return _dead_letter(raw, codec or Codec())


async def replay(
    js: JetStreamContext, layout: SubjectLayout, sequence: int, *, codec: Codec | None = None
) -> DeadLetter:
    """Send a dead-lettered request again, as it was, and remove it from the dead letters.

    It goes to its worker's request stream with a fresh de-duplication id (the old one was
    answered ``error``); its answers go to the instance that asked, if it still listens.

    Raises:
        LookupError: No dead letter of this channel has that sequence.
    """
    letter = await dead_letter(js, layout, sequence, codec=codec)
    raw = await js.get_msg(layout.stream, sequence)
    headers = {
        MSG_ID_HEADER: f"replay:{sequence}:{letter.request.id}",
        REPLY_TO_HEADER: (raw.headers or {}).get(REPLY_TO_HEADER, ""),
    }
    await js.publish(
        layout.job_requests(letter.worker, letter.request.source),
        raw.data or b"",
        headers=headers,
        stream=layout.request_stream,
    )
    await js.delete_msg(layout.stream, sequence)
    return letter


def as_json(rows: list[WorkerJobs] | list[DeadLetter] | list[WorkerStatus]) -> str:
    """Rows as a JSON array (``--json``)."""
    return json.dumps(
        [row.describe() if isinstance(row, DeadLetter) else row.__dict__ for row in rows],
        indent=2,
        default=str,
    )


# --- internals --------------------------------------------------------------------------------


def _token(subject: str, *, from_end: int) -> str:
    """The name in the token ``from_end`` places before a subject's last one."""
    return decode_token(subject.split(".")[-1 - from_end])


async def _request_consumers(
    js: JetStreamContext, layout: SubjectLayout
) -> dict[str, ConsumerInfo]:
    """The request consumers of ``layout``'s channel, by worker."""
    consumers: dict[str, ConsumerInfo] = {}
    prefix = f"{layout.root}.job.req."
    try:
        found = await js.consumers_info(layout.request_stream)
    except NotFoundError:
        return consumers
    for consumer in found:
        subject = consumer.config.filter_subject or ""  # <root>.job.req.<W>.*
        if subject.startswith(prefix) and subject.count(".") == prefix.count(".") + 1:
            consumers[_token(subject, from_end=1)] = consumer
    return consumers


async def _lifecycle(js: JetStreamContext, layout: SubjectLayout, codec: Codec) -> list[Any]:
    """Every broadcast lifecycle message the job stream keeps for the channel, in order."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=5.0,
    )
    reader = await js.pull_subscribe(
        f"{layout.root}.life.*.all.*", stream=layout.stream, config=config
    )
    messages: list[Any] = []
    try:
        while True:
            try:
                batch = await reader.fetch(500, timeout=0.5)
            except NatsTimeoutError:
                break
            for msg in batch:
                try:
                    messages.append(codec.decode(msg.data))
                except DecodeError:
                    continue  # not natsbus's, or a newer type: nothing to show
    finally:
        await reader.unsubscribe()
    return messages


def _when(timestamp: float | None) -> datetime.datetime | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


async def _subject_counts(js: JetStreamContext, stream: str, subjects: str) -> dict[str, int]:
    try:
        info = await js.stream_info(stream, subjects_filter=subjects)
    except NotFoundError:
        return {}
    return dict(info.state.subjects or {})


async def _oldest(js: JetStreamContext, stream: str, subject: str) -> datetime.datetime | None:
    try:
        raw = await js.get_msg(stream, 1, subject, next=True)
    except NotFoundError:
        return None
    return raw.time


def _dead_letter(raw: Any, codec: Codec) -> DeadLetter:
    request = codec.decode(raw.data or b"")
    if not isinstance(request, BusJobRequestMessage):
        raise ValueError(f"message {raw.seq} on {raw.subject} is not a job request")
    headers = raw.headers or {}
    return DeadLetter(
        sequence=raw.seq,
        worker=_token(raw.subject, from_end=0),
        request=request,
        deliveries=int(headers.get(DEAD_LETTER_HEADER, "0") or 0),
        stored_at=raw.time or datetime.datetime.now(datetime.UTC),
    )
