"""``natsbus serve`` as a container runs it: metrics on its endpoint, SIGTERM drains, exit 0."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import natsbus
from natsbus.sessions import Outcome

from helpers.process import Peer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("natsbus_session") and 'group="voice"' in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_natsbus_serve_reports_its_sessions_and_drains_on_sigterm(nats_url: str) -> None:
    port = free_port()
    serving = Peer(
        "natsbus",
        "serve",
        "tests.peers.session_apps:make_session",
        "--group=voice",
        "--slots=2",
        f"--nats-url={nats_url}",
        f"--http-port={port}",
        "--http-host=127.0.0.1",
        "--grace-period=60",
    )
    await serving.start(ready=None)
    try:
        async with natsbus.connect(nats_url) as client:
            session = await client.start_session("voice", args={}, timeout=30)
            metrics = scrape(port)
            assert metrics['natsbus_sessions_running{group="voice"}'] == 1
            assert metrics['natsbus_session_slots_free{group="voice"}'] == 1
            assert metrics['natsbus_session_start_seconds_count{group="voice"}'] == 1
            serving.signal(__import__("signal").SIGTERM)
            for _ in range(100):  # the gauges follow within a poll (2 s)
                if scrape(port).get('natsbus_session_slots_free{group="voice"}') == 0:
                    break
                await asyncio.sleep(0.1)
            assert scrape(port)['natsbus_session_slots_free{group="voice"}'] == 0  # draining
            answer = await session.request("talker", "echo", {}, timeout=20)  # still running
            assert answer is not None
            await session.end("call over")
            assert (await session.wait(20)).outcome is Outcome.ENDED
            await session.close()
        assert await serving.wait(30) == 0
    finally:
        await serving.close()
