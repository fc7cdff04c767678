"""The one place a serving process or a client makes a bus of a session's (or another) channel.

Every such bus rides on the process's :class:`~natsbus.bus.nats.NatsConnections` pair (#17), so
a session costs subscriptions and consumers, not sockets.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from natsbus.bus.nats.options import JetStreamOptions

if TYPE_CHECKING:
    from natsbus.bus.base import BusMetricsProvider, BusObserverFactory
    from natsbus.bus.nats.bus import NatsBus
    from natsbus.bus.nats.shared import NatsConnections

__all__ = ["channel_bus"]


def channel_bus(
    connections: NatsConnections,
    channel: str,
    *,
    jetstream_options: JetStreamOptions | None = None,
    prefix: str | None = None,
    name: str | None = None,
    metrics: BusMetricsProvider | None = None,
    observer: BusObserverFactory | None = None,
) -> NatsBus:
    """A NatsBus on ``channel`` over the shared pair (not started; it never closes the pair).

    Args:
        connections: The process's shared pair.
        channel: The bus's channel (a session's, the services').
        jetstream_options: The deployment's JetStream settings.
        prefix: The deployment's subject prefix (default: natsbus's).
        name: The bus's name, for logs.
        metrics: Where the bus counts; None for a session bus (its names are per session).
        observer: Tracing (``BusTracing``), shared by the process's buses.
    """
    from natsbus.bus.nats.bus import NatsBus  # noqa: PLC0415  (nats-py only when connecting)
    from natsbus.bus.nats.layout import DEFAULT_PREFIX  # noqa: PLC0415

    # Such a bus lives for a session: its consumers need not cost the server disk writes.
    options = dataclasses.replace(jetstream_options or JetStreamOptions(), memory_consumers=True)
    return NatsBus(
        channel=channel,
        connections=connections,
        jetstream_options=options,
        prefix=prefix or DEFAULT_PREFIX,
        name=name,
        metrics=metrics,
        observer=observer,
    )
