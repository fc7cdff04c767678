"""A doorbell: waiting for a worker's first job request without a consumer on the server.

On a shared connection pair, a bus makes a worker's job request consumer only once there is
a request to take, so that an idle session costs the server no consumer (a server holds a
limited number per stream). Until then the worker's requests subject has a core subscription,
the doorbell: a request stored on JetStream is a NATS message like any other, and reaches it
as it is stored. What was stored before the doorbell was listening (or while its connection
was down) is found by asking the stream for the subject's stored messages when it starts
listening (and after a reconnect). The request stream is a work queue, so a consumer made
when the doorbell rings starts from every request still stored: none is missed, and none is
delivered twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext

from natsbus.bus.nats.direct import subscribe_direct, unsubscribe_direct

__all__ = ["Doorbell"]

logger = logging.getLogger(__name__)


class Doorbell:
    """Rings once, at the first job request stored on ``subject`` (see the module).

    Args:
        client: The connection to listen on.
        jetstream: Its JetStream context, to ask the stream what it holds.
        stream: The request stream.
        subject: The worker's requests subject (any sender).
        on_ring: Called once, when a request is (or was) stored.
    """

    def __init__(
        self,
        *,
        client: Client,
        jetstream: JetStreamContext,
        stream: str,
        subject: str,
        on_ring: Callable[[], None],
    ) -> None:
        self._client = client
        self._jetstream = jetstream
        self._stream = stream
        self._subject = subject
        self._on_ring = on_ring
        self._subscription: Subscription | None = None
        self.rung = False

    async def arm(self) -> None:
        """Listen, then ring if a request was stored before.

        Raises:
            nats.errors.Error: The server refused or did not answer.
        """
        self._subscription = await subscribe_direct(self._client, self._subject, self._heard)
        await self.check()

    async def check(self) -> None:
        """Ring if the stream holds a request on the subject (what the doorbell missed).

        Raises:
            nats.errors.Error: The server refused or did not answer.
        """
        if self.rung:
            return
        info = await self._jetstream.stream_info(self._stream, subjects_filter=self._subject)
        if info.state.subjects:
            self.ring()

    def ring(self) -> None:
        """A request is there (or on its way): call ``on_ring``, once."""
        if not self.rung:
            self.rung = True
            self._on_ring()

    async def disarm(self) -> None:
        """Stop listening."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not self._client.is_closed:
            await unsubscribe_direct(self._client, subscription)

    def _heard(self, subject: str, data: bytes) -> None:
        self.ring()
