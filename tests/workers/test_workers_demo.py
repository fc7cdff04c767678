"""The workers demo scene plays to its end, on NATS and on the in-process fallback."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from asyncio.subprocess import PIPE, STDOUT

import pytest

from natsbus.testing import NatsServerNotFoundError, nats_server
from natsbus.workers import demo

from helpers.process import Peer

SCENE_LINES = (
    "progress 100%",
    "draft complete: 12 words",
    "deep dive answered cancelled: not needed after all",
    "researcher: accurate",
    "writer: reads well",
    "every worker has ended",
)


SESSION_LINES = (
    "4 sessions started",
    "agent said 'HELLO CALLER 3' via tts pid",
    "session ended (the caller hung up); only its workers stopped",
    "still talking: 'HELLO CALLER 1'",
    "reported failed after",
    "on the other process goes on",
)
# which serving process is killed varies: one -9, the other serving process and the service 0
EXITED = re.compile(r"serving and service processes exited with \[(-9, 0|0, -9), 0\]")


def assert_scene(output: str) -> None:
    for line in SCENE_LINES:
        assert line in output, f"{line!r} missing from:\n{output}"


async def test_scene_falls_back_to_the_in_process_bus(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> None:
        raise NatsServerNotFoundError("no binary here")

    monkeypatch.setattr(nats_server, "find_nats_server_binary", missing)
    await demo._main(local=False)
    output = capsys.readouterr().out
    assert "running the scene on the in-process bus instead" in output
    assert_scene(output)


async def test_scene_runs_workers_as_processes_over_nats() -> None:
    peer = Peer("natsbus.workers.demo")
    try:
        await peer.start(ready=None)
        assert await peer.wait(timeout=60) == 0
    finally:
        await peer.close()
    output = "\n".join(peer.lines)
    assert_scene(output)
    assert "worker processes exited with [0, 0]" in output
    for line in SESSION_LINES:  # the sessions scene, on NATS only
        assert line in output, f"{line!r} missing from:\n{output}"
    assert EXITED.search(output), output


async def test_ctrl_c_during_the_scene_ends_it_at_once_without_a_traceback() -> None:
    # As a terminal does: SIGINT to the whole foreground process group, demo and children.
    demo_process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "natsbus.workers.demo", stdout=PIPE, stderr=STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert demo_process.stdout is not None
    seen: list[str] = []
    while not any("asking the writer" in line for line in seen):
        line = await asyncio.wait_for(demo_process.stdout.readline(), 30)
        assert line, "the demo ended before its second step:\n" + "".join(seen)
        seen.append(line.decode())
    os.killpg(demo_process.pid, signal.SIGINT)
    rest, _ = await asyncio.wait_for(demo_process.communicate(), 10)
    output = "".join(seen) + rest.decode()
    assert demo_process.returncode is not None
    assert "Traceback" not in output
    assert len(output.splitlines()) < 40, output
    assert "worker processes exited with [130, 130]" in output
