"""pipecat apps in child processes (tests/peers/pipecat_peer.py), and a pipecat subscriber."""

from __future__ import annotations

import asyncio

import pipecat.bus.messages as pm
from pipecat.bus.subscriber import BusSubscriber as PipecatSubscriber

from helpers.process import Peer

PEER = "tests.peers.pipecat_peer"


class PipecatPeers:
    """Starts pipecat peers on one server and channel, and kills what is left at the end."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.started: list[Peer] = []

    async def start(self, role: str, *args: str, ready: str | None = None) -> Peer:
        peer = Peer(PEER, self.url, self.channel, role, *args)
        self.started.append(peer)
        await peer.start(ready=ready, timeout=30)
        return peer


class Recorder(PipecatSubscriber):
    """A pipecat subscriber that keeps what it receives."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.messages: list[pm.BusMessage] = []
        self.changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def on_bus_message(self, message: pm.BusMessage) -> None:
        self.messages.append(message)
        self.changed.set()

    async def next_message(self) -> pm.BusMessage:
        await asyncio.wait_for(self.changed.wait(), 10)
        self.changed.clear()
        return self.messages[-1]
