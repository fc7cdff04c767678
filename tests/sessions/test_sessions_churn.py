"""1,000 sessions started and ended in a row leave nothing behind, on the server or in memory."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client

import natsbus
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.testing import NatsServer

from helpers.process import Peer

SESSIONS = 1000
AT_ONCE = 20
WARM_UP = 200
SESSION_TOKEN = ".voice%7E"  # how every session channel of group voice starts in a subject


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(store_dir=tmp_path / "ns", monitor_port=0) as running:
        yield running


def subscriptions(server: NatsServer) -> tuple[int, list[str]]:
    """How many subscriptions the server holds (inboxes aside), and the subjects of those in
    session channels.

    A connection makes its inbox subscription for requests on its first request, and a pull
    holds one while it waits: they come and go with the long-lived buses, not the sessions.
    """
    url = f"{server.monitor_url}/subsz?subs=1&limit=100000"
    with urllib.request.urlopen(url, timeout=5) as answer:
        found = json.load(answer)
    subjects = [sub["subject"] for sub in found.get("subscriptions_list", [])]
    sessions = [
        sub["subject"]
        for sub in found.get("subscriptions_list", [])
        if SESSION_TOKEN in sub["subject"]
    ]
    return sum(not subject.startswith("_INBOX.") for subject in subjects), sessions


async def consumers(url: str) -> set[str]:
    nc = Client()
    await nc.connect(url)
    try:
        js = nc.jetstream()
        layout = SubjectLayout("default")
        names: set[str] = set()
        for stream in (layout.stream, layout.request_stream):
            names |= {info.name for info in await js.consumers_info(stream)}
        return names
    finally:
        await nc.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def one(client: natsbus.BusClient, index: int) -> None:
    session = await client.start_session("voice", args={}, timeout=60)
    try:
        # Its workers' job consumers exist once they are ready; every tenth also talks.
        if index % 10 == 0:
            answer = await session.request("talker", "echo", {}, timeout=30)
            assert answer is not None and answer["channel"] == session.channel
        await session.cancel("next")
        await session.wait(30)
    finally:
        await session.close()


async def run(client: natsbus.BusClient, count: int) -> None:
    for start in range(0, count, AT_ONCE):
        await asyncio.gather(*(one(client, start + i) for i in range(min(AT_ONCE, count - start))))


@pytest.mark.timeout(600)
async def test_a_thousand_sessions_leave_no_server_state_and_no_memory_behind(
    server: NatsServer,
) -> None:
    serving = Peer("tests.peers.serve_peer", f"--url={server.url}", "--slots=30")
    await serving.start(ready="READY", timeout=30)
    try:
        async with natsbus.connect(server.url) as client:
            await run(client, WARM_UP)  # imports, caches and allocator pools settle first
            live = await client.start_session("voice", timeout=60)  # what the check looks for
            assert any(live.channel.replace("~", "%7E") in s for s in subscriptions(server)[1])
            await live.cancel("seen")
            await live.wait(30)
            await asyncio.sleep(0.5)
            consumers_before, subs_before = await consumers(server.url), subscriptions(server)
            memory_before = rss_kib(serving.pid)
            await run(client, SESSIONS)
            await asyncio.sleep(0.5)
            consumers_after, subs_after = await consumers(server.url), subscriptions(server)
            memory_after = rss_kib(serving.pid)
        assert consumers_after == consumers_before  # none of the sessions' is left
        assert subs_after[1] == [] and subs_before[1] == []  # none in a session channel
        assert subs_after[0] == subs_before[0]
        assert memory_after <= memory_before * 1.10, (memory_before, memory_after)
        print(f"RSS {memory_before} -> {memory_after} KiB after {SESSIONS} sessions")
    finally:
        await serving.close()
