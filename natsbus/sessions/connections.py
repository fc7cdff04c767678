"""One pair of NATS connections that every extra-channel bus of a process shares.

A serving process hosts many sessions, each on a channel (and a NatsBus) of its own; sharing
one ``(system, data)`` pair makes a session cost subscriptions and consumers, not sockets.
:func:`channel_bus` is the one place such a bus is made (so that moving to the pool #17
brings is a change of one function).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from natsbus.bus.nats.connection import close_connection, open_connection
from natsbus.bus.nats.options import JetStreamOptions, NatsConnectOptions
from natsbus.messages import Lane

if TYPE_CHECKING:
    from nats.aio.client import Client

    from natsbus.bus.base import BusMetricsProvider
    from natsbus.bus.nats.bus import NatsBus

__all__ = ["SharedConnections", "channel_bus"]

logger = logging.getLogger(__name__)


class SharedConnections:
    """A lazily opened ``(system, data)`` connection pair, closed by its owner.

    Args:
        options: Servers, credentials and TLS; the inbox prefix is that of the channel the
            options were made for (see ``docs/sessions.md`` on permissions).
    """

    def __init__(self, options: NatsConnectOptions) -> None:
        self._options = options
        self._pair: tuple[Client, Client] | None = None
        self._lock = asyncio.Lock()

    @property
    def options(self) -> NatsConnectOptions:
        """The options the pair connects with."""
        return self._options

    async def pair(self) -> tuple[Client, Client]:
        """The connected pair (opened on the first call).

        Raises:
            BusUnavailableError: No server could be reached.
        """
        async with self._lock:
            if self._pair is None:
                system = await open_connection(
                    self._options, Lane.SYSTEM.value, on_reconnected=_nothing, on_error=_log
                )
                try:
                    data = await open_connection(
                        self._options, Lane.DATA.value, on_reconnected=_nothing, on_error=_log
                    )
                except BaseException:
                    await close_connection(system)
                    raise
                self._pair = (system, data)
            return self._pair

    async def close(self) -> None:
        """Close the pair (idempotent); the buses on it must be stopped first."""
        pair, self._pair = self._pair, None
        if pair is not None:
            for client in pair:
                await close_connection(client)


async def _nothing() -> None:
    return None


async def _log(error: Exception) -> None:
    logger.debug("shared connection: %s", error)


async def channel_bus(
    connections: SharedConnections,
    channel: str,
    *,
    jetstream_options: JetStreamOptions | None = None,
    prefix: str | None = None,
    name: str | None = None,
    metrics: BusMetricsProvider | None = None,
) -> NatsBus:
    """A NatsBus on ``channel`` over the shared pair (not started; it never closes the pair).

    Args:
        connections: The process's shared pair.
        channel: The bus's channel (a session's, the services').
        jetstream_options: The deployment's JetStream settings.
        prefix: The deployment's subject prefix (default: natsbus's).
        name: The bus's name, for logs.
        metrics: Where the bus counts; None for a session bus (its names are per session).
    """
    from natsbus.bus.nats.bus import NatsBus  # noqa: PLC0415  (nats-py only when connecting)
    from natsbus.bus.nats.layout import DEFAULT_PREFIX  # noqa: PLC0415

    # Such a bus lives for a session: its consumers need not cost the server disk writes.
    options = dataclasses.replace(jetstream_options or JetStreamOptions(), memory_consumers=True)
    return NatsBus(
        channel=channel,
        clients=await connections.pair(),
        connect_options=connections.options,
        jetstream_options=options,
        prefix=prefix or DEFAULT_PREFIX,
        name=name,
        metrics=metrics,
    )
