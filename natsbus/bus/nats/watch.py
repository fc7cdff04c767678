"""What a NatsBus's connections report: errors, reconnects, sends during an outage.

Each is counted (the bus's :class:`~natsbus.bus.NetworkCounts`) and logged once per episode,
not once per event: a server that is away for a minute makes a reconnect attempt on both
lanes every quarter of a second, and an operator needs one line that it went and one that it
came back, with no password in either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

from nats.errors import SlowConsumerError, StaleConnectionError, UnexpectedEOF

from natsbus._lazy_event import LazyEvent
from natsbus.bus.nats.options import NatsConnectOptions
from natsbus.bus.statistics import NetworkCounts
from natsbus.errors import BusPermissionError
from natsbus.messages import Lane

__all__ = ["ConnectionWatch", "permission_denied"]

logger = logging.getLogger("natsbus.bus.nats")

T = TypeVar("T")

_DENIAL: Final = re.compile(
    r"permissions violation for (publish|subscription) to \"([^\"]*)\"", re.IGNORECASE
)
_OPERATIONS: Final = {"publish": "publish", "subscription": "subscribe"}
_API_TOKENS: Final = (
    "$JS", "API", "ACK", "STREAM", "CONSUMER", "CREATE", "UPDATE", "INFO", "DELETE",
    "DURABLE", "MSG", "NEXT", "GET", "_INBOX",
)  # fmt: skip
"""Tokens of the JetStream API's subjects, to spell a refused subject as it was sent."""


def permission_denied(
    error: BaseException, tokens: Iterable[str] = ()
) -> BusPermissionError | None:
    """The permission violation a nats-py error reports, or None if it is something else.

    nats-py lowercases the server's error, subject included; each token found in
    ``tokens`` (or the JetStream API's) is given back its case.
    """
    found = _DENIAL.search(str(error))
    if found is None:
        return None
    spelled = {token.lower(): token for token in (*_API_TOKENS, *tokens)}
    subject = ".".join(spelled.get(token, token) for token in found.group(2).split("."))
    return BusPermissionError(_OPERATIONS[found.group(1).lower()], subject)


class ConnectionWatch:
    """Counts and logs what one bus's two connections report.

    Args:
        bus: The bus's name, for the log.
        options: Its connect options (to keep their secrets out of the log).
        counts: Where to count.
        on_reconnected: Called after either connection is back.
        tokens: The subject tokens the bus uses, to spell a refused subject as it was sent.
        on_denial: Called with every permission the server refuses.
    """

    def __init__(
        self,
        *,
        bus: str,
        options: NatsConnectOptions,
        counts: NetworkCounts,
        on_reconnected: Callable[[], None],
        tokens: Callable[[], Iterable[str]] = tuple,
        on_denial: Callable[[BusPermissionError], None] | None = None,
    ) -> None:
        self._bus = bus
        self._options = options
        self._counts = counts
        self._on_reconnected = on_reconnected
        self._tokens = tokens
        self._denial_listener = on_denial
        self._outage_reported = False  # the connection errors of this outage were logged
        self._lossy_sends_logged: set[Lane] = set()
        self._denial: BusPermissionError | None = None
        self._denied = LazyEvent()  # lazy: waited on only while the bus starts
        self._denials_logged: set[tuple[str, str]] = set()

    def reconnected_callback(self, lane: Lane) -> Callable[[], Awaitable[None]]:
        """The callback nats-py calls when ``lane``'s connection is back."""

        async def reconnected() -> None:
            self._counts.reconnects[lane] += 1
            self._lossy_sends_logged.discard(lane)
            if self._outage_reported:
                self._outage_reported = False
                logger.info("%s: the %s connection is back", self._bus, lane.value)
            self._on_reconnected()

        return reconnected

    async def on_error(self, error: Exception) -> None:
        """The callback nats-py calls with every error it reports."""
        if isinstance(error, SlowConsumerError):
            # The client dropped a message: one of nats-py's own subscriptions (its JetStream
            # request multiplexer) was full. Counted every time, logged the first time (and
            # every time at DEBUG).
            self._counts.slow_consumer_drops += 1
            if self._counts.slow_consumer_drops == 1 or logger.isEnabledFor(logging.DEBUG):
                logger.warning(
                    "%s is a slow consumer: the client dropped a message on %s; counted as"
                    " slow_consumer_drops",
                    self._bus,
                    error.subject,
                )
            return
        denial = permission_denied(error, self._tokens())
        if denial is not None:
            self._on_denial(denial)
            return
        text = self._options.redact(str(error))
        if isinstance(error, OSError | UnexpectedEOF | StaleConnectionError):
            if self._outage_reported:
                logger.debug("%s: NATS connection still down: %s", self._bus, text)
                return
            self._outage_reported = True
            logger.warning("%s: NATS connection lost or refused: %s; reconnecting", self._bus, text)
            return
        logger.warning("%s: NATS client error: %s", self._bus, text)

    async def guard(self, work: Awaitable[T]) -> T:
        """Await one step of a start, failing it as soon as the server denies a permission.

        The server tells a client it lacks a permission with an asynchronous error, while the
        request it refused waits for its timeout: without this a missing permission would
        show as a bare timeout seconds later.

        Raises:
            BusPermissionError: The server refused an operation during the step.
        """
        step = asyncio.ensure_future(work)
        denied = asyncio.ensure_future(self._denied.wait())
        try:
            await asyncio.wait((step, denied), return_when=asyncio.FIRST_COMPLETED)
        finally:
            denied.cancel()
        if self._denial is not None:
            if not step.done():
                step.cancel()
            with contextlib.suppress(BaseException):
                await step
            raise self._denial
        return step.result()

    def _on_denial(self, denial: BusPermissionError) -> None:
        self._counts.permission_denials += 1
        self._denial = denial
        self._denied.set()
        if self._denial_listener is not None:
            self._denial_listener(denial)
        key = (denial.operation, denial.subject)
        if key not in self._denials_logged and len(self._denials_logged) < 100:
            self._denials_logged.add(key)
            logger.error("%s: %s", self._bus, denial)

    def sent_disconnected(self, lane: Lane) -> None:
        """Count a core message handed to the client while the server is away."""
        self._counts.sent_disconnected += 1
        if lane not in self._lossy_sends_logged:
            self._lossy_sends_logged.add(lane)
            logger.warning(
                "%s: the server is away; core messages sent now are buffered and may be lost"
                " (counted as sent_disconnected; lifecycle and job messages are stored when it"
                " is back)",
                self._bus,
            )
