"""Shared pieces of the frame, pipeline and bridge tests: recording processors and workers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from natsbus.bus import WorkerBus
from natsbus.frames import (
    Frame,
    FrameDirection,
    OutputAudioRawFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
)
from natsbus.pipeline import FrameProcessor, FrameProcessorSetup, Pipeline, PipelineWorker

TIMEOUT = 5.0
PCM = b"\x00\x01" * 320  # 20 ms of 16 kHz mono (640 bytes)


class Recorder(FrameProcessor):
    """Records every frame it sees (with its direction) and pushes it on."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.seen: list[tuple[Frame, FrameDirection]] = []
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.seen.append((frame, direction))
        self._changed.set()
        await self.push_frame(frame, direction)

    def frames(
        self, cls: type[Frame] = Frame, direction: FrameDirection | None = None
    ) -> list[Any]:
        return [
            f for f, d in self.seen if isinstance(f, cls) and (direction is None or d is direction)
        ]

    async def until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


class Reached(PipelineWorker):
    """A PipelineWorker that records what leaves each end of its pipeline."""

    def __init__(self, pipeline: Any = None, **kwargs: Any) -> None:
        super().__init__(pipeline, **kwargs)
        self.downstream: list[Frame] = []
        self.upstream: list[Frame] = []

    async def on_frame_reached_downstream(self, frame: Frame) -> None:
        self.downstream.append(frame)

    async def on_frame_reached_upstream(self, frame: Frame) -> None:
        self.upstream.append(frame)


class Responder(FrameProcessor):
    """An agent: answers each transcription with a text and an audio frame."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TranscriptionFrame):
            await self.push_frame(TextFrame(f"re: {frame.text}"))
            await self.push_frame(OutputAudioRawFrame(PCM, 24000, 1, pts=int(frame.text)))
            return
        await self.push_frame(frame, direction)


async def started_pipeline(
    processors: list[FrameProcessor], bus: WorkerBus | None = None
) -> Pipeline:
    """A pipeline set up and started by hand (no worker), as a transport might run one."""
    pipeline = Pipeline(processors)
    await pipeline.setup(FrameProcessorSetup(worker_name="test", bus=bus))
    await pipeline.process_frame(StartFrame(), FrameDirection.DOWNSTREAM)
    return pipeline


async def settle(bus_rounds: int = 20) -> None:
    """Let in-process dispatch run a few rounds (for asserting that nothing happened)."""
    for _ in range(bus_rounds):
        await asyncio.sleep(0)


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until ``predicate()`` holds, polling: bus statistics and worker states have no event."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)
