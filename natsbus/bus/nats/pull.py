"""A continuous pull from one JetStream consumer, with bounded credit.

nats-py's ``fetch()`` asks, waits, returns a batch and asks again; a job that arrives between
two batches waits a whole round trip. :class:`PullLoop` keeps one pull request outstanding on
its own inbox instead, so the server hands a message over as soon as it is stored, and it asks
only for as many messages as its owner has room for (``capacity``), which is how a bus bounds
the jobs it runs at once. A pull that fails (the consumer has no leader during an election, or
is gone) is asked again after a backoff, and the consumer is made again if it went away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from natsbus.bus.nats.direct import subscribe_direct_messages, unsubscribe_direct
from natsbus.tasks import cancel_and_wait

__all__ = ["PullLoop"]

logger = logging.getLogger(__name__)

_STATUS: Final = "Status"
_HEARTBEAT: Final = "100"
# 404 no messages, 408 request expired, 409 limits or leadership change: ask again.
_REQUEST_OVER: Final = frozenset({"404", "408", "409"})
_HEARTBEAT_INTERVAL: Final = 1.0
"""Seconds between the server's heartbeats on a pending pull request. Two missed in a row mean
the request died with the node that held it (a consumer leader killed, say): the loop asks
again at once rather than waiting for the request to expire. A new leader takes nats-server
4 to 9 s to elect, so noticing within 2.25 s costs nothing, and an idle loop costs the server
and the client one message a second."""
_FIRST_BACKOFF: Final = 0.1
"""Seconds before asking again after an unexpected status (503: the consumer has no leader
while a cluster elects one, say); doubled on each one in a row, up to :data:`_MAX_BACKOFF`."""
_MAX_BACKOFF: Final = 0.5
"""At most this long between two asks while a consumer answers with errors: an election
takes nats-server 4 to 9 s, and the loop must not be asleep when it ends (one ask every half
second costs the server nothing)."""


class PullLoop:
    """Keeps a pull request outstanding on a consumer and hands each message to a callback.

    Args:
        client: The connection the consumer's messages arrive on.
        stream: Stream name.
        consumer: Consumer name.
        on_message: Called (synchronously, in order) for every JetStream message.
        capacity: Returns how many more messages the owner can take right now.
        ensure_consumer: Makes the consumer again if the server lost it; called when a pull
            goes unanswered or fails (a consumer that expired answers like a missing one).
        expires: Seconds a pull request lives on the server before it is renewed.
    """

    def __init__(
        self,
        *,
        client: Client,
        stream: str,
        consumer: str,
        on_message: Callable[[Msg], None],
        capacity: Callable[[], int],
        ensure_consumer: Callable[[], Awaitable[Any]],
        expires: float = 5.0,
    ) -> None:
        self._client = client
        self._stream = stream
        self._consumer = consumer
        self._on_message = on_message
        self._capacity = capacity
        self._ensure_consumer = ensure_consumer
        self._expires = expires
        # The server refuses a heartbeat of half the expiry or more: stay well below.
        self._heartbeat = min(_HEARTBEAT_INTERVAL, expires / 4)
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = client.new_inbox()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._outstanding = 0
        self._failures = 0  # unexpected statuses in a row: the next ask waits longer
        self._paused = False
        self._request_over = asyncio.Event()
        self._room = asyncio.Event()
        self._last_heard = 0.0  # monotonic time of the last message or heartbeat
        self._last_reply: str | None = None  # of the last message handed on (its sequence)
        self._releases: set[asyncio.Task[None]] = set()  # naks of what arrived while paused

    @property
    def consumer(self) -> str:
        """The consumer this loop pulls from."""
        return self._consumer

    async def start(self) -> None:
        """Subscribe to the inbox and start asking for messages."""
        # Straight from the reader, no client-side queue: the server sends no more than the
        # batches this loop asked for, and the owner takes each at once.
        self._subscription = await subscribe_direct_messages(
            self._client, self._inbox, self._receive
        )
        self._task = asyncio.create_task(self._run(), name=f"natsbus-pull-{self._consumer}")

    async def stop(self) -> None:
        """Stop asking; messages already delivered but not acknowledged get redelivered."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait((task,))  # cancels again if the first cancel was lost
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await unsubscribe_direct(self._client, subscription)

    async def pause(self) -> None:
        """Stop asking for messages, and hand back any that still arrive.

        A pull request already sent lives on the server until it expires: a message it brings
        after the pause is released (``nak``) for redelivery once that request has expired,
        so another consumer of the same durable takes it within ``expires`` seconds instead
        of ``ack_wait``. The inbox stays subscribed until :meth:`stop`.
        """
        self._paused = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait((task,))

    def resume(self) -> None:
        """Ask for messages again after :meth:`pause` (a no-op if not paused)."""
        if not self._paused or self._subscription is None:
            return
        self._paused = False
        self._outstanding = 0
        self._failures = 0
        self._task = asyncio.create_task(self._run(), name=f"natsbus-pull-{self._consumer}")

    @property
    def last_stream_sequence(self) -> int | None:
        """The stream sequence of the last message handed on (None before the first)."""
        if not self._last_reply:
            return None
        return Msg(self._client, reply=self._last_reply).metadata.sequence.stream

    @property
    def paused(self) -> bool:
        """Whether the loop is paused (it asks for nothing, and hands back what arrives)."""
        return self._paused

    @property
    def backoff(self) -> float:
        """Seconds the loop waits before its next ask (0 unless the last answers failed)."""
        if not self._failures:
            return 0.0
        return min(_MAX_BACKOFF, _FIRST_BACKOFF * float(2 ** min(self._failures - 1, 10)))

    def room_made(self) -> None:
        """Tell the loop that its owner can take more messages (a job finished)."""
        self._room.set()

    def renew(self) -> None:
        """Ask again at once (the connection came back; the old request may be gone)."""
        self._outstanding = 0
        self._request_over.set()

    def _receive(self, msg: Msg) -> None:
        self._last_heard = time.monotonic()
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None and self._paused:
            release = asyncio.create_task(self._release(msg))
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)
        elif status is None:
            self._failures = 0
            self._outstanding = max(0, self._outstanding - 1)
            if self._outstanding == 0:
                self._request_over.set()
            self._last_reply = msg.reply
            self._on_message(msg)
        elif status == _HEARTBEAT:
            return
        elif status in _REQUEST_OVER:
            self._outstanding = 0
            self._request_over.set()
        else:
            # Asking again at once would spin (a 503 comes back in a millisecond while a
            # cluster elects a leader): say it once per streak, then back off.
            self._failures += 1
            logger.log(
                logging.WARNING if self._failures == 1 else logging.DEBUG,
                "consumer %s answered a pull with status %s %s; asking again with backoff",
                self._consumer,
                status,
                msg.headers.get("Description", "") if msg.headers else "",
            )
            self._outstanding = 0
            self._request_over.set()

    async def _release(self, msg: Msg) -> None:
        try:
            # Redelivered once our stale request has expired: sooner, the server would hand
            # it straight back to that request, burning a delivery each time.
            await msg.nak(delay=self._expires)
        except Exception:  # disconnected: ack_wait redelivers it anyway
            logger.debug("could not release a message on %s", self._consumer, exc_info=True)

    async def _run(self) -> None:
        while True:
            batch = self._capacity()
            if batch <= 0:
                # Full: wait until a job finishes rather than asking for work we cannot take.
                self._room.clear()
                await self._room.wait()
                continue
            self._request_over.clear()
            self._outstanding = batch
            try:
                await self._ask(batch)
            except Exception:  # the connection is down or the consumer is gone: retry
                logger.debug("pull request on %s failed", self._consumer, exc_info=True)
                await asyncio.sleep(0.25)
                continue
            if not await self._wait_request_over():
                # The request went silent (lost in a reconnect, or with a consumer leader
                # that died): make sure the consumer still exists, then ask again.
                await self._ensure_quietly()
            if self._failures:
                # A consumer that is gone (expired while the server was out of reach, say)
                # answers 503 too: make it again, then wait before the next ask.
                await self._ensure_quietly()
                await asyncio.sleep(self.backoff)

    async def _wait_request_over(self) -> bool:
        """Wait until the pending request is over; False if it went silent (is lost)."""
        self._last_heard = time.monotonic()
        silence = 2 * self._heartbeat + 0.25
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancel (stop()).
                async with asyncio.timeout(silence):
                    await self._request_over.wait()
            except TimeoutError:
                if time.monotonic() - self._last_heard > silence:
                    return False
            else:
                return True

    async def _ask(self, batch: int) -> None:
        request = {
            "batch": batch,
            "expires": int(self._expires * 1e9),
            "idle_heartbeat": int(self._heartbeat * 1e9),
        }
        await self._client.publish(
            self._next_subject, json.dumps(request).encode(), reply=self._inbox
        )

    async def _ensure_quietly(self) -> None:
        try:
            await self._ensure_consumer()
        except Exception:  # the server is still away: the next round tries again
            logger.debug("could not re-create consumer %s", self._consumer, exc_info=True)
