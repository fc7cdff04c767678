"""Workers for the ``natsbus run`` tests."""

from __future__ import annotations

import asyncio

from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, job


class Idle(BaseWorker):
    """Does nothing until it is ended; says when it is active."""

    async def on_activated(self, args: Payload | None) -> None:
        print(f"ACTIVE {self.name}", flush=True)

    @job(name="sleep")
    async def sleep(self, message: BusJobRequestMessage) -> Payload:
        await asyncio.sleep((message.payload or {}).get("seconds", 0))
        return {}


def not_a_worker() -> object:
    return object()
