"""What a NatsBus's connections report: errors, reconnects, sends during an outage.

Each is counted (the bus's :class:`~natsbus.bus.NetworkCounts`) and logged once per episode,
not once per event: a server that is away for a minute makes a reconnect attempt on both
lanes every quarter of a second, and an operator needs one line that it went and one that it
came back, with no password in either.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.errors import SlowConsumerError, StaleConnectionError, UnexpectedEOF

from natsbus.bus.limits import QueueLimits
from natsbus.bus.nats.options import NatsConnectOptions
from natsbus.bus.statistics import NetworkCounts
from natsbus.messages import Lane

__all__ = ["ConnectionWatch"]

logger = logging.getLogger("natsbus.bus.nats")


class ConnectionWatch:
    """Counts and logs what one bus's two connections report.

    Args:
        bus: The bus's name, for the log.
        options: Its connect options (to keep their secrets out of the log).
        limits: Its queue limits (named when a subscription overflows).
        counts: Where to count.
        on_reconnected: Called after either connection is back.
    """

    def __init__(
        self,
        *,
        bus: str,
        options: NatsConnectOptions,
        limits: QueueLimits,
        counts: NetworkCounts,
        on_reconnected: Callable[[], None],
    ) -> None:
        self._bus = bus
        self._options = options
        self._limits = limits
        self._counts = counts
        self._on_reconnected = on_reconnected
        self._outage_reported = False  # the connection errors of this outage were logged
        self._lossy_sends_logged: set[Lane] = set()

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
            # The client dropped a message: a subscription's pending limit was hit. Counted
            # every time, logged the first time (and every time at DEBUG).
            self._counts.slow_consumer_drops += 1
            if self._counts.slow_consumer_drops == 1 or logger.isEnabledFor(logging.DEBUG):
                logger.warning(
                    "%s is a slow consumer: the client dropped a message on %s (its"
                    " subscription holds %d messages or %d bytes); counted as"
                    " slow_consumer_drops",
                    self._bus,
                    error.subject,
                    self._limits.subscription_messages,
                    self._limits.subscription_bytes,
                )
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
