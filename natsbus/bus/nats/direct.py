"""Messages handed from the connection's reader straight to their bus, with no queue between.

nats-py gives each subscription with a callback an asyncio queue and a task: every message
is built into a ``Msg`` (its headers parsed), queued, taken by the task and passed to a new
coroutine. For a bus that decodes a message and puts it on its subscribers' lanes at once,
that is most of the client's cost per message, and a task per subscription is most of an
idle session's memory. A direct subscription has neither: the connection's reader
(:mod:`natsbus.bus.nats.reader`, or nats-py's parser through its message handler) calls the
bus's function with the subject and the payload as it reads, yielding to the loop every
time slice.

What bounds memory then is the bus's own lanes (a full data lane drops its oldest), and a
reader that falls behind leaves the bytes in the socket and the server's buffer for the
connection, instead of in a client-side queue.

JetStream deliveries and the server's acknowledgements of stored messages need their reply
subject and headers: :func:`subscribe_direct_messages` hands those on as nats-py's ``Msg``
(headers parsed by :func:`natsbus.bus.nats.headers.parse_headers`), still with no queue and
no task between. On a job's round trip that is four messages (the request's delivery, the
answer's stored copy, two acknowledgements), each a loop turn and a header parse less.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from natsbus.bus.nats.headers import parse_headers

__all__ = [
    "DirectHandler",
    "DirectRoutes",
    "MessageHandler",
    "direct_routes",
    "subscribe_direct",
    "subscribe_direct_messages",
    "unsubscribe_direct",
]

logger = logging.getLogger(__name__)

DirectHandler = Callable[[str, bytes], None]
"""Called with the subject and the payload of every message of a direct subscription."""

MessageHandler = Callable[[Msg], None]
"""Called with every message of a direct message subscription, reply subject and headers kept."""

_ROUTES = "_natsbus_direct_routes"


class DirectRoutes:
    """The direct handlers of one client by subscription id: payload-only, or whole messages.

    :func:`natsbus.bus.nats.reader.read_frames` hands the frames of these subscriptions here
    without nats-py's parser; nats-py's own message handler is hooked too, for clients read
    the ordinary way (and what arrives before the reader is installed).
    """

    __slots__ = ("_client", "_stats", "messages", "payloads")

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stats = client.stats
        self.payloads: dict[int, DirectHandler] = {}
        self.messages: dict[int, MessageHandler] = {}

    def deliver(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> bool:
        """Hand one message to its direct handler; False if ``sid`` is not a direct one."""
        handler = self.payloads.get(sid)
        if handler is not None:
            stats = self._stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            try:
                handler(subject.decode(), data)
            except Exception:  # a handler's bug must not stop the connection's reader
                logger.exception("handling a message on %r failed", subject)
            return True
        on_message = self.messages.get(sid)
        if on_message is None:  # a subscription of nats-py's own (JetStream API requests)
            return False
        stats = self._stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            parsed = parse_headers(headers) if headers else None
            on_message(Msg(self._client, subject.decode(), reply.decode(), data, parsed))
        except Exception:
            logger.exception("handling a message on %r failed", subject)
        return True

    def pop(self, sid: int) -> None:
        """Forget subscription ``sid`` (unsubscribed)."""
        self.payloads.pop(sid, None)
        self.messages.pop(sid, None)


def direct_routes(client: Client) -> DirectRoutes:
    """The direct handlers of ``client``, installing the hook on its message handler once."""
    routes: DirectRoutes | None = getattr(client, _ROUTES, None)
    if routes is not None:
        return routes
    found = DirectRoutes(client)
    deliver = found.deliver
    queued = client._process_msg

    async def process_msg(
        sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        if not deliver(sid, subject, reply, data, headers):
            await queued(sid, subject, reply, data, headers)

    any_client: Any = client  # nats-py calls it through the instance: this replaces it there
    any_client._process_msg = process_msg
    setattr(client, _ROUTES, found)
    return found


async def subscribe_direct(client: Client, subject: str, handler: DirectHandler) -> Subscription:
    """Subscribe ``handler`` to ``subject``, called from the client's reader for each message.

    ``handler`` must not block: it runs inside the connection's read loop.
    """
    routes = direct_routes(client)
    subscription = await client.subscribe(subject)  # no callback: no queue reader, no task
    routes.payloads[subscription._id] = handler
    # nats-py awaits the write of the SUB after registering the subscription: what arrived
    # for it meanwhile went to its (unread) queue. Hand it on, in order.
    for msg in _queued_before(subscription):
        handler(msg.subject, msg.data)
    return _spend_queue(subscription)


async def subscribe_direct_messages(
    client: Client, subject: str, handler: MessageHandler
) -> Subscription:
    """Subscribe ``handler`` to ``subject``, called with each whole message from the reader.

    For messages whose reply subject or headers matter: JetStream deliveries (acknowledged
    through their reply subject, statuses in their headers) and the server's answers to
    publishes. ``handler`` must not block: it runs inside the connection's read loop.
    """
    routes = direct_routes(client)
    subscription = await client.subscribe(subject)
    routes.messages[subscription._id] = handler
    for msg in _queued_before(subscription):
        handler(msg)
    return _spend_queue(subscription)


def _queued_before(subscription: Subscription) -> list[Msg]:
    """What nats-py queued for a subscription before its direct handler was in place."""
    queue = subscription._pending_queue
    taken: list[Msg] = []
    while not queue.empty():
        taken.append(queue.get_nowait())
    return taken


def _spend_queue(subscription: Subscription) -> Subscription:
    # From now on nats-py's queue and message iterator are never used (the handler above
    # takes every message): let them go, about 3 KiB of a subscription's 4 (five per session).
    any_subscription: Any = subscription
    any_subscription._pending_queue = _SPENT
    any_subscription._message_iterator = None
    return subscription


class _SpentQueue:
    """What a direct subscription's queue is replaced with: always empty, takes nothing.

    nats-py still asks it whether it is empty (unsubscribe), how long it is (``pending_msgs``)
    and waits for it to drain (``drain``). Nothing is ever put in it, since the direct handler
    takes every message of the subscription until it is removed, and nats-py removes the
    subscription first; were something put anyway, it is dropped and logged.
    """

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def put_nowait(self, msg: Any) -> None:
        logger.warning("a message for a direct subscription reached its queue: dropped")

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        pass


_SPENT: Final = _SpentQueue()


async def unsubscribe_direct(client: Client, subscription: Subscription) -> None:
    """Stop a direct subscription (also when its connection is closed)."""
    direct_routes(client).pop(subscription._id)
    try:
        await subscription.unsubscribe()
    except Exception:  # the connection is closed: the subscription went with it
        logger.debug("unsubscribe failed", exc_info=True)
