"""Where a NatsBus puts each message: subjects, the job streams and their consumers.

One channel is one namespace; every subject starts with ``<prefix>.<channel>`` and ends with
the **sender token** ``<S>``, the escaped ``source`` of the message::

    <prefix>.<C>.sys.all.<S>              core NATS, system lane, broadcasts
    <prefix>.<C>.sys.to.<W>.<S>           core NATS, system lane, targeted at worker W
    <prefix>.<C>.data.all.<S>             core NATS, data lane, broadcasts
    <prefix>.<C>.data.to.<W>.<S>          core NATS, data lane, targeted at worker W
    <prefix>.<C>.job.req.<W>.<S>          JetStream (request stream): job requests for W, one
                                          consumer shared by every bus hosting W
    <prefix>.<C>.job.ctl.<W>.<S>          JetStream (job stream): cancels and update requests
                                          for W's jobs, seen by every bus that hosts W
    <prefix>.<C>.job.rsp.<I>.sys.<S>      JetStream (job stream): urgent responses/updates for
                                          bus instance I
    <prefix>.<C>.job.rsp.<I>.data.<S>     JetStream (job stream): responses, updates, stream
                                          chunks for I
    <prefix>.<C>.job.rsp.<I>.claim.<S>    JetStream (job stream): claims of I on redelivered
                                          requests (read by no consumer; see answers.py)
    <prefix>.<C>.rsp.<I>.<lane>.<S>       core NATS: the fast copies of the replies stored for
                                          instance I (see natsbus.bus.nats.copies)
    <prefix>.<C>.dlq.<W>                  JetStream (job stream): W's dead-lettered requests
                                          (stored by the bus that gave up; W is the sender)
    <prefix>.<C>.life.<lane>.all.<S>      JetStream (job stream): lifecycle messages (activate,
    <prefix>.<C>.life.<lane>.to.<W>.<S>   end, cancel, ready, error, registry), broadcast or
                                          for W, read by the instance consumers of every bus
                                          that listens for them

The sender token is what makes ``source`` unforgeable: the permissions ``natsbus
permissions`` generates let a NATS user publish only under the tokens of the names it hosts,
and a bus drops (and counts as ``forged_source``) a message whose ``source`` is not the token
it came under (:func:`sent_by`). Listening subjects put ``*`` in its place.

Requests live in a work-queue stream of their own (``<stream>_REQUESTS``): a request leaves it
once answered, so a consumer that expired while no bus hosted its worker can be made again
without handing out what was already done.

``<C>``, ``<W>`` and ``<S>`` are names escaped by
:func:`~natsbus.bus.nats.subjects.encode_token`, so any worker name works (dots, spaces, ``*``,
``>`` and non-ASCII included). ``<I>`` is the random id of one bus instance: replies reach the
instance that asked even when several instances share a worker name. The buses of one shared
connection pair share its ``<I>`` (one bus per channel on a pair, so channel and ``<I>`` name
one bus), and the pair reads for all of them through two consumers: see
:mod:`natsbus.bus.nats.routed`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from natsbus.bus.nats.subjects import encode_token
from natsbus.messages import Lane

__all__ = ["ANY_SENDER", "DEFAULT_PREFIX", "SubjectLayout", "sent_by"]

DEFAULT_PREFIX: Final = "natsbus"

ANY_SENDER: Final = "*"
"""The sender token of a listening subject: messages from anyone."""

_TOKENS: Final = {Lane.SYSTEM: "sys", Lane.DATA: "data"}
"""Each lane's token in subjects and consumer names (short, and stable across releases)."""


def _consumer_safe(text: str) -> str:
    """Make a JetStream consumer name part: no ``.``, ``*``, ``>``, spaces or slashes."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _sender(sender: str | None) -> str:
    return ANY_SENDER if sender is None else encode_token(sender)


def sent_by(subject: str, source: str) -> bool:
    """Whether ``subject`` ends with the sender token of ``source`` (the receiver's check).

    Args:
        subject: The subject a message arrived on.
        source: The ``source`` the message claims.
    """
    token = encode_token(source)  # cached: sources repeat
    return subject.endswith(token) and subject[-len(token) - 1] == "."


@dataclass(frozen=True)
class SubjectLayout:
    """The subjects and JetStream names of one channel.

    Args:
        channel: The channel name (any text; escaped into one subject token).
        prefix: First subject token, shared by every channel of one deployment.
        stream: Name of the JetStream stream that stores job controls and replies; job
            requests go to :attr:`request_stream`.
    """

    channel: str
    prefix: str = DEFAULT_PREFIX
    stream: str = "NATSBUS_JOBS"

    @cached_property
    def root(self) -> str:
        """``<prefix>.<channel token>``, the start of every subject of this channel."""
        return f"{self.prefix}.{encode_token(self.channel)}"

    # Every subject below ends with the token of ``sender``: give the message's source to
    # publish, or None for the subject to listen on (any sender).

    @cached_property
    def inbox_prefix(self) -> str:
        """``_INBOX.<prefix>.<channel token>``: the inbox prefix of this channel's buses.

        The server sends a bus's JetStream answers and pulled messages to its inboxes, so a
        user allowed to read every inbox (``_INBOX.>``) would read everyone's; the permissions
        ``natsbus permissions`` generates allow only this prefix.
        """
        return f"_INBOX.{self.root}"

    def broadcast(self, lane: Lane, sender: str | None = None) -> str:
        """Subject of broadcasts on one lane."""
        return f"{self.root}.{_TOKENS[lane]}.all.{_sender(sender)}"

    def targeted(self, lane: Lane, target: str, sender: str | None = None) -> str:
        """Subject of core messages for one worker on one lane."""
        return f"{self.root}.{_TOKENS[lane]}.to.{encode_token(target)}.{_sender(sender)}"

    def everything(self, lane: Lane) -> str:
        """Wildcard matching every core message of one lane (for observers)."""
        return f"{self.root}.{_TOKENS[lane]}.>"

    def job_requests(self, worker: str, sender: str | None = None) -> str:
        """Subject of job requests for one worker."""
        return f"{self.root}.job.req.{encode_token(worker)}.{_sender(sender)}"

    def job_control(self, worker: str, sender: str | None = None) -> str:
        """Subject of cancels and update requests for one worker's jobs."""
        return f"{self.root}.job.ctl.{encode_token(worker)}.{_sender(sender)}"

    def job_replies(self, instance: str, lane: Lane, sender: str | None = None) -> str:
        """Subject of job responses, updates and stream chunks for one bus instance."""
        return f"{self.root}.job.rsp.{instance}.{_TOKENS[lane]}.{_sender(sender)}"

    def reply_copies(self, instance: str, lane: Lane, sender: str | None = None) -> str:
        """Core subject of the fast copies of the replies stored for one bus instance.

        Outside ``<root>.<lane>.>``, so that an observer reading every core message of the
        channel does not receive other instances' replies.
        """
        return f"{self.root}.rsp.{instance}.{_TOKENS[lane]}.{_sender(sender)}"

    def job_claims(self, instance: str, sender: str | None = None) -> str:
        """Subject of the claims one bus instance stores (see :mod:`natsbus.bus.nats.answers`).

        In the job stream, so that they share its de-duplication with the answers, and read
        by no consumer. The sender is the worker whose request is claimed.
        """
        return f"{self.root}.job.rsp.{instance}.claim.{_sender(sender)}"

    def lifecycle(self, lane: Lane, target: str | None, sender: str | None = None) -> str:
        """Subject of lifecycle messages (stored: see ``BusMessage.durable``) on one lane.

        In the job stream; every bus reads those of its targets through its instance
        consumer of that lane.
        """
        if target is None:
            return f"{self.root}.life.{_TOKENS[lane]}.all.{_sender(sender)}"
        return f"{self.root}.life.{_TOKENS[lane]}.to.{encode_token(target)}.{_sender(sender)}"

    def lifecycle_everything(self, lane: Lane) -> str:
        """Wildcard matching every lifecycle message of one lane (for observers)."""
        return f"{self.root}.life.{_TOKENS[lane]}.>"

    def dead_letters(self, worker: str | None = None) -> str:
        """Subject of the requests for ``worker`` given up after their last attempt.

        In the job stream, under the worker's own token (the bus hosting it stores them);
        None: every worker's (for ``natsbus dlq``).
        """
        return f"{self.root}.dlq.{_sender(worker)}"

    @property
    def request_stream(self) -> str:
        """Name of the work-queue stream that stores job requests: ``<stream>_REQUESTS``."""
        return f"{self.stream}_REQUESTS"

    @staticmethod
    def pair_instance_subjects(prefix: str, instance: str, lane: Lane) -> list[str]:
        """What a shared pair's instance consumer of ``lane`` reads, for every channel.

        The replies to the pair's instance, the controls of every worker (system lane) and
        every lifecycle message of the lane (see :mod:`natsbus.bus.nats.routed`).
        """
        token = _TOKENS[lane]
        subjects = [f"{prefix}.*.job.rsp.{instance}.{token}.*"]
        if lane is Lane.SYSTEM:
            subjects.append(f"{prefix}.*.job.ctl.*.*")
        subjects.append(f"{prefix}.*.life.{token}.>")
        return subjects

    @staticmethod
    def stream_subjects(prefix: str = DEFAULT_PREFIX) -> list[str]:
        """Subjects the job stream captures: job controls, replies and lifecycle messages."""
        return [
            f"{prefix}.*.job.ctl.*.*",
            f"{prefix}.*.job.rsp.*.*.*",
            f"{prefix}.*.life.>",
            f"{prefix}.*.dlq.*",
        ]

    @staticmethod
    def request_stream_subjects(prefix: str = DEFAULT_PREFIX) -> list[str]:
        """Subjects the request stream captures: job requests of every channel."""
        return [f"{prefix}.*.job.req.*.*"]

    def job_consumer(self, worker: str) -> str:
        """Durable consumer shared by every bus hosting ``worker`` in this channel.

        The readable part helps operators (and KEDA's scaler) find it; the hash keeps two
        names that escape alike apart and the whole name within JetStream's limits.
        """
        digest = hashlib.sha256(f"{self.prefix}\0{self.channel}\0{worker}".encode()).hexdigest()
        readable = _consumer_safe(f"{self.channel}_{worker}")[:48]
        return f"jobs_{readable}_{digest[:12]}"

    def instance_consumer(self, instance: str, lane: Lane) -> str:
        """Consumer of one bus instance on one lane.

        It reads the instance's replies on that lane, and on the system lane the controls of
        every worker the instance hosts.
        """
        return f"inst_{instance}_{_TOKENS[lane]}"
