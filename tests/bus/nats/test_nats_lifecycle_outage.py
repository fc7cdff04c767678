"""Lifecycle messages survive a server outage: stored, and received once by every bus."""

from __future__ import annotations

import asyncio
import inspect

from natsbus import messages
from natsbus.bus.nats import NatsBus
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusCancelWorkerMessage,
    BusEndMessage,
    BusEndWorkerMessage,
    BusLocalMessage,
    BusMessage,
    BusTTSSpeakMessage,
)
from natsbus.testing import NatsServer

from helpers.nats import running_bus
from helpers.recorders import Inbox

LIFECYCLE = {
    "BusActivateWorkerMessage",
    "BusDeactivateWorkerMessage",
    "BusEndMessage",
    "BusEndWorkerMessage",
    "BusCancelMessage",
    "BusCancelWorkerMessage",
    "BusWorkerReadyMessage",
    "BusWorkerErrorMessage",
    "BusWorkerRegistryMessage",
}


def test_exactly_the_lifecycle_messages_are_durable() -> None:
    durable = {
        name
        for name, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, BusMessage) and cls.durable and not issubclass(cls, BusLocalMessage)
    }
    assert durable == LIFECYCLE


def lifecycle_of(inbox: Inbox) -> list[BusMessage]:
    return [m for m in inbox.received if type(m).__name__ in LIFECYCLE]


async def test_lifecycle_sent_during_an_outage_arrives_once_after_it(
    nats_server: NatsServer,
) -> None:
    url = nats_server.url
    worker, other, sender = Inbox("w"), Inbox("other"), Inbox("sender")
    async with (
        running_bus(url, worker),
        running_bus(url, other),
        running_bus(url, sender) as sending,
    ):
        assert isinstance(sending, NatsBus)
        # Just before the server goes: it may or may not have stored it.
        await sending.send(BusActivateWorkerMessage(source="sender", target="w"))
        await nats_server.kill()
        await sending.send(BusCancelWorkerMessage(source="sender", target="w", reason="stop"))
        await sending.send(BusEndWorkerMessage(source="sender", target="w", reason="done"))
        await sending.send(BusEndMessage(source="sender", reason="session over"))
        await sending.send(BusTTSSpeakMessage("lost?", source="sender", target="w"))
        await asyncio.sleep(5.0)
        await nats_server.start()
        await worker.wait_until(lambda: len(lifecycle_of(worker)) == 4, timeout=30)
        await other.wait_until(lambda: len(lifecycle_of(other)) == 1, timeout=30)
        await asyncio.sleep(1.0)  # a duplicate would arrive by now
        network = sending.statistics().network
        assert network is not None and network.counts.sent_disconnected == 1
    kinds = sorted(type(m).__name__ for m in lifecycle_of(worker))
    assert kinds == sorted(
        [
            "BusActivateWorkerMessage",
            "BusCancelWorkerMessage",
            "BusEndWorkerMessage",
            "BusEndMessage",
        ]
    )
    assert [type(m).__name__ for m in lifecycle_of(other)] == ["BusEndMessage"]
    # The sender's own subscribers got them once, at send time, not again from the stream.
    assert len(lifecycle_of(sender)) == 4
