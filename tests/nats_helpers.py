"""Small helpers for the NatsBus tests: a named recording subscriber and a bus factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from natsbus.bus import BusSubscriber
from natsbus.bus.nats import NatsBus
from natsbus.bus.nats.options import JetStreamOptions
from natsbus.messages import BusMessage

TIMEOUT = 15.0


class Inbox(BusSubscriber):
    """Records every message it receives; ``wait_until`` waits for a condition on them."""

    def __init__(
        self,
        name: str,
        *,
        targets: frozenset[str] | str | None = "own",
        behaviour: Callable[[BusMessage], Awaitable[None]] | None = None,
    ) -> None:
        self._name = name
        self._targets = targets
        self.behaviour = behaviour
        self.received: list[BusMessage] = []
        self._changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    @property
    def bus_targets(self) -> frozenset[str] | None:
        if self._targets == "own":
            return frozenset({self._name})
        assert not isinstance(self._targets, str)
        return self._targets

    async def on_bus_message(self, message: BusMessage) -> None:
        self.received.append(message)
        self._changed.set()
        if self.behaviour is not None:
            await self.behaviour(message)

    def of_type(self, cls: type[Any]) -> list[Any]:
        return [m for m in self.received if isinstance(m, cls)]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async def waiting() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(waiting(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self._name} waited {timeout}s in vain; it received {len(self.received)}: "
                f"{self.received[-5:]}"
            ) from None


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
