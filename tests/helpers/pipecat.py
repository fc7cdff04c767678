"""pipecat apps in child processes: tests/peers/pipecat_peer.py on one server and channel."""

from __future__ import annotations

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
