"""Bridged PipelineWorkers: the tee at each end, inbound rules, early frames, no echo."""

from __future__ import annotations

import asyncio

from natsbus.bus import AsyncQueueBus
from natsbus.frames import (
    Frame,
    FrameDirection,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
)
from natsbus.messages import BusActivateWorkerMessage, BusFrameMessage
from natsbus.pipeline import (
    BusBridgeProcessor,
    FrameProcessor,
    FrameProcessorSetup,
    Pipeline,
    PipelineWorker,
)
from natsbus.workers import WorkerState

from helpers.frames import PCM, Reached, Recorder, Responder, eventually
from helpers.recorders import Tap
from helpers.workers import running, within

DOWN, UP = FrameDirection.DOWNSTREAM, FrameDirection.UPSTREAM


async def _tapped_bus() -> tuple[AsyncQueueBus, Tap]:
    bus = AsyncQueueBus()
    tap = Tap()
    await bus.subscribe(tap)
    return bus, tap


def _sent_by(tap: Tap, source: str) -> list[BusFrameMessage]:
    return [m for m in tap.frames() if m.source == source]


class Upstreamer(FrameProcessor):
    """Answers every TextFrame "ping" with an InterruptionFrame upstream; passes the rest."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TextFrame) and frame.text == "ping":
            await self.push_frame(InterruptionFrame(), UP)
        await self.push_frame(frame, direction)


async def test_a_bridged_worker_tees_what_leaves_each_end() -> None:
    bus, tap = await _tapped_bus()
    worker = Reached([Upstreamer()], name="agent", bridged=True)
    async with running(worker, bus=bus):
        await worker.queue_frame(TextFrame("ping"))
        await eventually(lambda: len(_sent_by(tap, "agent")) == 2)
        assert worker.downstream[-1] == TextFrame("ping")
        assert worker.upstream == [InterruptionFrame()]
    sent = [(type(m.frame), m.direction, m.bridge) for m in _sent_by(tap, "agent")]
    assert sent == [(InterruptionFrame, UP, None), (TextFrame, DOWN, None)]
    # The StartFrame went through the pipeline but never onto the bus.
    assert isinstance(worker.downstream[0], StartFrame)


async def test_excluded_frames_and_lifecycle_frames_are_not_sent() -> None:
    bus, tap = await _tapped_bus()
    worker = Reached([Upstreamer()], name="agent", bridged=True, exclude_frames=(TextFrame,))
    async with running(worker, bus=bus) as runner:
        await worker.queue_frame(TextFrame("ping"))
        await eventually(lambda: bool(_sent_by(tap, "agent")))
        await runner.end("done")
        await within(worker.wait())
    assert [type(m.frame) for m in _sent_by(tap, "agent")] == [InterruptionFrame]


async def test_inbound_frames_enter_at_the_end_their_direction_enters_by() -> None:
    bus, _ = await _tapped_bus()
    recorder = Recorder()
    worker = Reached([recorder], name="agent", bridged=True)
    async with running(worker, bus=bus):
        await bus.send(BusFrameMessage(TextFrame("down"), DOWN, source="transport"))
        await bus.send(BusFrameMessage(TextFrame("up"), UP, source="transport"))
        await eventually(lambda: len(recorder.frames(TextFrame)) == 2)
    assert recorder.frames(TextFrame, DOWN) == [TextFrame("down")]
    assert recorder.frames(TextFrame, UP) == [TextFrame("up")]
    assert worker.upstream == [TextFrame("up")]


async def test_inbound_frames_only_while_active() -> None:
    bus, _ = await _tapped_bus()
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="agent", bridged=True, active=False)
    async with running(worker, bus=bus):
        await bus.send(BusFrameMessage(TextFrame("while inactive"), DOWN, source="transport"))
        await bus.send(BusActivateWorkerMessage(source="transport", target="agent"))
        await bus.send(BusFrameMessage(TextFrame("while active"), DOWN, source="transport"))
        await recorder.until(lambda: bool(recorder.frames(TextFrame)))
        assert worker.active
    assert recorder.frames(TextFrame) == [TextFrame("while active")]


async def test_inbound_frame_rules_source_target_and_bridge_names() -> None:
    bus, _ = await _tapped_bus()
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="agent", bridged=("voice",))
    async with running(worker, bus=bus):
        for text, kwargs in [
            ("own", {"source": "agent", "bridge": "voice"}),
            ("for another", {"source": "t", "bridge": "voice", "target": "agent-2"}),
            ("other bridge", {"source": "t", "bridge": "video"}),
            ("untagged", {"source": "t"}),
            ("for me", {"source": "t", "bridge": "voice", "target": "agent"}),
            ("voice", {"source": "t", "bridge": "voice"}),
        ]:
            bridge = kwargs.pop("bridge", None)
            await bus.send(BusFrameMessage(TextFrame(text), DOWN, bridge, **kwargs))
        await recorder.until(lambda: len(recorder.frames(TextFrame)) == 2)
    assert [f.text for f in recorder.frames(TextFrame)] == ["for me", "voice"]


async def test_a_single_bridge_name_tags_outgoing_frames() -> None:
    bus, tap = await _tapped_bus()
    worker = PipelineWorker([Upstreamer()], name="agent", bridged=("voice",))
    async with running(worker, bus=bus):
        await worker.queue_frame(TextFrame("hello"))
        await eventually(lambda: bool(_sent_by(tap, "agent")))
    assert {m.bridge for m in _sent_by(tap, "agent")} == {"voice"}


async def test_frames_arriving_while_the_worker_starts_are_delivered_after_start() -> None:
    bus, _ = await _tapped_bus()
    release = asyncio.Event()

    class SlowSetup(Recorder):
        async def setup(self, setup: FrameProcessorSetup) -> None:
            await release.wait()

    recorder = SlowSetup()
    worker = PipelineWorker([recorder], name="agent", bridged=True)
    async with bus:
        runner_task = asyncio.create_task(_run(worker, bus))
        await eventually(lambda: worker.state is WorkerState.STARTING)
        early = [TextFrame(f"early {i}") for i in range(5)]
        for frame in early:
            await bus.send(BusFrameMessage(frame, DOWN, source="transport"))
        await eventually(lambda: bus.statistics().subscribers["agent"].data.handled >= len(early))
        assert recorder.seen == []
        release.set()
        await recorder.until(lambda: len(recorder.seen) == len(early) + 1)
        assert isinstance(recorder.seen[0][0], StartFrame)
        assert [f for f, _ in recorder.seen[1:]] == early
        runner_task.cancel()
        await asyncio.gather(runner_task, return_exceptions=True)


async def _run(worker: PipelineWorker, bus: AsyncQueueBus) -> None:
    async with running(worker, bus=bus):
        await asyncio.Event().wait()


async def test_two_active_bridged_workers_do_not_echo_frames() -> None:
    bus, tap = await _tapped_bus()
    first, second = Recorder("first"), Recorder("second")
    a = PipelineWorker([first], name="agent-a", bridged=True)
    b = PipelineWorker([second], name="agent-b", bridged=True)
    async with running(a, b, bus=bus):
        await a.queue_frame(TextFrame("from a"))
        await second.until(lambda: bool(second.frames(TextFrame)))
        await asyncio.sleep(0.1)  # an echo loop would be sending frames all this time
    assert [(m.source, m.frame) for m in tap.frames()] == [("agent-a", TextFrame("from a"))]
    assert first.frames(TextFrame) == [TextFrame("from a")]
    assert second.frames(TextFrame) == [TextFrame("from a")]


class Transport(Reached):
    """A transport worker: its bridge sends what it queues and receives the agent's answers."""

    def __init__(self) -> None:
        super().__init__(name="transport")
        self.output = Recorder("output")

    async def build_pipeline(self) -> FrameProcessor:
        bridge = BusBridgeProcessor(bus=self.bus, worker_name=self.name, target_task="agent")
        return Pipeline([bridge, self.output])


async def test_transport_and_agent_exchange_frames_in_order() -> None:
    bus, _ = await _tapped_bus()
    transport = Transport()
    agent = PipelineWorker([Responder()], name="agent", bridged=True)
    async with running(transport, agent, bus=bus):
        for i in range(20):
            await transport.queue_frame(TranscriptionFrame(str(i), "u", "t"))
        await transport.output.until(lambda: len(transport.output.frames(TextFrame)) == 20)
    got = [f for f in transport.output.frames() if isinstance(f, (TextFrame, OutputAudioRawFrame))]
    expected: list[Frame] = []
    for i in range(20):
        expected += [TextFrame(f"re: {i}"), OutputAudioRawFrame(PCM, 24000, 1, pts=i)]
    assert got == expected
