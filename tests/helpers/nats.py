"""A started NatsBus for the tests that need one on this test's nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from natsbus.bus import BusSubscriber
from natsbus.bus.nats import NatsBus
from natsbus.bus.nats.options import JetStreamOptions


@asynccontextmanager
async def running_bus(
    url: str, *subscribers: BusSubscriber, channel: str = "test", **jetstream: Any
) -> AsyncIterator[NatsBus]:
    """A started NatsBus with these subscribers, stopped on exit."""
    bus = NatsBus(
        servers=url,
        channel=channel,
        jetstream_options=JetStreamOptions(**jetstream) if jetstream else None,
    )
    for subscriber in subscribers:
        await bus.subscribe(subscriber)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()
