"""A job to a worker nobody runs fails within its ready timeout, naming the worker."""

from __future__ import annotations

import time

import pytest

from natsbus.workers import JobParams, JobTimeoutError, WorkerNotFoundError

from helpers.workers import Client, Tool, running


async def test_a_misspelt_worker_fails_fast_with_its_name() -> None:
    client = Client()
    async with running(client, Tool("tool")):
        started = time.monotonic()
        with pytest.raises(WorkerNotFoundError, match="'tol'") as caught:
            async with client.job("tol", params=JobParams(ready_timeout=0.3)):
                pass
        assert time.monotonic() - started < 2.0
        assert isinstance(caught.value, JobTimeoutError) and caught.value.worker == "tol"
        assert client.job_groups == {}  # nothing left behind
        # The worker that does run still answers.
        async with client.job("tool", name="echo", payload={"x": 1}) as handle:
            pass
        assert handle.response is not None


def test_the_ready_timeout_is_positive_or_none() -> None:
    assert JobParams().ready_timeout == 30.0
    assert JobParams(ready_timeout=None).ready_timeout is None
    with pytest.raises(ValueError, match="ready_timeout"):
        JobParams(ready_timeout=0)
