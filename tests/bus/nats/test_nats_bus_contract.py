"""NatsBus keeps the same contract as every WorkerBus, on a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from natsbus.bus import WorkerBus
from natsbus.bus.nats import NatsBus
from natsbus.testing.contract import BusContract


class TestNatsBus(BusContract):
    restarts = False

    @pytest.fixture
    async def bus(self, nats_url: str) -> AsyncIterator[WorkerBus]:
        bus = NatsBus(servers=nats_url, channel="contract")
        yield bus
        await bus.stop()
