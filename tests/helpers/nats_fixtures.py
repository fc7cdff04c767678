"""pytest fixtures that run a real nats-server (loaded from conftest as a plugin).

Each test gets its own server: it starts in about 10 ms, so there is no module-scoped shared
server to keep tests apart on. The store (JetStream data and ``nats-server.log``) lives in the
test's ``tmp_path``, so the log of a failed test can still be read afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from natsbus.testing import NatsServer


@pytest_asyncio.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port; stopped after the test."""
    async with NatsServer(store_dir=tmp_path / "nats-server") as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The client URL of this test's nats-server."""
    return nats_server.url
