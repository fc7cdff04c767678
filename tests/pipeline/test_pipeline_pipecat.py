"""The PipelineWorker as pipecat's apps use it: events, ending by frames, idle timeout, run_test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from natsbus.bus import AsyncQueueBus
from natsbus.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    FrameDirection,
    InterruptionFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
)
from natsbus.messages import (
    BusCancelWorkerMessage,
    BusEndWorkerMessage,
    BusFrameMessage,
    BusTTSSpeakMessage,
)
from natsbus.pipeline import FrameProcessor, IdentityFilter, Pipeline, PipelineWorker
from natsbus.testing import run_test
from natsbus.workers import BaseWorker, WorkerRunner

from helpers.frames import Recorder, eventually, settle
from helpers.recorders import Tap
from helpers.workers import running, within

DOWN, UP = FrameDirection.DOWNSTREAM, FrameDirection.UPSTREAM


def _runner(bus: AsyncQueueBus | None = None) -> WorkerRunner:
    return WorkerRunner(bus=bus or AsyncQueueBus(), handle_signals=False, cancel_timeout=2.0)


async def _run(runner: WorkerRunner, *drivers: Awaitable[Any]) -> None:
    """Run the runner to its end, alongside the drivers; fail if that takes too long."""
    await within(asyncio.gather(runner.run(), *drivers))


def _collect(worker: PipelineWorker, event: str) -> list[Any]:
    seen: list[Any] = []

    @worker.event_handler(event)
    async def collect(_worker: PipelineWorker, *args: Any) -> None:
        seen.append(args[0] if args else None)

    return seen


async def _started(worker: PipelineWorker) -> None:
    await eventually(lambda: worker.pipeline_started)


class Generator(FrameProcessor):
    """Passes every frame on; after each TextFrame, pushes a new one, ``generated <text>``."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TextFrame):
            await self.push_frame(TextFrame(text=f"generated {frame.text}"), direction)


# --- ending the pipeline with frames ------------------------------------------------------------


async def test_a_queued_end_frame_ends_the_pipeline_and_the_worker() -> None:
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="w")
    finished = _collect(worker, "on_pipeline_finished")
    runner = _runner()
    await runner.add_workers(worker)

    async def drive() -> None:
        await _started(worker)
        assert not worker.has_finished()
        await worker.queue_frames([TextFrame(text="a"), TextFrame(text="b")])
        await worker.queue_frame(EndFrame(reason="done"))

    await _run(runner, drive())  # returns: the runner's only worker ended by itself
    assert [f.text for f in recorder.frames(TextFrame)] == ["a", "b"]
    assert [type(f) for f in finished] == [EndFrame]
    assert finished[0].reason == "done"
    assert worker.has_finished()
    assert worker._lifecycle.end_reason == "done"


async def test_a_queued_cancel_frame_cancels_the_pipeline_and_the_worker() -> None:
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="w")
    finished = _collect(worker, "on_pipeline_finished")
    runner = _runner()
    await runner.add_workers(worker)

    async def drive() -> None:
        await _started(worker)
        await worker.queue_frame(CancelFrame(reason="abort"))

    await _run(runner, drive())
    assert [type(f) for f in finished] == [CancelFrame]
    assert not recorder.frames(EndFrame)
    assert worker.has_finished()


async def test_an_end_frame_a_processor_pushes_ends_the_worker() -> None:
    class Ender(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await self.push_frame(frame, direction)
            if isinstance(frame, TextFrame) and frame.text == "bye":
                await self.push_frame(EndFrame(reason="said bye"), direction)

    worker = PipelineWorker([Ender()], name="w")
    finished = _collect(worker, "on_pipeline_finished")
    runner = _runner()
    await runner.add_workers(worker)

    async def drive() -> None:
        await _started(worker)
        await worker.queue_frame(TextFrame(text="bye"))

    await _run(runner, drive())
    assert [f.reason for f in finished] == ["said bye"]


async def test_frames_queued_after_the_end_frame_are_dropped() -> None:
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="w")
    runner = _runner()
    await runner.add_workers(worker)

    async def drive() -> None:
        await _started(worker)
        await worker.queue_frame(EndFrame())
        await worker.queue_frame(TextFrame(text="late"))

    await _run(runner, drive())
    assert not recorder.frames(TextFrame)
    assert len(recorder.frames(EndFrame)) == 1


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (BusEndWorkerMessage("shutdown", source="boss", target="w"), EndFrame),
        (BusCancelWorkerMessage("abort", source="boss", target="w"), CancelFrame),
    ],
)
async def test_bus_end_and_cancel_messages_finish_the_pipeline_with_their_frame(
    message: BusEndWorkerMessage | BusCancelWorkerMessage, expected: type[Frame]
) -> None:
    bus = AsyncQueueBus()
    worker = PipelineWorker([IdentityFilter()], name="w")
    finished = _collect(worker, "on_pipeline_finished")
    runner = _runner(bus)
    await runner.add_workers(worker)

    async def drive() -> None:
        await _started(worker)
        await bus.send(message)

    await _run(runner, drive())
    assert [type(f) for f in finished] == [expected]
    assert finished[0].reason == message.reason
    assert worker.has_finished()


async def test_a_cancel_during_a_graceful_end_cancels_the_pipeline_at_once() -> None:
    release = asyncio.Event()

    class Stuck(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            if isinstance(frame, TextFrame):
                await release.wait()  # holds the queue: the EndFrame cannot get through
            await self.push_frame(frame, direction)

    recorder = Recorder()
    worker = PipelineWorker([Stuck(), recorder], name="w", end_timeout=30.0)
    finished = _collect(worker, "on_pipeline_finished")
    async with running(worker) as runner:
        await worker.queue_frame(TextFrame(text="stuck"))
        await runner.end("ending")
        await eventually(lambda: worker.state.value == "ending")
        await runner.bus.send(BusCancelWorkerMessage("hurry", source="boss", target="w"))
        await within(worker.wait())
    release.set()
    assert [type(f) for f in finished] == [CancelFrame]
    assert recorder.frames(CancelFrame)


# --- events -------------------------------------------------------------------------------------


async def test_pipeline_started_fires_once_with_the_start_frame() -> None:
    worker = PipelineWorker([IdentityFilter()], name="w")
    started = _collect(worker, "on_pipeline_started")
    async with running(worker):
        await eventually(lambda: bool(started))
        assert worker.started_at is not None
    assert len(started) == 1 and isinstance(started[0], StartFrame)


async def test_reached_events_fire_only_for_the_filtered_types_and_hooks_see_all() -> None:
    class Hooked(PipelineWorker):
        def __init__(self, pipeline: Any, **kwargs: Any) -> None:
            super().__init__(pipeline, **kwargs)
            self.hook_down: list[Frame] = []
            self.hook_up: list[Frame] = []

        async def on_frame_reached_downstream(self, frame: Frame) -> None:
            self.hook_down.append(frame)

        async def on_frame_reached_upstream(self, frame: Frame) -> None:
            self.hook_up.append(frame)

    worker = Hooked([IdentityFilter()], name="w")
    down = _collect(worker, "on_frame_reached_downstream")
    up = _collect(worker, "on_frame_reached_upstream")
    assert worker.reached_downstream_types == ()
    worker.set_reached_downstream_filter((TranscriptionFrame,))
    worker.add_reached_downstream_filter((TTSSpeakFrame,))
    worker.set_reached_upstream_filter([InterruptionFrame])
    assert worker.reached_downstream_types == (TranscriptionFrame, TTSSpeakFrame)
    runner = _runner()
    await runner.add_workers(worker)

    async def drive() -> None:
        await _started(worker)
        await worker.queue_frame(TextFrame(text="plain"))
        await worker.queue_frame(TranscriptionFrame("heard", "u", "t"))
        await worker.queue_frame(TTSSpeakFrame(text="say"))
        await worker.queue_frame(InterruptionFrame(), UP)
        await worker.queue_frame(TextFrame(text="up"), UP)
        await worker.queue_frame(EndFrame())

    await _run(runner, drive())
    assert [type(f) for f in down] == [TranscriptionFrame, TTSSpeakFrame]
    assert [type(f) for f in up] == [InterruptionFrame]
    assert [type(f) for f in worker.hook_down] == [
        StartFrame,
        TextFrame,
        TranscriptionFrame,
        TTSSpeakFrame,
        EndFrame,
    ]
    assert [type(f) for f in worker.hook_up] == [InterruptionFrame, TextFrame]


async def test_tts_speak_message_becomes_a_tts_speak_frame_with_its_fields() -> None:
    worker = PipelineWorker([IdentityFilter()], name="speaker")
    worker.set_reached_downstream_filter((TTSSpeakFrame,))
    spoken = _collect(worker, "on_frame_reached_downstream")
    async with running(worker) as runner:
        await runner.bus.send(BusTTSSpeakMessage("hi", append_to_context=True, source="x"))
        await eventually(lambda: bool(spoken))
    assert spoken == [TTSSpeakFrame(text="hi", append_to_context=True)]


# --- idle timeout -------------------------------------------------------------------------------


async def test_an_idle_pipeline_fires_the_event_and_cancels_the_worker() -> None:
    recorder = Recorder()
    worker = PipelineWorker([recorder], name="w", idle_timeout_secs=0.1)
    idle = _collect(worker, "on_idle_timeout")
    finished = _collect(worker, "on_pipeline_finished")
    runner = _runner()
    await runner.add_workers(worker)
    await _run(runner)  # nothing ends it but the idle timeout
    assert idle == [None]
    assert [type(f) for f in finished] == [CancelFrame]
    assert recorder.frames(CancelFrame)


async def test_idle_timeout_without_cancel_fires_again_and_leaves_the_worker_running() -> None:
    worker = PipelineWorker(
        [IdentityFilter()], name="w", idle_timeout_secs=0.05, cancel_on_idle_timeout=False
    )
    idle = _collect(worker, "on_idle_timeout")
    async with running(worker):
        await eventually(lambda: len(idle) >= 2)
        assert not worker.has_finished()
        assert worker.state.value == "ready"


async def test_frames_passing_keep_the_pipeline_from_being_idle() -> None:
    worker = PipelineWorker(
        [IdentityFilter()], name="w", idle_timeout_secs=0.3, cancel_on_idle_timeout=False
    )
    idle = _collect(worker, "on_idle_timeout")
    async with running(worker):
        for _ in range(20):  # 1 s of traffic, a frame every 50 ms
            await worker.queue_frame(TextFrame(text="busy"))
            await asyncio.sleep(0.05)
        assert idle == []
        await eventually(lambda: bool(idle))


def test_a_non_positive_idle_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="idle_timeout_secs"):
        PipelineWorker([IdentityFilter()], idle_timeout_secs=0)


# --- bridged ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bridged", "taken"),
    [
        (None, set()),
        (False, set()),
        ((), {"voice", "video", "none"}),
        (True, {"voice", "video", "none"}),
        (("voice", "video"), {"voice", "video"}),
    ],
)
async def test_bridged_values_choose_what_is_sent_and_taken(bridged: Any, taken: set[str]) -> None:
    bus = AsyncQueueBus()
    tap = Tap()
    await bus.subscribe(tap)
    worker = PipelineWorker([Generator()], name="w", bridged=bridged)
    worker.set_reached_downstream_filter((TextFrame,))
    reached = _collect(worker, "on_frame_reached_downstream")
    expected = {"local", "generated local"} | {t for n in taken for t in (n, f"generated {n}")}
    async with running(worker, bus=bus):
        for bridge in ("voice", "video", None):
            frame = TextFrame(text=bridge or "none")
            await bus.send(BusFrameMessage(frame, DOWN, bridge, source="other"))
        await bus.send(BusFrameMessage(TextFrame(text="mine"), DOWN, source="w"))
        await worker.queue_frame(TextFrame(text="local"))
        await eventually(lambda: expected <= {f.text for f in reached})
        await settle()
    assert {f.text for f in reached} == expected
    # (Leaving out the frame the test itself sent as if from "w".)
    sent = {m.frame.text: m for m in tap.frames() if m.source == "w" and m.frame.text != "mine"}
    if not taken:
        assert sent == {}
        return
    # What the pipeline made or passed goes out, direction kept; what came from the bus
    # does not go back onto it (no echo), only what the pipeline generated from it.
    assert set(sent) == {"local", "generated local"} | {f"generated {n}" for n in taken}
    assert all(m.direction is DOWN for m in sent.values())


# --- processors ---------------------------------------------------------------------------------


async def test_identity_filter_and_pipecat_style_processors_push_each_frame_once() -> None:
    class PipecatStyle(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)

    start, end = Recorder(), Recorder()
    pipeline = Pipeline([start, IdentityFilter(), PipecatStyle(), end])
    await pipeline.process_frame(TextFrame(text="down"), DOWN)
    await pipeline.process_frame(TextFrame(text="up"), UP)
    assert end.frames(TextFrame) == [TextFrame(text="down"), TextFrame(text="up")]
    assert start.frames(TextFrame) == [TextFrame(text="down"), TextFrame(text="up")]


async def test_a_processor_reaches_its_workers_runner() -> None:
    found: list[BaseWorker | None] = []

    class Probe(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TextFrame):
                found.append(self.worker_runner.get_worker("helper"))
            await self.push_frame(frame, direction)

    helper = BaseWorker("helper")
    worker = PipelineWorker([Probe()], name="main")
    async with running(worker, helper):
        await worker.queue_frame(TextFrame(text="x"))
        await eventually(lambda: bool(found))
    assert found == [helper]
    with pytest.raises(RuntimeError, match="not in a pipeline"):
        _ = Probe().worker_runner


def test_frames_take_pipecats_keywords() -> None:
    assert TextFrame(text="x").text == "x"
    speak = TTSSpeakFrame(text="hi", append_to_context=True)
    assert (speak.text, speak.append_to_context) == ("hi", True)


# --- run_test -----------------------------------------------------------------------------------


async def test_run_test_returns_what_reached_each_end() -> None:
    class Echo(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await self.push_frame(frame, direction)
            if isinstance(frame, TextFrame):
                await self.push_frame(TextFrame(text=f"echo {frame.text}"), UP)

    down, up = await within(
        run_test(
            Echo(),
            frames_to_send=[TextFrame(text="a"), TextFrame(text="b")],
            expected_down_frames=[TextFrame, TextFrame],
            expected_up_frames=[TextFrame, TextFrame],
        )
    )
    assert [f.text for f in down] == ["a", "b"]
    assert [f.text for f in up] == ["echo a", "echo b"]


async def test_run_test_sends_upstream_and_can_keep_the_start_frame() -> None:
    down, up = await within(
        run_test(
            IdentityFilter(),
            frames_to_send=[TextFrame(text="u")],
            frames_to_send_direction=UP,
            ignore_start=False,
        )
    )
    assert [type(f) for f in down] == [StartFrame]
    assert up == [TextFrame(text="u")]


async def test_run_test_without_its_end_frame_records_the_one_the_processor_pushes() -> None:
    class EndsOnBye(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await self.push_frame(frame, direction)
            if isinstance(frame, TextFrame):
                await self.push_frame(EndFrame(), DOWN)

    down, _ = await within(
        run_test(EndsOnBye(), frames_to_send=[TextFrame(text="bye")], send_end_frame=False)
    )
    assert [type(f) for f in down] == [TextFrame, EndFrame]


async def test_run_test_says_what_it_got_when_the_frames_differ() -> None:
    with pytest.raises(AssertionError, match=r"received \[TextFrame\], expected \[StartFrame\]"):
        await within(
            run_test(
                IdentityFilter(),
                frames_to_send=[TextFrame(text="x")],
                expected_down_frames=[StartFrame],
            )
        )


async def test_run_test_gives_up_when_the_pipeline_does_not_start() -> None:
    class Stalls(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await within(run_test(Stalls(), frames_to_send=[], start_timeout=0.1))
