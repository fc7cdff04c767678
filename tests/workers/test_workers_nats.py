"""Workers and runners over NatsBus, across OS processes, on a real nats-server."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.messages import JobStatus
from natsbus.workers import JobError, JobEventKind, WorkerRunner

from helpers.process import Peer
from helpers.workers import Client, Tool, Watcher, running, within

PEER = "tests.peers.runner_peer"


def nats_bus(url: str, channel: str) -> NatsBus:
    return NatsBus(servers=url, channel=channel, jetstream_options=JetStreamOptions(ack_wait=5))


@pytest.fixture
def channel() -> str:
    return f"workers-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def peers(nats_url: str, channel: str) -> AsyncIterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def make(*args: str) -> Peer:
        peer = Peer(PEER, f"--url={nats_url}", f"--channel={channel}", *args)
        started.append(peer)
        return peer

    yield make
    for peer in started:
        await peer.close()


async def test_registry_discovery_between_two_runner_processes(peers: Any) -> None:
    first = peers("--runner=runner-a", "--watcher=alpha", "--watch=beta")
    await first.start()
    # The second runner joins late, after the first has published its snapshot.
    late = peers("--runner=runner-b", "--sleeper=beta", "--watcher=bwatch", "--watch=alpha")
    await late.start()
    assert await first.wait_for("SEEN beta") == "SEEN beta runner-b False"
    assert await late.wait_for("SEEN alpha") == "SEEN alpha runner-a False"
    for peer in (first, late):
        peer.signal(signal.SIGTERM)
    assert [await first.wait(10), await late.wait(10)] == [0, 0]


async def test_a_job_for_a_worker_on_three_runner_processes_is_handled_once(
    peers: Any, nats_url: str, channel: str
) -> None:
    replicas = [peers(f"--runner=r{i}", "--sleeper=shared") for i in range(3)]
    await asyncio.gather(*(peer.start() for peer in replicas))
    client = Client()
    async with running(client, bus=nats_bus(nats_url, channel)) as runner:
        await within(runner.registry.wait_ready(["shared"]), 15)

        async def one() -> Any:
            async with client.job("shared", name="sleep", payload={"seconds": 0.05}) as j:
                pass
            return j.response

        responses = await within(asyncio.gather(*(one() for _ in range(12))), 30)
    job_ids = [r["job"] for r in responses]
    assert len(set(job_ids)) == 12
    took = [line.split()[1] for peer in replicas for line in peer.found("TOOK")]
    assert sorted(took) == sorted(job_ids)  # each job ran once, on one replica
    for peer in replicas:
        peer.signal(signal.SIGTERM)
        assert await peer.wait(10) == 0


async def test_sigterm_with_a_running_job_finishes_it_and_exits_0(
    peers: Any, nats_url: str, channel: str
) -> None:
    host = peers("--runner=host", "--sleeper=slow", "--grace=10")
    await host.start()
    client = Client()
    async with running(client, bus=nats_bus(nats_url, channel)) as runner:
        await within(runner.registry.wait_ready(["slow"]), 15)
        async with client.job("slow", name="sleep", payload={"seconds": 1.0}) as j:
            await host.wait_for("TOOK")
            sent = time.monotonic()
            host.signal(signal.SIGTERM)
        assert j.status is JobStatus.COMPLETED
        assert await host.wait(10) == 0
        assert time.monotonic() - sent < 10
    assert host.found("DONE") and host.found("EXIT 0")


async def test_job_api_over_nats(nats_url: str, channel: str) -> None:
    tool, client = Tool(), Client()
    async with running(tool, client, bus=nats_bus(nats_url, channel)):
        async with client.job("tool", name="progress", timeout=10) as j:
            kinds = [e.kind async for e in j]
        assert kinds == [JobEventKind.UPDATE] * 3 + [
            JobEventKind.STREAM_START,
            *[JobEventKind.STREAM_DATA] * 3,
            JobEventKind.STREAM_END,
        ]
        assert j.response == {"done": True, "chunks": 3}
        with pytest.raises(JobError) as caught:
            async with client.job("tool", name="slow") as j:
                await within(tool._event(tool.started, j.job_id).wait(), 10)
                await j.cancel("stop")
        assert caught.value.status is JobStatus.CANCELLED
        with pytest.raises(JobError, match="kaput"):
            async with client.job("tool", name="boom", timeout=10):
                pass


async def test_watched_remote_worker_fires_on_worker_ready_locally(
    peers: Any, nats_url: str, channel: str
) -> None:
    watcher = Watcher("local-watcher")
    async with running(watcher, bus=nats_bus(nats_url, channel), name="local-runner"):
        await watcher.watch_workers("remote-sleeper")
        remote = peers("--runner=remote-runner", "--sleeper=remote-sleeper")
        await remote.start()
        await watcher.changed.until(lambda: bool(watcher.ready), 15)
        (data,) = watcher.ready
        assert (data.worker_name, data.runner, data.local) == (
            "remote-sleeper",
            "remote-runner",
            False,
        )
        remote.signal(signal.SIGTERM)
        assert await remote.wait(10) == 0


async def test_group_over_two_workers_of_one_bus(nats_url: str, channel: str) -> None:
    one, two, client = Tool("one"), Tool("two"), Client()
    async with running(one, two, client, bus=nats_bus(nats_url, channel)):
        async with client.job_group("one", "two", name="echo", payload={"x": 1}, timeout=10) as g:
            pass
        assert g.statuses == {"one": JobStatus.COMPLETED, "two": JobStatus.COMPLETED}


async def test_ending_one_runner_leaves_the_replicas_on_others(nats_url: str, channel: str) -> None:
    class Parent(Tool):
        async def on_activated(self, args: Any) -> None:
            await self.add_workers(Tool("child"))

    runners = [
        WorkerRunner(bus=nats_bus(nats_url, channel), name=f"r{i}", handle_signals=False)
        for i in range(2)
    ]
    parents = [Parent("parent"), Parent("parent")]
    for runner, parent in zip(runners, parents, strict=True):
        await runner.add_workers(parent)
    runs = [asyncio.create_task(r.run()) for r in runners]
    for runner in runners:
        await within(runner.registry.wait_ready(["parent", "child"]), 15)
    await runners[0].end("scale down")
    await within(runs[0], 15)
    survivor = runners[1].get_worker("child")
    assert survivor is not None and survivor.state.value == "ready"
    assert parents[1].state.value == "ready"
    await runners[1].cancel()
    await within(runs[1], 15)
