"""A process killed with its sessions leaves the server room for the next one.

Its sessions' buses share one connection pair, whose two consumers read for all of them, and
an idle session holds no consumer of its own: a SIGKILL strands two consumers (until their
inactive threshold), not a few per session, so the process started in its place never meets
the server's consumer limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.testing import NatsServer

from helpers.process import Peer
from helpers.workers import Client, running

SESSIONS = 20
MAX_CONSUMERS = 8
"""Per stream: far fewer than the sessions (each held 3 consumers before, on the job and
request streams), more than two processes' pairs need."""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(store_dir=tmp_path / "s") as server:
        yield server


def holding(server: NatsServer, tag: str) -> Peer:
    return Peer(
        "tests.peers.idle_sessions_peer",
        f"--url={server.url}",
        f"--sessions={SESSIONS}",
        f"--max-consumers={MAX_CONSUMERS}",
        f"--tag={tag}",
    )


async def test_a_process_killed_with_its_sessions_is_replaced_without_a_limit_error(
    server: NatsServer,
) -> None:
    first, second = holding(server, "first"), holding(server, "second")
    try:
        await first.start(ready="READY", timeout=60)
        await first.kill()
        # On a failure, this says what the process printed (FAILED and the limit error).
        await second.start(ready=f"READY {SESSIONS}", timeout=60)
        # Its sessions take jobs: a request makes the worker's consumer, within the limit.
        options = JetStreamOptions(max_consumers=MAX_CONSUMERS)
        for index in (0, SESSIONS - 1):
            client = Client(f"caller{index}")
            bus = NatsBus(servers=server.url, channel=f"second-{index}", jetstream_options=options)
            async with (
                running(client, bus=bus),
                client.job("agent", name="echo", payload={"i": index}, timeout=10) as j,
            ):
                pass
            assert j.response == {"echo": {"i": index}}
    finally:
        await first.close()
        await second.close()
