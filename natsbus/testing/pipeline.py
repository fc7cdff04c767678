"""Run one processor in a real pipeline and see what comes out of it: :func:`run_test`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from natsbus.bus import AsyncQueueBus
from natsbus.frames import EndFrame, Frame, FrameDirection, StartFrame
from natsbus.pipeline import FrameProcessor, Pipeline, PipelineWorker
from natsbus.workers import WorkerRunner

__all__ = ["run_test"]


class _Recorder(FrameProcessor):
    """Keeps the frames travelling in ``direction`` and pushes every frame on."""

    def __init__(self, direction: FrameDirection, *, ignore_start: bool, name: str) -> None:
        super().__init__(name=name)
        self._direction = direction
        self._ignore_start = ignore_start
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is self._direction and not (
            self._ignore_start and isinstance(frame, StartFrame)
        ):
            self.frames.append(frame)
        await self.push_frame(frame, direction)


async def run_test(
    processor: FrameProcessor,
    *,
    frames_to_send: Sequence[Frame],
    expected_down_frames: Sequence[type[Frame]] | None = None,
    expected_up_frames: Sequence[type[Frame]] | None = None,
    frames_to_send_direction: FrameDirection = FrameDirection.DOWNSTREAM,
    ignore_start: bool = True,
    send_end_frame: bool = True,
    start_timeout: float = 1.0,
) -> tuple[list[Frame], list[Frame]]:
    """Run ``processor`` in a pipeline worker, send it frames, and return what came out.

    The processor sits between two recording processors in a
    :class:`~natsbus.pipeline.PipelineWorker` hosted by a
    :class:`~natsbus.workers.WorkerRunner` on an in-process bus. Once the pipeline has
    started, ``frames_to_send`` are queued in ``frames_to_send_direction`` (downstream ones
    enter at the pipeline's start, upstream ones at its end), then an
    :class:`~natsbus.frames.EndFrame` if ``send_end_frame``; the call returns when the worker
    has ended. Without the EndFrame, something else must end the worker (an EndFrame the
    processor pushes, say).

    Example::

        down, up = await run_test(
            Upper(), frames_to_send=[TextFrame("hi")], expected_down_frames=[TextFrame]
        )
        assert down[0].text == "HI"

    Args:
        processor: The processor under test (a :class:`~natsbus.pipeline.Pipeline` works too).
        frames_to_send: The frames to queue, in order.
        expected_down_frames: When given, the types the frames that reached the end of the
            pipeline downstream must have, in order (the closing EndFrame is not counted).
        expected_up_frames: When given, the same for the frames that reached its start
            upstream.
        frames_to_send_direction: The direction to send ``frames_to_send`` in.
        ignore_start: Leave the StartFrame out of what is recorded.
        send_end_frame: Queue an EndFrame after the frames.
        start_timeout: Seconds the pipeline may take to start.

    Returns:
        The frames that reached the pipeline's end downstream, and those that reached its
        start upstream.

    Raises:
        AssertionError: The frames received do not have the expected types.
        TimeoutError: The pipeline did not start within ``start_timeout``.
    """
    up = _Recorder(FrameDirection.UPSTREAM, ignore_start=ignore_start, name="run_test::up")
    down = _Recorder(FrameDirection.DOWNSTREAM, ignore_start=ignore_start, name="run_test::down")
    worker = PipelineWorker(
        Pipeline([up, processor, down]), name="run-test", start_timeout=start_timeout
    )
    runner = WorkerRunner(bus=AsyncQueueBus(), name="run-test-runner", handle_signals=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: PipelineWorker, _frame: StartFrame) -> None:
        started.set()

    async def send() -> None:
        try:
            await asyncio.wait_for(started.wait(), start_timeout)
            for frame in frames_to_send:
                await worker.queue_frame(frame, frames_to_send_direction)
            if send_end_frame:
                await worker.queue_frame(EndFrame())
        except BaseException:
            await runner.cancel("run_test failed")
            raise

    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), send())

    down_frames = [f for f in down.frames if not (send_end_frame and isinstance(f, EndFrame))]
    if expected_down_frames is not None:
        _check("downstream", down_frames, expected_down_frames)
    if expected_up_frames is not None:
        _check("upstream", up.frames, expected_up_frames)
    return down_frames, up.frames


def _check(direction: str, received: Sequence[Frame], expected: Sequence[type[Frame]]) -> None:
    matches = len(received) == len(expected) and all(
        isinstance(frame, cls) for frame, cls in zip(received, expected, strict=True)
    )
    if not matches:
        got = ", ".join(type(frame).__name__ for frame in received)
        want = ", ".join(cls.__name__ for cls in expected)
        raise AssertionError(
            f"{direction} frames: received [{got}], expected [{want}]\n  received: {received!r}"
        )
