"""The pipeline model: processors, pipelines, and the PipelineWorker's lifecycle."""

from __future__ import annotations

from typing import Any

from natsbus.bus import AsyncQueueBus
from natsbus.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    FrameDirection,
    LLMSetToolsFrame,
    StartFrame,
    TextFrame,
    TTSSpeakFrame,
)
from natsbus.messages import BusTTSSpeakMessage, Payload
from natsbus.pipeline import FrameProcessor, FrameProcessorSetup, Pipeline, PipelineWorker

from helpers.frames import Reached, Recorder, eventually
from helpers.workers import running, within

DOWN, UP = FrameDirection.DOWNSTREAM, FrameDirection.UPSTREAM


class Log(FrameProcessor):
    """Appends ``(name, text, direction)`` to a shared log and pushes on."""

    def __init__(self, name: str, log: list[tuple[str, str, FrameDirection]]) -> None:
        super().__init__(name=name)
        self.log = log
        self.events: list[str] = []

    async def setup(self, setup: FrameProcessorSetup) -> None:
        self.events.append(f"setup {setup.worker_name}")

    async def cleanup(self) -> None:
        self.events.append("cleanup")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TextFrame):
            self.log.append((self.name, frame.text, direction))
        await self.push_frame(frame, direction)


class Bounce(FrameProcessor):
    """Sends every TextFrame back upstream with a new text."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TextFrame) and direction is DOWN:
            await self.push_frame(TextFrame(frame.text + "!"), UP)
            return
        await self.push_frame(frame, direction)


async def test_frames_go_through_processors_in_order_both_ways() -> None:
    log: list[tuple[str, str, FrameDirection]] = []
    a, b = Log("a", log), Log("b", log)
    outer_end = Recorder()
    pipeline = Pipeline([a, Pipeline([b, Bounce()])])
    outer_start = Recorder()
    outer_start.link(pipeline)
    pipeline.link(outer_end)
    await pipeline.process_frame(TextFrame("x"), DOWN)
    assert log == [("a", "x", DOWN), ("b", "x", DOWN), ("b", "x!", UP), ("a", "x!", UP)]
    assert outer_start.frames(TextFrame, UP) == [TextFrame("x!")]
    assert outer_end.seen == []
    # Upstream into a pipeline enters its last processor.
    log.clear()
    await pipeline.process_frame(TextFrame("u"), UP)
    assert log == [("b", "u", UP), ("a", "u", UP)]


async def test_setup_goes_upstream_first_and_cleanup_downstream_first() -> None:
    log: list[Any] = []
    a, b = Log("a", log), Log("b", log)
    order: list[str] = []

    class Ordered(Log):
        async def setup(self, setup: FrameProcessorSetup) -> None:
            order.append(f"setup {self.name}")

        async def cleanup(self) -> None:
            order.append(f"cleanup {self.name}")

    class Failing(FrameProcessor):
        async def cleanup(self) -> None:
            raise RuntimeError("cleanup failed")

    first, last = Ordered("first", log), Ordered("last", log)
    pipeline = Pipeline([first, a, Failing(), b, last])
    await pipeline.setup(FrameProcessorSetup(worker_name="w"))
    await pipeline.cleanup()
    assert order == ["setup first", "setup last", "cleanup last", "cleanup first"]
    assert a.events == b.events == ["setup w", "cleanup"]


async def test_the_base_processor_passes_nothing_on() -> None:
    end = Recorder()
    pipeline = Pipeline([FrameProcessor(), end])
    await pipeline.process_frame(TextFrame("x"), DOWN)
    assert end.seen == []


# --- PipelineWorker -----------------------------------------------------------------------------


class ToolsAtActivation(Reached):
    """Sets its LLM tools on activation, the case the reference design lost."""

    async def on_activated(self, args: Payload | None) -> None:
        await self.queue_frame(LLMSetToolsFrame([{"name": "lookup"}]))


async def test_frames_queued_before_start_and_at_activation_arrive_after_start() -> None:
    recorder = Recorder()
    worker = ToolsAtActivation([recorder], name="agent")
    await worker.queue_frame(TextFrame("queued before the runner"))
    async with running(worker):
        await recorder.until(lambda: len(recorder.seen) >= 3)
    kinds = [type(frame) for frame, _ in recorder.seen[:3]]
    assert kinds == [StartFrame, TextFrame, LLMSetToolsFrame]


async def test_frames_reach_the_worker_hooks_at_both_ends() -> None:
    worker = Reached([Bounce()], name="w")
    async with running(worker):
        await worker.queue_frame(TextFrame("down"))
        await worker.queue_frame(TextFrame("up"), UP)
        await eventually(lambda: len(worker.upstream) == 2)
    assert worker.upstream == [TextFrame("down!"), TextFrame("up")]
    assert [type(f) for f in worker.downstream][:1] == [StartFrame]


async def test_tts_speak_message_queues_a_tts_speak_frame() -> None:
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="speaker")
    async with running(worker) as runner:
        bus = runner.bus
        await bus.send(BusTTSSpeakMessage("not me", source="x", target="someone-else"))
        await bus.send(BusTTSSpeakMessage("hello", append_to_context=True, source="x"))
        await recorder.until(lambda: bool(recorder.frames(TTSSpeakFrame)))
    assert recorder.frames(TTSSpeakFrame) == [TTSSpeakFrame("hello", append_to_context=True)]


async def test_a_graceful_end_drains_the_queue_then_ends_and_cleans_up() -> None:
    log: list[Any] = []
    processor = Log("p", log)
    recorder = Recorder()
    worker = PipelineWorker([processor, recorder], name="w")
    async with running(worker) as runner:
        for i in range(50):
            await worker.queue_frame(TextFrame(str(i)))
        await runner.end("done")
        await within(worker.wait())
    assert [text for _, text, _ in log] == [str(i) for i in range(50)]
    assert isinstance(recorder.seen[-1][0], EndFrame)
    assert processor.events[-1] == "cleanup"


async def test_a_cancel_sends_a_cancel_frame_and_cleans_up() -> None:
    log: list[Any] = []
    processor = Log("p", log)
    recorder = Recorder()
    worker = PipelineWorker([processor, recorder], name="w")
    async with running(worker) as runner:
        await runner.cancel("stop now")
        await within(worker.wait())
    assert isinstance(recorder.seen[-1][0], CancelFrame)
    assert not recorder.frames(EndFrame)
    assert processor.events[-1] == "cleanup"


async def test_a_failing_processor_does_not_stop_the_pipeline() -> None:
    class Picky(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            if isinstance(frame, TextFrame) and frame.text == "bad":
                raise ValueError("bad frame")
            await self.push_frame(frame, direction)

    recorder = Recorder()
    worker = PipelineWorker([Picky(), recorder], name="w")
    async with running(worker):
        for text in ("a", "bad", "b"):
            await worker.queue_frame(TextFrame(text))
        await recorder.until(lambda: len(recorder.frames(TextFrame)) == 2)
    assert recorder.frames(TextFrame) == [TextFrame("a"), TextFrame("b")]


async def test_build_pipeline_runs_once_the_worker_has_its_bus() -> None:
    recorder = Recorder()

    class Built(PipelineWorker):
        async def build_pipeline(self) -> FrameProcessor:
            assert isinstance(self.bus, AsyncQueueBus)
            return Pipeline([recorder])

    worker = Built(name="built")
    async with running(worker):
        await worker.queue_frame(TextFrame("x"))
        await recorder.until(lambda: bool(recorder.frames(TextFrame)))
    assert worker.pipeline is not None and worker.pipeline_started
