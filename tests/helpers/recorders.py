"""Recording bus subscribers: ``Inbox`` keeps what reaches it, ``Tap`` sees the whole bus."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from natsbus.bus import BusSubscriber
from natsbus.messages import BusFrameMessage, BusMessage

TIMEOUT = 15.0


class Inbox(BusSubscriber):
    """Records every message it receives; ``wait_until`` waits for a condition on them.

    It answers to its own name (``targets="own"``, the default), to the given targets, or to
    every target (``targets=None``, an observer), and takes the job requests of its targets
    (a network bus keeps a consumer for them). ``behaviour`` runs after each message.
    """

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

    @property
    def bus_job_targets(self) -> frozenset[str]:
        return self.bus_targets or frozenset()

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


class Tap(Inbox):
    """Sees every message on the bus (the observer ``tap``)."""

    def __init__(self) -> None:
        super().__init__("tap", targets=None)

    def frames(self) -> list[BusFrameMessage]:
        return self.of_type(BusFrameMessage)
