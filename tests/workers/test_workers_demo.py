"""The workers demo scene plays to its end, on NATS and on the in-process fallback."""

from __future__ import annotations

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
