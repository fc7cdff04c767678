"""Stores job messages on JetStream, pipelined, and keeps trying while the server is away.

``send()`` of a job message writes it to the connection at once, with a reply subject on which
the stream acknowledges it, and returns; it does not wait for the acknowledgement, so a job's
latency is one trip to the server, not two, and many messages can be on their way at once. The
outbox remembers every message until its acknowledgement arrives, and publishes it again, with
the same ``Nats-Msg-Id``, when none came within ``ack_timeout`` (the server was away, a leader
was being elected). The stream de-duplicates on that id, so a message whose first
acknowledgement was lost is still stored once. Nothing accepted is dropped while the process
lives; :meth:`JobOutbox.flush` waits until all of it is stored.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from natsbus._lazy_event import LazyEvent
from natsbus.bus.nats.copies import FastCopy, send_copy
from natsbus.bus.nats.direct import subscribe_direct_messages, unsubscribe_direct
from natsbus.bus.nats.writes import publish_soon
from natsbus.bus.statistics import NetworkCounts
from natsbus.errors import BusClosedError
from natsbus.tasks import cancel_and_wait

__all__ = ["EXPECTED_STREAM_HEADER", "MSG_ID_HEADER", "JobOutbox", "OutboundJobMessage"]

logger = logging.getLogger(__name__)

EXPECTED_STREAM_HEADER: Final = "Nats-Expected-Stream"
MSG_ID_HEADER: Final = "Nats-Msg-Id"


@dataclass(slots=True)
class OutboundJobMessage:
    """One job message on its way to the stream.

    Attributes:
        subject: Stream subject to publish on.
        data: Encoded envelope.
        headers: NATS headers; ``Nats-Msg-Id`` is always among them.
        on_stored: Called once the stream has acknowledged the message, with True if the
            stream called it a duplicate (a message with its id was stored before).
        on_refused: Called if the server refuses the publish (the user lacks the permission):
            the message is then given up, as no resend can succeed.
        copy: Its fast copy, sent with its first publish, if it has one.
    """

    subject: str
    data: bytes
    headers: dict[str, str]
    on_stored: Callable[[bool], None] | None = None
    on_refused: Callable[[], None] | None = None
    copy: FastCopy | None = None
    attempts: int = field(default=0, init=False)
    last_sent: float = field(default=0.0, init=False)


class JobOutbox:
    """Job messages written to the stream and not yet acknowledged by it.

    Args:
        client: The connection to publish on.
        stream: The stream expected to store the messages (checked by the server), unless a
            message's headers name another.
        size: Unacknowledged messages held before ``put()`` waits for room.
        retry_interval: Seconds between two looks for messages to publish again.
        ack_timeout: Seconds without an acknowledgement after which a message is sent again.
        name: Used in the logs.
        counts: Where ``publish_retries`` is counted (the bus's counts), if anywhere.
    """

    def __init__(
        self,
        *,
        client: Client,
        stream: str,
        size: int,
        retry_interval: float,
        ack_timeout: float = 2.0,
        name: str = "jobs",
        counts: NetworkCounts | None = None,
    ) -> None:
        self._client = client
        self._stream = stream
        self._size = size
        self._retry_interval = retry_interval
        self._ack_timeout = ack_timeout
        self._name = name
        self._inbox = client.new_inbox()
        self._tokens = itertools.count()
        self._unacked: dict[str, OutboundJobMessage] = {}
        # Lazy: an idle bus's outboxes are never waited on.
        self._has_room = LazyEvent(True)
        self._empty = LazyEvent(True)
        self._subscription: Subscription | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._counts = counts if counts is not None else NetworkCounts()

    @property
    def retries(self) -> int:
        """Messages published again because no acknowledgement came in time."""
        return self._counts.publish_retries

    def __len__(self) -> int:
        return len(self._unacked)

    async def start(self) -> None:
        """Listen for acknowledgements (the retry task runs while messages wait for theirs)."""
        # Straight from the reader (no client-side queue or task): at most ``size``
        # acknowledgements are ever owed, and each is handled at once.
        self._subscription = await subscribe_direct_messages(
            self._client, f"{self._inbox}.*", self._on_ack
        )
        self._started = True
        self._keep_retrying()

    def _keep_retrying(self) -> None:
        # The retry loop runs only while messages wait for their acknowledgement: an idle
        # bus's outboxes would otherwise wake 4 times a second each, which at 5,000 sessions
        # in one process was all of its CPU.
        idle = self._retry_task is None or self._retry_task.done()
        if idle and self._unacked and self._started and not self._closed:
            self._retry_task = asyncio.create_task(
                self._retry_loop(), name=f"natsbus-outbox-{self._name}"
            )

    async def put(self, message: OutboundJobMessage) -> None:
        """Publish a message and keep it until the stream acknowledges it.

        Waits only while ``size`` messages are unacknowledged.

        Raises:
            BusClosedError: The outbox was closed.
        """
        while len(self._unacked) >= self._size and not self._closed:
            self._has_room.clear()
            await self._has_room.wait()
        if self._closed:
            raise BusClosedError("the bus is stopped; job message not accepted")
        token = str(next(self._tokens))
        # The stream the message must land in (the server checks): the outbox's own stream
        # unless the message names another (job requests go to the request stream).
        message.headers.setdefault(EXPECTED_STREAM_HEADER, self._stream)
        self._unacked[token] = message
        self._empty.clear()
        self._keep_retrying()
        await self._send(token, message)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every message put so far is stored.

        Raises:
            TimeoutError: Messages were still unacknowledged after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancel on 3.11
            await self._empty.wait()

    async def close(self, timeout: float | None = 5.0) -> int:
        """Wait up to ``timeout`` for outstanding acknowledgements, then stop.

        Returns:
            How many messages were still unacknowledged and are given up.
        """
        self._closed = True
        self._has_room.set()
        if self._unacked:
            try:
                await self.flush(timeout)
            except TimeoutError:
                logger.error(
                    "outbox %s: %d job messages not stored before close",
                    self._name,
                    len(self._unacked),
                )
        task, self._retry_task = self._retry_task, None
        if task is not None:
            await cancel_and_wait((task,))
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await unsubscribe_direct(self._client, subscription)
        return len(self._unacked)

    async def _send(self, token: str, message: OutboundJobMessage) -> None:
        message.attempts += 1
        message.last_sent = time.monotonic()
        reply = f"{self._inbox}.{token}"
        copy = message.copy if message.attempts == 1 else None
        if copy is not None and copy.wanted is not None and not copy.wanted():
            copy = None
        client = self._client
        try:
            if publish_soon(
                client,
                message.subject,
                message.data,
                reply=reply,
                headers=message.headers,
                copy_to=None if copy is None else copy.subject,
                copy_headers=None if copy is None else copy.headers,
            ):
                return
            await client.publish(
                message.subject, message.data, reply=reply, headers=message.headers
            )
        except Exception as error:  # disconnected with a full buffer: the retry loop resends
            logger.debug("outbox %s: publish failed (%s)", self._name, error)
            return
        if copy is not None:
            await send_copy(client, copy, message.data)

    def _on_ack(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        message = self._unacked.get(token)
        if message is None:
            return  # the acknowledgement of a message already stored (a resend's twin)
        if msg.headers and msg.headers.get("Status"):
            # 503 no responders: no stream leader (an election) or no JetStream yet (the
            # server is starting): resend at the next retry tick, not after ack_timeout.
            self._resend_soon(message)
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            reply = {"error": {"description": repr(msg.data[:100])}}
        if "error" in reply:
            # Stream unavailable, leader election...: resend later, with the same id.
            logger.warning(
                "outbox %s: stream refused a job message on %s: %s",
                self._name,
                message.subject,
                reply["error"].get("description", reply["error"]),
            )
            self._resend_soon(message)
            return
        del self._unacked[token]
        self._has_room.set()
        if not self._unacked:
            self._empty.set()
        if message.on_stored is not None:
            try:
                message.on_stored(bool(reply.get("duplicate", False)))
            except Exception:  # a failing callback must not stop later acknowledgements
                logger.exception("outbox %s: on_stored callback failed", self._name)

    def refuse(self, subject: str) -> int:
        """Give up the messages on ``subject``: the server refused to let this user publish there.

        The subject is compared without case (nats-py reports refusals in lowercase).

        Returns:
            How many messages were given up.
        """
        refused = subject.lower()
        tokens = [t for t, m in self._unacked.items() if m.subject.lower() == refused]
        for token in tokens:
            message = self._unacked.pop(token)
            if message.on_refused is not None:
                try:
                    message.on_refused()
                except Exception:
                    logger.exception("outbox %s: on_refused callback failed", self._name)
        if tokens:
            self._has_room.set()
            if not self._unacked:
                self._empty.set()
        return len(tokens)

    def _resend_soon(self, message: OutboundJobMessage) -> None:
        message.last_sent = time.monotonic() - self._ack_timeout

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self._retry_interval)
            if not self._unacked:
                # All stored: the next put starts the loop again. Not kept once done: a
                # finished task and its coroutine, per outbox of every idle bus (issue #17).
                self._retry_task = None
                return
            deadline = time.monotonic() - self._ack_timeout
            for token, message in list(self._unacked.items()):
                if message.last_sent <= deadline and self._client.is_connected:
                    self._counts.publish_retries += 1
                    if message.attempts == 1 or message.attempts % 20 == 0:
                        logger.warning(
                            "outbox %s: no acknowledgement for a job message on %s after "
                            "%d attempts; publishing it again",
                            self._name,
                            message.subject,
                            message.attempts,
                        )
                    await self._send(token, message)
