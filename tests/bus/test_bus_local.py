"""AsyncQueueBus: the bus contract, plus what is particular to the in-process bus."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from natsbus import _ids
from natsbus.bus import (
    AsyncQueueBus,
    BusState,
    BusSubscriber,
    Lane,
    WorkerBus,
    union_targets,
)
from natsbus.messages import BusActivateWorkerMessage, BusMessage
from natsbus.testing.contract import BusContract, Recorder, data, system, unique


class TestAsyncQueueBus(BusContract):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[WorkerBus]:
        bus = AsyncQueueBus()
        yield bus
        await bus.stop()


async def test_targeted_messages_reach_every_local_subscriber() -> None:
    # As in the reference: the in-process bus does not filter; subscribers look at target.
    tag = unique("targeted")
    addressee, bystander = Recorder("addressee"), Recorder("bystander")
    async with AsyncQueueBus() as bus:
        await bus.subscribe(addressee)
        await bus.subscribe(bystander)
        await bus.send(BusActivateWorkerMessage(source=tag, target=addressee.name))
        for recorder in (addressee, bystander):
            await recorder.wait_until(lambda r=recorder: r.count(tag) == 1)


async def test_stop_from_inside_a_handler_lets_it_finish() -> None:
    tag = unique("self-stop")
    bus = AsyncQueueBus()
    finished = asyncio.Event()

    async def stop_bus(message: BusMessage) -> None:
        await bus.stop()
        finished.set()

    recorder = Recorder("stopper", behaviour=stop_bus)
    await bus.subscribe(recorder)
    for seq in range(3):
        await bus.send(data(tag, seq))
    await bus.start()
    await asyncio.wait_for(finished.wait(), 5)
    assert bus.state is BusState.STOPPED
    assert recorder.texts(tag) == [f"{tag}:0"]
    # What was queued waits for a restart (an in-process bus can be started again).
    assert bus.statistics().subscribers[recorder.name].data.queued == 2
    recorder.behaviour = None
    await bus.start()
    await recorder.wait_until(lambda: len(recorder.texts(tag)) == 3)
    assert recorder.texts(tag) == [f"{tag}:{seq}" for seq in range(3)]
    await bus.stop()


async def test_unsubscribe_from_inside_a_handler() -> None:
    tag = unique("self-unsub")
    async with AsyncQueueBus() as bus:
        witness = Recorder("witness")

        async def leave(message: BusMessage) -> None:
            await bus.unsubscribe(leaver)

        leaver = Recorder("leaver", behaviour=leave)
        await bus.subscribe(leaver)
        await bus.subscribe(witness)
        for seq in range(3):
            await bus.send(data(tag, seq))
        await witness.wait_until(lambda: witness.count(tag) == 3)
        assert leaver.texts(tag) == [f"{tag}:0"]
        assert bus.subscribers == (witness,)


async def test_statistics_show_queue_depth_per_lane() -> None:
    tag = unique("stats")
    bus = AsyncQueueBus()
    recorder = Recorder()
    await bus.subscribe(recorder)
    for seq in range(5):
        await bus.send(data(tag, seq))
    await bus.send(system(tag))
    stats = bus.statistics()
    assert stats.state is BusState.CREATED
    lanes = stats.subscribers[recorder.name]
    assert (lanes.data.queued, lanes.system.queued) == (5, 1)
    async with bus:
        await recorder.wait_until(lambda: recorder.count(tag) == 6)
        lanes = bus.statistics().subscribers[recorder.name]
        assert lanes.running
        assert (lanes.data.queued, lanes.data.handled, lanes.system.handled) == (0, 5, 1)


async def test_unsubscribe_of_an_unknown_subscriber_is_a_no_op() -> None:
    async with AsyncQueueBus() as bus:
        await bus.unsubscribe(Recorder())
        assert bus.subscribers == ()


async def test_send_refuses_what_is_not_a_message() -> None:
    async with AsyncQueueBus() as bus:
        with pytest.raises(TypeError, match="expected a BusMessage"):
            await bus.send("hello")  # type: ignore[arg-type]


async def test_subscriber_name_must_be_a_non_empty_str() -> None:
    nameless = Recorder()
    nameless._name = ""
    async with AsyncQueueBus() as bus:
        with pytest.raises(ValueError, match="non-empty str"):
            await bus.subscribe(nameless)


async def test_constructor_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        AsyncQueueBus("positional")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="time_slice"):
        AsyncQueueBus(time_slice=0)
    assert AsyncQueueBus(name="mine").name == "mine"
    assert "mine" in repr(AsyncQueueBus(name="mine"))


async def test_observer_is_passed_to_every_dispatcher() -> None:
    tag = unique("observed")
    calls: list[tuple[str, Lane]] = []

    class Observer:
        def on_dispatch_start(self, subscriber: str, lane: Lane, message: BusMessage) -> object:
            calls.append((subscriber, lane))
            return None

        def on_dispatch_error(self, *args: object) -> None:
            pass

        def on_dispatch_end(self, *args: object) -> None:
            pass

    recorder = Recorder()
    async with AsyncQueueBus(observer=Observer()) as bus:
        await bus.subscribe(recorder)
        await bus.send(system(tag))
        await bus.send(data(tag, 0))
        await recorder.wait_until(lambda: recorder.count(tag) == 2)
    assert sorted(calls) == [(recorder.name, Lane.DATA), (recorder.name, Lane.SYSTEM)]


# --- BusSubscriber ---------------------------------------------------------------------------


class Named(BusSubscriber):
    def __init__(self, name: str, targets: frozenset[str] | str | None = "default") -> None:
        self._name = name
        self._targets = targets

    @property
    def name(self) -> str:
        return self._name

    @property
    def bus_targets(self) -> frozenset[str] | None:
        if self._targets == "default":
            return super().bus_targets
        assert not isinstance(self._targets, str)
        return self._targets


def test_bus_targets_default_to_the_subscriber_name() -> None:
    assert Named("alpha").bus_targets == frozenset({"alpha"})


def test_union_targets() -> None:
    alpha, group = Named("alpha"), Named("b", frozenset({"b", "pool"}))
    assert union_targets([alpha, group]) == frozenset({"alpha", "b", "pool"})
    assert union_targets([alpha, Named("observer", None)]) is None
    assert union_targets([]) == frozenset()


def test_a_subscriber_without_a_name_says_so() -> None:
    with pytest.raises(NotImplementedError, match="name"):
        _ = BusSubscriber().name


# --- message ids -----------------------------------------------------------------------------


def test_ids_are_unique_and_share_a_per_process_prefix() -> None:
    ids = [_ids.new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    prefixes = {i.rsplit("-", 1)[0] for i in ids}
    assert len(prefixes) == 1
    assert len(prefixes.pop()) == 16


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_a_new_prefix() -> None:
    parent_id = _ids.new_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once, skipping pytest's teardown
        try:
            os.write(write_end, _ids.new_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    os.waitpid(pid, 0)
    assert child_id
    assert child_id.rsplit("-", 1)[0] != parent_id.rsplit("-", 1)[0]
    assert child_id.rsplit("-", 1)[1] == "1"  # the counter restarted too
