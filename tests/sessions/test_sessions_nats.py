"""Sessions on real nats-servers, with serving processes and a service worker as child processes."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

import natsbus
from natsbus.errors import SessionFailedError, SessionStartError, SessionStartTimeoutError
from natsbus.messages import BusCancelMessage, BusEndMessage
from natsbus.sessions import Outcome, SessionHandle
from natsbus.testing import NatsServer
from natsbus.workers import JobError

from helpers.process import Peer

SERVE_PEER = "tests.peers.serve_peer"
FAILURE_BOUND = 15.0
"""Seconds within which a requester must learn its process died (4 heartbeats of 0.5 s, plus
a loaded machine's slack)."""


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(store_dir=tmp_path / "ns", monitor_port=0) as running:
        yield running


class Fleet:
    """Child processes of one test: serving processes and service workers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peers: list[Peer] = []

    async def serve(self, *args: str, slots: int = 30) -> tuple[Peer, str]:
        peer = Peer(SERVE_PEER, f"--url={self.url}", f"--slots={slots}", *args)
        self.peers.append(peer)
        await peer.start(ready="READY", timeout=30)
        return peer, peer.found("READY")[0].split()[1]

    async def service(self, *args: str) -> Peer:
        peer = Peer(
            "natsbus",
            "run",
            "tests.peers.session_apps:Tts",
            "--service",
            "--channel=services",
            f"--nats-url={self.url}",
            "--no-metrics",
            *args,
        )
        self.peers.append(peer)
        await peer.start(ready="ACTIVE tts", timeout=30)
        return peer

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()


@pytest_asyncio.fixture
async def fleet(server: NatsServer) -> AsyncIterator[Fleet]:
    running = Fleet(server.url)
    try:
        yield running
    finally:
        await running.close()


async def start_many(client: natsbus.BusClient, count: int, **args: object) -> list[SessionHandle]:
    return list(
        await asyncio.gather(
            *(
                client.start_session("voice", args={"n": i, **args}, timeout=60)
                for i in range(count)
            )
        )
    )


async def echo(session: SessionHandle) -> dict[str, object]:
    answer = await session.request("talker", "echo", {"id": session.id}, timeout=20)
    assert answer is not None
    return answer


async def test_fifty_sessions_on_two_processes_of_thirty_slots(fleet: Fleet) -> None:
    (_, host_a), (_, host_b) = await fleet.serve(), await fleet.serve()
    async with natsbus.connect(fleet.url) as client:
        sessions = await start_many(client, 50)
        per_host = collections.Counter(s.host for s in sessions)
        assert set(per_host) <= {host_a, host_b}
        assert sum(per_host.values()) == 50
        assert max(per_host.values()) <= 30, per_host  # none on a full process
        assert len({s.channel for s in sessions}) == 50  # a channel each
        answers = await asyncio.gather(*(echo(s) for s in sessions))
        for session, answer in zip(sessions, answers, strict=True):
            assert answer["echo"] == {"id": session.id}
            assert answer["channel"] == session.channel
        for session in sessions:
            await session.end("test over")
        ends = await asyncio.gather(*(s.wait(30) for s in sessions))
        assert {end.outcome for end in ends} == {Outcome.ENDED}
        for session in sessions:
            await session.close()


async def test_a_full_process_takes_no_session_until_a_slot_frees(fleet: Fleet) -> None:
    await fleet.serve(slots=2)
    async with natsbus.connect(fleet.url) as client:
        first, second = await start_many(client, 2)
        third = asyncio.ensure_future(client.start_session("voice", args={}, timeout=60))
        await asyncio.sleep(1.5)  # room for a wrong take; the check is that none happened
        assert not third.done()
        await first.end("make room")
        assert (await first.wait(20)).outcome is Outcome.ENDED
        started = await asyncio.wait_for(third, 30)
        assert (await echo(started))["channel"] == started.channel
        for session in (second, started):
            await session.cancel("test over")
            assert (await session.wait(20)).outcome is Outcome.CANCELLED
            await session.close()
        await first.close()


async def test_ending_one_session_stops_only_its_workers(fleet: Fleet) -> None:
    await fleet.serve()
    tts = await fleet.service()
    async with natsbus.connect(fleet.url) as client:
        sessions = await start_many(client, 3)
        ender, others = sessions[0], sessions[1:]
        # Its own worker ends it (self.end()), and tries to end the services too.
        await ender.request("talker", "end_services", {}, timeout=20)
        await ender.request("talker", "end", {}, timeout=20)
        end = await ender.wait(20)
        assert end.outcome is Outcome.ENDED and end.reason == "done"
        for session in others:
            assert (await echo(session))["channel"] == session.channel
            spoken = await session.request("talker", "speak", {"text": "still here"}, timeout=20)
            assert spoken is not None and spoken["audio"] == "STILL HERE"
        assert tts.returncode is None
        for session in sessions:
            await session.close()
        for session in others:
            await session.end("test over")
            await session.wait(20)


async def test_a_clients_end_on_the_service_channel_does_not_stop_the_service(fleet: Fleet) -> None:
    tts = await fleet.service()
    async with natsbus.connect(fleet.url, channel="services") as client:
        await client.publish(BusEndMessage("client says end", source=client.name))
        await client.publish(BusCancelMessage("client says cancel", source=client.name))
        await asyncio.sleep(0.5)  # room for a wrong stop; what matters is the answer below
        answer = await client.request("tts", "say", {"text": "alive"}, timeout=20)
        assert answer is not None and answer["audio"] == "ALIVE"
    assert tts.returncode is None
    assert await tts.stop(timeout=20) == 0  # SIGTERM still ends it


async def test_a_clients_end_on_the_deployment_channel_does_not_stop_serving(fleet: Fleet) -> None:
    serving, _ = await fleet.serve()
    async with natsbus.connect(fleet.url) as client:
        session = await client.start_session("voice", timeout=30)
        await client.publish(BusEndMessage("client says end", source=client.name))
        await asyncio.sleep(0.5)
        assert (await echo(session))["channel"] == session.channel
        later = await client.start_session("voice", timeout=30)
        for each in (session, later):
            await each.end("test over")
            await each.wait(20)
            await each.close()
    assert serving.returncode is None


async def test_sigkill_of_a_serving_process_fails_its_sessions_in_bounded_time(
    fleet: Fleet,
) -> None:
    doomed, doomed_id = await fleet.serve(slots=3)
    async with natsbus.connect(fleet.url) as client:
        on_doomed = await start_many(client, 3)
        assert {s.host for s in on_doomed} == {doomed_id}
        survivor_peer, survivor_id = await fleet.serve(slots=3)
        survivor = await client.start_session("voice", timeout=30)
        assert survivor.host == survivor_id
        killed_at = time.monotonic()
        await doomed.kill()
        for session in on_doomed:
            with pytest.raises(SessionFailedError):
                await session.wait(FAILURE_BOUND)
        assert time.monotonic() - killed_at < FAILURE_BOUND
        assert (await echo(survivor))["channel"] == survivor.channel
        await survivor.end("test over")
        assert (await survivor.wait(20)).outcome is Outcome.ENDED
        for session in [*on_doomed, survivor]:
            await session.close()
    assert survivor_peer.returncode is None


async def test_sigterm_takes_no_new_session_and_finishes_the_running_ones(fleet: Fleet) -> None:
    draining, draining_id = await fleet.serve("--grace-period=60")
    async with natsbus.connect(fleet.url) as client:
        running = await start_many(client, 2)
        draining.signal(__import__("signal").SIGTERM)
        await asyncio.sleep(1.0)  # the drain has begun (pausing is local and quick)
        pending = asyncio.ensure_future(client.start_session("voice", timeout=60))
        await asyncio.sleep(1.5)
        assert not pending.done()  # the draining process did not take it
        for session in running:
            assert (await echo(session))["channel"] == session.channel  # still running
        _, fresh_id = await fleet.serve()
        fresh = await asyncio.wait_for(pending, 30)
        assert fresh.host == fresh_id != draining_id
        for session in running:
            await session.end("call over")
            assert (await session.wait(20)).outcome is Outcome.ENDED
        assert await draining.wait(30) == 0
        for session in [*running, fresh]:
            await session.close()
        await fresh.end("test over")


async def test_bad_session_requests_get_typed_errors_and_the_process_goes_on(
    fleet: Fleet,
) -> None:
    serving, _ = await fleet.serve()
    async with natsbus.connect(fleet.url) as client:
        with pytest.raises(SessionStartError, match="factory raised ValueError: asked to fail"):
            await client.start_session("voice", args={"fail": True}, timeout=20)
        with pytest.raises(SessionStartError, match="not workers"):
            await client.start_session("voice", args={"not_workers": True}, timeout=20)
        with pytest.raises(TypeError):
            await client.start_session("voice", args=["not", "a", "dict"], timeout=20)  # type: ignore[arg-type]
        with pytest.raises(SessionStartTimeoutError):
            await client.start_session("no such group", timeout=1)
        # A malformed request sent by hand, without the client's handle: a clear error answer.
        with pytest.raises(JobError, match="bad session_id"):
            await client.request("voice", "session", {"args": {}}, timeout=20)
        with pytest.raises(JobError, match="args must be a dict"):
            await client.request("voice", "session", {"session_id": "x", "args": [1]}, timeout=20)
        session = await client.start_session("voice", args={"name": "a.b c"}, timeout=20)
        assert (await echo(session))["channel"] == session.channel
        await session.end("test over")
        await session.wait(20)
        await session.close()
    assert serving.returncode is None


async def test_a_group_with_dots_and_spaces(fleet: Fleet) -> None:
    await fleet.serve("--group=voice.eu west")
    async with natsbus.connect(fleet.url) as client:
        session = await client.start_session("voice.eu west", timeout=30)
        assert (await echo(session))["channel"] == session.channel
        async with session:  # leaving ends it
            pass
        assert session.done


async def test_a_sessions_consumers_live_in_memory_and_go_with_it(fleet: Fleet) -> None:
    from nats.aio.client import Client as Nats

    from natsbus.bus.nats.layout import SubjectLayout

    await fleet.serve()
    nc = Nats()
    await nc.connect(fleet.url)
    try:
        js = nc.jetstream()
        async with natsbus.connect(fleet.url) as client:
            session = await client.start_session("voice", timeout=30)
            layout = SubjectLayout(session.channel)
            # An idle session holds no request consumer: its first job makes it.
            names = {c.name for c in await js.consumers_info(layout.request_stream)}
            assert layout.job_consumer("talker") not in names
            await session.request("talker", "echo", {}, timeout=20)
            info = await js.consumer_info(layout.request_stream, layout.job_consumer("talker"))
            assert info.config.mem_storage  # made and deleted per session: no disk writes
            await session.cancel("test over")
            await session.wait(20)
            await session.close()
        names = {c.name for c in await js.consumers_info(layout.request_stream)}
        assert layout.job_consumer("talker") not in names
        assert layout.job_consumer("listener") not in names
    finally:
        await nc.close()
