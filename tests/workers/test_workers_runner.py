"""The runner: registry discovery, signals, and the ``natsbus run`` command (no NATS needed)."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from natsbus.bus import AsyncQueueBus
from natsbus.cli import load_worker, main
from natsbus.messages import BusWorkerRegistryMessage, JobStatus
from natsbus.workers import BaseWorker, WorkerRunner

from helpers.process import Peer
from helpers.workers import Watcher, running, within


async def test_runners_discover_each_other_including_a_late_one() -> None:
    bus = AsyncQueueBus()
    alpha, beta = Watcher("alpha"), Watcher("beta")
    async with running(alpha, bus=bus, name="runner-a") as first:
        await alpha.watch_workers("beta")
        assert alpha.ready == []
        async with running(beta, bus=bus, name="runner-b") as late:
            await alpha.changed.until(lambda: bool(alpha.ready))
            (seen,) = alpha.ready
            assert (seen.worker_name, seen.runner, seen.local) == ("beta", "runner-b", False)
            # The late runner learns the first one's workers from its answer to the snapshot.
            await within(late.registry.wait_ready(["alpha"]))
            assert late.registry.get("alpha").runner == "runner-a"  # type: ignore[union-attr]
            assert first.registry.remote_workers == ["beta"]
            snapshots = alpha.of(BusWorkerRegistryMessage)
            assert {m.runner for m in snapshots} == {"runner-a", "runner-b"}
            # A watch placed after the worker is known fires at once.
            await beta.watch_workers("alpha")
            assert [d.worker_name for d in beta.ready] == ["alpha"]


class Driver:
    """A runner process on the in-process bus: a sleeper and a watcher that asks it a job."""

    def __init__(self, seconds: float, grace: float) -> None:
        self.peer = Peer(
            "tests.peers.runner_peer",
            "--runner=drain",
            "--sleeper=sleeper",
            "--watcher=asker",
            f"--ask=sleeper:{seconds}",
            f"--grace={grace}",
        )


@pytest.fixture
async def driver() -> AsyncIterator[Any]:
    drivers: list[Driver] = []

    def make(seconds: float, grace: float) -> Driver:
        drivers.append(Driver(seconds, grace))
        return drivers[-1]

    yield make
    for d in drivers:
        await d.peer.close()


async def test_sigterm_lets_the_running_job_finish_and_exits_0(driver: Any) -> None:
    peer = driver(seconds=0.8, grace=10).peer
    await peer.start()
    await peer.wait_for("TOOK")
    sent = time.monotonic()
    peer.signal(signal.SIGTERM)
    assert await peer.wait(timeout=10) == 0
    assert time.monotonic() - sent < 10
    assert peer.found("DONE")
    assert peer.found("ANSWER")[0].startswith(f"ANSWER {JobStatus.COMPLETED}")
    assert peer.found("EXIT") == ["EXIT 0"]


async def test_sigterm_past_the_grace_period_cancels_the_job(driver: Any) -> None:
    peer = driver(seconds=60, grace=0.3).peer
    await peer.start()
    await peer.wait_for("TOOK")
    peer.signal(signal.SIGTERM)
    assert await peer.wait(timeout=10) == 0
    assert not peer.found("DONE")
    assert peer.found("ANSWER")[0].startswith(f"ANSWER {JobStatus.CANCELLED}")


async def test_sigint_cancels_and_exits_130(driver: Any) -> None:
    peer = driver(seconds=60, grace=30).peer
    await peer.start()
    await peer.wait_for("TOOK")
    peer.signal(signal.SIGINT)
    assert await peer.wait(timeout=10) == 130
    assert peer.found("ANSWER")[0].startswith(f"ANSWER {JobStatus.CANCELLED}")


async def test_runner_without_workers_returns_at_once() -> None:
    await within(WorkerRunner(handle_signals=False).run())


async def test_runner_runs_once() -> None:
    runner = WorkerRunner(handle_signals=False)
    await runner.run()
    with pytest.raises(RuntimeError, match="once"):
        await runner.run()
    late = BaseWorker("late")
    await runner.add_workers(late)  # logged and skipped, as in pipecat
    assert runner.get_worker("late") is None and late._registry is None


# --- natsbus run --------------------------------------------------------------------------


def test_load_worker() -> None:
    worker = load_worker("tests.peers.cli_workers:Idle", "idle-1")
    assert worker.name == "idle-1"
    assert load_worker("tests.peers.cli_workers:Idle", None).name == "idle"
    with pytest.raises(ValueError, match="module:WorkerClass"):
        load_worker("no-colon", None)
    with pytest.raises(ValueError, match="not a BaseWorker"):
        load_worker("tests.peers.cli_workers:not_a_worker", None)


def test_cli_reports_bad_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tests.peers.cli_workers:Missing", "--log-level=ERROR"]) == 2
    assert "Missing" in capsys.readouterr().err


async def test_natsbus_run_in_process_ends_on_sigterm() -> None:
    peer = Peer(
        "natsbus",
        "run",
        "tests.peers.cli_workers:Idle",
        "--name=idler",
        "--grace-period=1",
    )
    try:
        await peer.start(ready="ACTIVE idler")
        peer.signal(signal.SIGTERM)
        assert await peer.wait(timeout=10) == 0
        assert any("hosting worker 'idler' on the in-process bus" in line for line in peer.lines)
    finally:
        await peer.close()


def test_an_import_error_inside_the_users_module_names_its_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_app.py").write_text("import os\n\nimport not_installed_anywhere\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "broken_app:Worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, no traceback
    assert "No module named 'not_installed_anywhere'" in err
    assert f"({tmp_path / 'broken_app.py'}, line 3)" in err
    assert main(["run", "broken_app:Worker", "--debug"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
