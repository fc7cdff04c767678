"""``natsbus top`` in a pseudo-terminal: a live view of a process's lanes and jobs."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys

from prometheus_client import CollectorRegistry

from natsbus import AsyncQueueBus
from natsbus.observability import BusMetrics, ObservabilityServer

from helpers.workers import Client, Tool, running, within


async def test_top_shows_the_lanes_and_the_jobs_of_a_live_process() -> None:
    metrics = BusMetrics(registry=None)

    registry = CollectorRegistry()
    metrics = BusMetrics(registry=registry)
    bus = AsyncQueueBus(metrics=metrics)
    client = Client()
    async with (
        running(Tool(), client, bus=bus),
        ObservabilityServer(host="127.0.0.1", port=0, metrics=metrics) as server,
    ):
        url = f"http://127.0.0.1:{server.port}/metrics"
        main, replica = pty.openpty()
        top = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "natsbus", "top", url,
            stdout=replica, stderr=replica, start_new_session=True,
        )  # fmt: skip
        os.close(replica)
        try:
            for i in range(30):  # jobs answered while it watches, for 3 s
                async with client.job("tool", name="echo", payload={"i": i}):
                    pass
                await asyncio.sleep(0.1)
        finally:
            os.killpg(top.pid, signal.SIGINT)
            code = await within(top.wait())
        screen = _read_all(main).decode(errors="replace")
    assert code == 0, screen
    assert "\x1b[2J" in screen  # redrawn in place in a terminal
    assert "system" in screen and "data" in screen and "dispatch p99" in screen
    assert "tool" in screen and "completed" in screen
    assert "Traceback" not in screen


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
