"""Jobs across a stream-leader SIGKILL and across worker processes SIGKILLed every second.

On a real 3-node cluster, with worker processes, through the harness of ``bench/failover.py``
(which prints the latencies; here the guarantees are asserted): no job is lost, and no job
whose answer was stored runs again.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from helpers.tools import ROOT


def failover() -> ModuleType:
    spec = importlib.util.spec_from_file_location("failover", ROOT / "bench" / "failover.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["failover"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
async def test_a_stream_leader_killed_under_steady_load_loses_no_job_and_runs_none_twice() -> None:
    bench = failover()
    run = await bench.leader_kill(steady=5.0, after=20.0)  # 2,000 jobs at 80 jobs/s
    result = bench.tally(run)
    assert len(run.outcomes) == 2_000
    assert result.lost == []
    assert result.duplicates == 0
    assert result.faulty  # jobs did flow across the fault


@pytest.mark.timeout(180)
async def test_worker_processes_killed_every_second_lose_no_job_and_run_none_twice() -> None:
    bench = failover()
    run = await bench.worker_kills(steady=2.0, killing=20.0)
    result = bench.tally(run)
    assert result.lost == []
    assert result.duplicates == 0
    assert len(run.workers) >= 3 + 19  # a kill (and a fresh worker) every second
