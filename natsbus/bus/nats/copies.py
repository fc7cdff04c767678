"""Fast copies: stored messages also travel on core NATS, and the first copy to arrive wins.

JetStream makes a message durable, but reading it back through a consumer costs its reader a
store and a pull on the way: a cancel behind a busy stream, or a job's answer, waits for
them. So every stored message whose readers listen on core NATS anyway is sent twice, by the
bus that stores it: stored first, then a **fast copy** on a core subject its readers already
subscribe to:

* a lifecycle message (activate, end, cancel, ready...) on the core subject of its target
  (or the broadcast one), under the same sender token;
* a job control (a cancel, an update request) on the core subject of the worker it targets;
* an update, a stream chunk or an answer on ``<root>.rsp.<I>.<lane>.<S>``, the core subject
  of the bus instance that asked (:meth:`SubjectLayout.reply_copies
  <natsbus.bus.nats.layout.SubjectLayout.reply_copies>`).

The receiver delivers whichever copy arrives first and drops the other by message id (the
envelope's, which for an answer is its stored id: see :mod:`natsbus.bus.nats.answers`); the
stored copy is acknowledged either way. Nothing else changes: the stored copy is still what
redelivers, acknowledges a request and survives an outage; the fast copy only arrives sooner.
A copy is sent only while the connection is up (one buffered through an outage would arrive
after the stored one and be dropped), and the copies of one sender arrive in the order they
were sent, as core messages do.

Job requests have none: exactly one of the buses hosting a worker takes each request, which
only the stream can decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import Error as NatsError

from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.senders import sender_name
from natsbus.bus.nats.writes import publish_soon
from natsbus.messages import BusMessage, JobRole

__all__ = ["FastCopy", "copy_subject", "send_copy"]

logger = logging.getLogger("natsbus.bus.nats")


def copy_subject(layout: SubjectLayout, message: BusMessage, reply_to: str = "") -> str | None:
    """The core subject of a stored message's fast copy, or None if it has none.

    Args:
        layout: The sending bus's subjects.
        message: The message being stored.
        reply_to: For a reply, the instance it is stored for.
    """
    role, lane = message.job_role, message.lane
    if role is None:  # a lifecycle message
        if message.target is None:
            return layout.broadcast(lane, sender_name(message))
        return layout.targeted(lane, message.target, sender_name(message))
    if role is JobRole.CONTROL and message.target is not None:
        return layout.targeted(lane, message.target, message.source)
    if role is not JobRole.REQUEST and reply_to:
        return layout.reply_copies(reply_to, lane, message.source)
    return None


@dataclass(frozen=True, slots=True)
class FastCopy:
    """The fast copy of a stored message, sent right after its first publish, in one write.

    The outbox sends it (:class:`~natsbus.bus.nats.outbox.OutboundJobMessage`), so that a
    publish written at once takes its copy with it. A resend has none: by then the stored
    copy is on its way.

    Attributes:
        subject: The core subject (:func:`copy_subject`).
        headers: Its NATS headers (the trace context), if any.
        wanted: Asked just before it is sent; False drops it. An answer's copy is dropped once
            the bus no longer surely holds the delivery it answers: that delivery may have
            gone to another replica, and only the stored answer may reach the requester.
    """

    subject: str
    headers: dict[str, str] | None = None
    wanted: Callable[[], bool] | None = None


async def send_copy(client: Client, copy: FastCopy, data: bytes) -> None:
    """Publish a fast copy if the connection is up; never raises (the stored copy suffices)."""
    if not client.is_connected:
        return
    try:
        if not publish_soon(client, copy.subject, data, headers=copy.headers):
            await client.publish(copy.subject, data, headers=copy.headers)
    except NatsError:  # closing, or the buffer is full: the stored copy is on its way
        logger.debug("fast copy on %s not sent", copy.subject, exc_info=True)
