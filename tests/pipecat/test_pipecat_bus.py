"""natsbus.pipecat.NatsBus as pipecat's code sees it: a WorkerBus whose subscribers get
pipecat's messages, local-only ones kept in the process, unsubscribed ones nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pipecat.bus.messages as pm
import pytest
import pytest_asyncio
from pipecat.bus.bus import WorkerBus as PipecatWorkerBus

from natsbus import NatsBus as CoreNatsBus
from natsbus.pipecat import NatsBus

from helpers.pipecat import Recorder


@pytest_asyncio.fixture
async def pair(nats_url: str, channel: str) -> AsyncIterator[tuple[NatsBus, NatsBus]]:
    here, there = (NatsBus(servers=nats_url, channel=channel) for _ in range(2))
    for bus in (here, there):
        await bus.start()
    yield here, there
    for bus in (here, there):
        await bus.stop()


async def test_it_is_a_pipecat_worker_bus_and_its_messages_are_pipecats(
    pair: tuple[NatsBus, NatsBus],
) -> None:
    here, there = pair
    assert isinstance(here, PipecatWorkerBus)
    assert isinstance(here.core, CoreNatsBus)
    remote = Recorder("remote")
    await there.subscribe(remote)
    await here.send(pm.BusEndWorkerMessage(source="a", target="remote", reason="bye"))
    got = await remote.next_message()
    assert type(got) is pm.BusEndWorkerMessage
    assert (got.source, got.target, got.reason) == ("a", "remote", "bye")


async def test_every_subscriber_of_a_process_gets_the_same_pipecat_message(
    pair: tuple[NatsBus, NatsBus],
) -> None:
    here, there = pair
    first, second = Recorder("first"), Recorder("second")
    for recorder in (first, second):
        await there.subscribe(recorder)
    for n in range(3):
        await here.send(pm.BusTTSSpeakMessage(source="a", text=f"say {n}"))
    for recorder in (first, second):
        while len(recorder.messages) < 3:
            await recorder.next_message()
    assert [m.text for m in first.messages] == ["say 0", "say 1", "say 2"]  # type: ignore[attr-defined]
    assert all(a is b for a, b in zip(first.messages, second.messages, strict=True))


async def test_a_local_only_message_reaches_this_processs_subscribers_and_stays_here(
    pair: tuple[NatsBus, NatsBus],
) -> None:
    here, there = pair
    local, remote = Recorder("local"), Recorder("remote")
    await here.subscribe(local)
    await there.subscribe(remote)
    message = pm.BusWorkerLocalErrorMessage(source="child", target="local", error="boom")
    await here.send(message)
    assert await local.next_message() is message  # the very object, as in pipecat
    await here.send(pm.BusEndMessage(source="child", reason="after"))
    assert type(await remote.next_message()) is pm.BusEndMessage
    assert [type(m) for m in remote.messages] == [pm.BusEndMessage]


async def test_an_unsubscribed_subscriber_gets_nothing_more(
    pair: tuple[NatsBus, NatsBus],
) -> None:
    here, there = pair
    remote = Recorder("remote")
    await there.subscribe(remote)
    await there.subscribe(remote)  # idempotent
    with pytest.raises(ValueError, match="already subscribed"):
        await there.subscribe(Recorder("remote"))
    await here.send(pm.BusCancelWorkerMessage(source="a", target="remote"))
    await remote.next_message()
    await there.unsubscribe(remote)
    await here.send(pm.BusCancelWorkerMessage(source="a", target="remote"))
    await here.core.flush(5)
    await asyncio.sleep(0.3)
    assert len(remote.messages) == 1


def test_a_core_bus_or_connection_arguments_not_both(nats_url: str) -> None:
    with pytest.raises(ValueError, match="not both"):
        NatsBus(servers=nats_url, core=CoreNatsBus(servers=nats_url))


def test_the_public_surface_of_natsbus_pipecat_is_pinned() -> None:
    import natsbus.pipecat as public

    assert sorted(public.__all__) == [
        "FrameMap",
        "MessageMap",
        "NatsBus",
        "default_frames",
        "default_messages",
        "mapped_frame_types",
        "register_frame_type",
        "register_message_type",
    ]
    assert all(hasattr(public, name) for name in public.__all__)
