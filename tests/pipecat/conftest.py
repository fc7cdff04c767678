"""What the pipecat tests share: child processes running tests/peers/pipecat_peer.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from helpers.pipecat import PipecatPeers


@pytest.fixture
def channel() -> str:
    """A channel of this test's own."""
    return f"pc-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def peers(nats_url: str, channel: str) -> AsyncIterator[PipecatPeers]:
    """Pipecat peers on this test's server and channel."""
    started = PipecatPeers(nats_url, channel)
    yield started
    for peer in started.started:
        await peer.close()
