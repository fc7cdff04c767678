"""NatsConnections: buses of many channels on one connection pair, apart as if on their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from natsbus import BusClosedError, NatsBus, NatsConnections
from natsbus.bus import WorkerBus
from natsbus.bus.nats import JetStreamOptions
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.messages import BusDeactivateWorkerMessage, BusEndMessage, BusTTSSpeakMessage
from natsbus.testing import NatsServer
from natsbus.testing.contract import BusContract, Recorder

from helpers.workers import Client, Tool, running

CHANNELS = 20


def monitor(server: NatsServer, endpoint: str) -> Any:
    with urllib.request.urlopen(f"{server.monitor_url}/{endpoint}", timeout=5) as response:
        return json.load(response)


async def settled(read: Any, wanted: int) -> int:
    """What ``read()`` gives once the server had a moment to reach ``wanted``."""
    for _ in range(100):
        if read() == wanted:
            break
        await asyncio.sleep(0.02)
    return int(read())


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(store_dir=tmp_path / "s", monitor_port=0) as server:
        yield server


def session_bus(connections: NatsConnections, channel: str) -> NatsBus:
    return NatsBus(
        connections=connections,
        channel=channel,
        jetstream_options=JetStreamOptions(ack_wait=5),
    )


class TestNatsBusOnSharedConnections(BusContract):
    """The whole bus contract holds for a bus on a pair another channel's bus uses too."""

    restarts = False

    @pytest.fixture
    async def bus(self, nats_url: str) -> AsyncIterator[WorkerBus]:
        async with NatsConnections(nats_url) as connections:
            neighbour = NatsBus(connections=connections, channel="neighbour")
            await neighbour.start()
            bus = NatsBus(connections=connections, channel="contract")
            yield bus
            await bus.stop()
            await neighbour.stop()


def texts(recorder: Recorder) -> list[str]:
    return [m.text for m in recorder.received if isinstance(m, BusTTSSpeakMessage)]


def subscriptions(server: NatsServer) -> int:
    return int(monitor(server, "subsz")["num_subscriptions"])


async def test_buses_of_many_channels_share_two_connections_and_stay_apart(
    server: NatsServer,
) -> None:
    async with NatsConnections(server.url) as connections:
        recorders = [Recorder(f"r{i}") for i in range(CHANNELS)]
        buses = [session_bus(connections, f"session {i}.x") for i in range(CHANNELS)]
        for bus, recorder in zip(buses, recorders, strict=True):
            await bus.subscribe(recorder)
            await bus.start()
            if bus is buses[-2]:
                before_last = subscriptions(server)
        assert monitor(server, "connz")["num_connections"] == 2
        assert connections.buses == CHANNELS
        for i, bus in enumerate(buses):
            await bus.send(BusTTSSpeakMessage(text=f"to {i}", source=f"sender{i}"))
        for i, recorder in enumerate(recorders):
            await recorder.wait_for_text(f"to {i}")
        await asyncio.sleep(0.1)  # anything misrouted would have arrived by now
        assert [texts(r) for r in recorders] == [[f"to {i}"] for i in range(CHANNELS)]
        # A bus stopping leaves on the server nothing of its own (its subscriptions, its
        # consumers' subscriptions), and nothing of the others' goes with it.
        await buses.pop().stop()
        assert await settled(lambda: subscriptions(server), before_last) == before_last
        await buses[0].send(BusTTSSpeakMessage(text="still here", source="sender0"))
        await recorders[0].wait_for_text("still here")
        for bus in buses:
            await bus.stop()
        assert connections.buses == 0
        assert connections.is_open  # the buses stopped; the pair is its owner's to close
    assert await settled(lambda: monitor(server, "connz")["num_connections"], 0) == 0


async def test_jobs_of_two_sessions_on_one_pair_reach_only_their_own_workers(
    server: NatsServer,
) -> None:
    async with NatsConnections(server.url) as connections:
        tool_a, client_a, tool_b, client_b = Tool(), Client(), Tool(), Client()
        async with (
            running(tool_a, client_a, bus=session_bus(connections, "a")),
            running(tool_b, client_b, bus=session_bus(connections, "b")),
        ):
            for client, tool, other in ((client_a, tool_a, tool_b), (client_b, tool_b, tool_a)):
                async with client.job("tool", name="echo", payload={"n": 1}, timeout=10) as j:
                    pass
                assert j.response == {"echo": {"n": 1}}
                assert j.job_id in tool.ran and j.job_id not in other.ran
        assert monitor(server, "connz")["num_connections"] == 2


def consumers_of(server: NatsServer, stream_name: str) -> list[str]:
    jsz = monitor(server, "jsz?consumers=true")
    return [
        consumer["name"]
        for account in jsz.get("account_details", [])
        for stream in account.get("stream_detail", [])
        if stream["name"] == stream_name
        for consumer in stream.get("consumer_detail", [])
    ]


def job_stream_consumers(server: NatsServer) -> list[str]:
    return consumers_of(server, "NATSBUS_JOBS")


async def test_the_buses_of_a_pair_share_its_two_instance_consumers_and_get_only_their_own(
    server: NatsServer,
) -> None:
    async with NatsConnections(server.url) as connections:
        recorders = {channel: Recorder("listener") for channel in "abcde"}
        buses = [session_bus(connections, channel) for channel in recorders]
        for bus, recorder in zip(buses, recorders.values(), strict=True):
            await bus.subscribe(recorder)
            await bus.start()
        # Two for the pair, whatever the number of buses on it.
        assert sorted(job_stream_consumers(server)) == [
            f"inst_{connections.instance}_data",
            f"inst_{connections.instance}_sys",
        ]
        outside = NatsBus(servers=server.url, channel="a")  # its own connections
        await outside.start()
        try:
            # In channel a: for a target nobody in a listens for (b's listener), for a's
            # listener, then a broadcast.
            for message in (
                BusDeactivateWorkerMessage(source="outside", target=recorders["b"].name),
                BusDeactivateWorkerMessage(source="outside", target=recorders["a"].name),
                BusEndMessage(source="outside", reason="the end"),
            ):
                await outside.send(message)
            await recorders["a"].wait_until(
                lambda: any(isinstance(m, BusEndMessage) for m in recorders["a"].received)
            )
            await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
        finally:
            await outside.stop()
        lifecycle = (BusDeactivateWorkerMessage, BusEndMessage)
        assert [
            (type(m), m.target) for m in recorders["a"].received if isinstance(m, lifecycle)
        ] == [(BusDeactivateWorkerMessage, recorders["a"].name), (BusEndMessage, None)]
        for channel in "bcde":
            assert not [m for m in recorders[channel].received if isinstance(m, lifecycle)]
        for bus in buses:
            await bus.stop()
    # The pair deletes its consumers as it closes.
    assert await settled(lambda: len(job_stream_consumers(server)), 0) == 0


def tool_consumers(server: NatsServer) -> list[str]:
    # The outside client's own request consumer is not the point.
    return [name for name in consumers_of(server, "NATSBUS_JOBS_REQUESTS") if "_tool_" in name]


async def test_a_worker_on_a_pair_makes_its_request_consumer_at_its_first_request(
    server: NatsServer,
) -> None:
    outside_client = Client("outside")
    async with (
        NatsConnections(server.url) as connections,
        running(outside_client, bus=session_bus_of_its_own(server, "late")),
    ):
        # Stored before any bus hosts the worker: found when its doorbell starts listening.
        early = asyncio.create_task(job_answer(outside_client, n=1))
        await asyncio.sleep(0.3)
        tool, late_tool, own_client = Tool(), Tool(), Client()
        async with (
            running(tool, own_client, bus=session_bus(connections, "idle")),
            running(late_tool, bus=session_bus(connections, "late")),
        ):
            assert await early == {"echo": {"n": 1}}
            assert tool_consumers(server) == [SubjectLayout("late").job_consumer("tool")]
            # An idle worker holds no consumer; a request from its own bus (which the pair,
            # connected with no echo, does not hear) makes it.
            assert await job_answer(own_client, n=2) == {"echo": {"n": 2}}
            assert sorted(tool_consumers(server)) == sorted(
                SubjectLayout(c).job_consumer("tool") for c in ("idle", "late")
            )
            # And later requests go through it.
            assert await job_answer(outside_client, n=3) == {"echo": {"n": 3}}
            assert len(late_tool.ran) == 2 and len(tool.ran) == 1


def session_bus_of_its_own(server: NatsServer, channel: str) -> NatsBus:
    return NatsBus(
        servers=server.url, channel=channel, jetstream_options=JetStreamOptions(ack_wait=5)
    )


async def job_answer(client: Client, n: int) -> Any:
    async with client.job("tool", name="echo", payload={"n": n}, timeout=10) as j:
        pass
    return j.response


async def test_every_bus_on_the_pair_takes_jobs_again_after_the_server_restarts(
    server: NatsServer,
) -> None:
    async with NatsConnections(server.url) as connections:
        pairs = [(Tool(), Client()) for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            for i, (tool, client) in enumerate(pairs):
                await stack.enter_async_context(
                    running(tool, client, bus=session_bus(connections, f"s{i}"))
                )
            await server.restart()
            for tool, client in pairs:  # each runs its own session's job
                tool.ran.clear()
                async with client.job("tool", name="echo", payload={"n": 2}, timeout=15) as j:
                    pass
                assert j.response == {"echo": {"n": 2}}
                assert tool.ran == [j.job_id]


async def test_a_second_bus_of_one_channel_on_a_pair_is_refused(nats_url: str) -> None:
    # The pair has no echo: two buses of one channel on it would miss each other's messages.
    async with NatsConnections(nats_url) as connections:
        first = session_bus(connections, "same")
        await first.start()
        with pytest.raises(ValueError, match="one bus per connection pair"):
            await session_bus(connections, "same").start()
        await first.stop()
        again = session_bus(connections, "same")  # the channel is free again
        await again.start()
        await again.stop()


async def test_a_closed_pair_cannot_start_a_bus(nats_url: str) -> None:
    connections = NatsConnections(nats_url)
    await connections.open()
    await connections.close()
    with pytest.raises(BusClosedError):
        await session_bus(connections, "late").start()


def test_a_bus_takes_the_pair_or_its_own_servers_not_both(nats_url: str) -> None:
    with pytest.raises(ValueError, match="not both"):
        NatsBus(connections=NatsConnections(nats_url), servers=nats_url)
