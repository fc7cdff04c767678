"""BusClient and natsbus.connect: jobs, streams, cancels and messages without writing a worker."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest

import natsbus
from natsbus import AsyncQueueBus, BusClient, BusTTSSpeakMessage, JobStatus
from natsbus.bus.nats import JetStreamOptions
from natsbus.workers import JobError, JobEventKind, WorkerNotFoundError

from helpers.process import Peer
from helpers.workers import Spy, Tool, running, within


@pytest.fixture
async def tool_and_client() -> AsyncIterator[tuple[Tool, BusClient]]:
    bus = AsyncQueueBus()
    tool = Tool()
    async with running(tool, bus=bus), BusClient(bus, name="script", ready_timeout=1.0) as client:
        yield tool, client


async def test_a_client_runs_jobs_streams_and_cancels(
    tool_and_client: tuple[Tool, BusClient],
) -> None:
    tool, client = tool_and_client
    assert await client.request("tool", "echo", {"n": 1}) == {"echo": {"n": 1}}
    async with client.job("tool", name="progress") as job:
        kinds = [event.kind async for event in job]
    assert kinds.count(JobEventKind.STREAM_DATA) == 3 and job.response == {
        "done": True,
        "chunks": 3,
    }
    with pytest.raises(JobError) as failed:
        await client.request("tool", "boom")
    assert failed.value.status is JobStatus.ERROR and "kaput" in str(failed.value.response)
    slow = client.job("tool", name="slow")
    with pytest.raises(JobError) as cancelled:
        async with slow:
            await within(tool._event(tool.started, slow.job_id).wait())
            await client.cancel(slow.job_id, "changed my mind")
    assert "changed my mind" in str(cancelled.value)
    await within(tool._event(tool.cancelled, slow.job_id).wait())


async def test_a_job_for_a_worker_nobody_runs_raises_worker_not_found(
    tool_and_client: tuple[Tool, BusClient],
) -> None:
    _, client = tool_and_client
    began = time.monotonic()
    with pytest.raises(WorkerNotFoundError, match="'tol'"):
        await client.request("tol", "echo")
    assert time.monotonic() - began < 3.0  # the client's ready_timeout, 1 s


async def test_a_client_sends_as_itself_and_watches_what_reaches_it() -> None:
    bus = AsyncQueueBus()
    spy = Spy("listener")
    async with running(spy, bus=bus), BusClient(bus, name="script") as client:
        with pytest.raises(ValueError, match="source must be 'script'"):
            await client.publish(BusTTSSpeakMessage("hi", source="listener", target="listener"))
        await client.publish(BusTTSSpeakMessage("hi", source="script", target="listener"))
        await within(spy.changed.until(lambda: bool(spy.of(BusTTSSpeakMessage))))
        watching = client.watch(size=10)
        received = asyncio.ensure_future(anext(watching))
        await asyncio.sleep(0)
        await spy.send_bus_message(BusTTSSpeakMessage("back", source="listener", target="script"))
        message = await within(received)
        assert isinstance(message, BusTTSSpeakMessage) and message.text == "back"
        await watching.aclose()


async def test_closing_a_client_ends_nobody_else() -> None:
    bus = AsyncQueueBus()
    tool = Tool()
    async with running(tool, bus=bus) as runner:
        async with BusClient(bus) as client:
            assert await client.request("tool", "echo", {}) == {"echo": {}}
        await asyncio.sleep(0.1)
        assert tool.active and runner.registry.get("tool") is not None
        async with BusClient(bus) as another:  # the worker still serves
            assert await another.request("tool", "echo", {"again": True}) == {
                "echo": {"again": True}
            }


async def test_connect_runs_a_job_a_stream_and_a_cancel_on_a_worker_in_another_process(
    nats_url: str,
) -> None:
    channel = f"client-{uuid.uuid4().hex[:8]}"
    peer = Peer("tests.peers.runner_peer", f"--url={nats_url}", f"--channel={channel}",
                "--runner=remote", "--sleeper=remote-tool")  # fmt: skip
    await peer.start()
    try:
        options = JetStreamOptions(ack_wait=5)
        async with natsbus.connect(nats_url, channel=channel, jetstream_options=options) as client:
            answer = await within(client.request("remote-tool", "sleep", {"seconds": 0}), 15)
            assert isinstance(answer, dict) and answer["pid"] != 0
            async with client.job("remote-tool", name="progress") as job:
                events = [(event.kind, event.data) async for event in job]
            assert [data for kind, data in events if kind is JobEventKind.UPDATE] == [
                {"step": 0},
                {"step": 1},
            ]
            chunks = [data for kind, data in events if kind is JobEventKind.STREAM_DATA]
            assert chunks == [{"chunk": "a"}, {"chunk": "b"}, {"chunk": "c"}]
            slow = client.job("remote-tool", name="sleep", payload={"seconds": 3600})
            with pytest.raises(JobError) as cancelled:
                async with slow:
                    await peer.wait_for("TOOK")
                    await client.cancel(slow.job_id, "enough")
            assert cancelled.value.status is JobStatus.CANCELLED
        # The client closed: the remote worker still serves.
        peer.signal(signal.SIGTERM)
        assert await peer.wait(15) == 0
    finally:
        await peer.close()


async def test_every_answered_job_is_one_debug_line(
    tool_and_client: tuple[Tool, BusClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = tool_and_client
    caplog.set_level(logging.DEBUG, logger="natsbus.workers.executor")
    await client.request("tool", "echo", {})
    with pytest.raises(JobError):
        await client.request("tool", "boom")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job ")]
    assert len(lines) == 2
    assert "worker=tool name=echo status=completed duration=" in lines[0]
    assert "name=boom status=error" in lines[1] and "requester=script" in lines[1]


async def test_a_client_runs_one_job_on_several_workers_as_a_group() -> None:
    bus = AsyncQueueBus()
    async with running(Tool("left"), Tool("right"), bus=bus), BusClient(bus) as client:
        group = client.job_group("left", "right", name="echo", payload={"n": 2})
        async with group:
            pass
    assert dict(group.responses) == {"left": {"echo": {"n": 2}}, "right": {"echo": {"n": 2}}}
    assert set(group.statuses.values()) == {JobStatus.COMPLETED}
