"""A NatsBus start that fails leaves nothing behind: no task, no connection on the server."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import ServiceUnavailableError

from natsbus import BusClosedError, BusUnavailableError, NatsBus, NatsConnectOptions
from natsbus.bus.nats import jobs
from natsbus.testing import NatsServer


def connections(server: NatsServer) -> int:
    with urllib.request.urlopen(f"{server.monitor_url}/connz", timeout=5) as response:
        return int(json.load(response)["num_connections"])


async def settled(server: NatsServer) -> int:
    """The server's client count once closed connections had a moment to go."""
    for _ in range(50):
        if connections(server) == 0:
            return 0
        await asyncio.sleep(0.02)
    return connections(server)


def new_tasks(before: set[asyncio.Task[object]]) -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() - before if not t.done())


async def test_a_server_without_jetstream_fails_start_with_a_typed_error(tmp_path: Path) -> None:
    async with NatsServer(jetstream=False, monitor_port=0) as server:
        bus = NatsBus(servers=server.url, channel="c")
        before = set(asyncio.all_tasks())
        with pytest.raises(BusUnavailableError, match="JetStream is not available") as caught:
            await bus.start()
        assert isinstance(caught.value.__cause__, ServiceUnavailableError)
        assert new_tasks(before) == []
        assert await settled(server) == 0
        await bus.stop()  # safe after a failed start
        assert new_tasks(before) == []


async def test_refused_credentials_fail_start_and_leave_nothing(tmp_path: Path) -> None:
    args = ("--user", "alice", "--pass", "right")
    async with NatsServer(store_dir=tmp_path / "s", args=args, monitor_port=0) as server:
        options = NatsConnectOptions(user="alice", password="wrong", connect_attempts=1)
        bus = NatsBus(servers=server.url, channel="c", connect_options=options)
        before = set(asyncio.all_tasks())
        with pytest.raises(BusUnavailableError):
            await bus.start()
        assert new_tasks(before) == []
        assert await settled(server) == 0


async def test_start_after_stop_is_refused_before_anything_opens(tmp_path: Path) -> None:
    async with NatsServer(store_dir=tmp_path / "s", monitor_port=0) as server:
        bus = NatsBus(servers=server.url, channel="c")
        await bus.start()
        assert connections(server) == 2
        await bus.stop()
        before = set(asyncio.all_tasks())
        with pytest.raises(BusClosedError, match="cannot be started again"):
            await bus.start()
        assert new_tasks(before) == []
        assert await settled(server) == 0


async def test_a_server_that_goes_away_during_start_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with NatsServer(store_dir=tmp_path / "s", monitor_port=0) as server:
        # The server dies just as the bus, connected, makes its streams.
        real_ensure_streams = jobs.ensure_streams

        async def die_first(*args: Any) -> None:
            await server.kill()
            await real_ensure_streams(*args)

        monkeypatch.setattr(jobs, "ensure_streams", die_first)
        bus = NatsBus(servers=server.url, channel="c")
        before = set(asyncio.all_tasks())
        with pytest.raises(BusUnavailableError, match="making the job streams"):
            await bus.start()
        assert new_tasks(before) == []
        await server.start()  # back: nothing of the failed bus reconnects to it
        await asyncio.sleep(0.5)
        assert await settled(server) == 0
