"""The :class:`PipelineWorker`: a worker that runs a pipeline, optionally bridged to the bus.

This module sits on top of both the pipeline model (:mod:`natsbus.pipeline`) and the worker
runtime (:mod:`natsbus.workers`); neither of those imports it.

Life of the pipeline, inside the worker's own life:

1. ``setup()`` builds the pipeline (given, or :meth:`PipelineWorker.build_pipeline`), sets up
   its processors, pushes a :class:`~natsbus.frames.StartFrame` through it and only then
   starts the task that delivers queued frames. Frames queued before that (by
   ``on_activated``, or arriving from the bus while the worker starts) wait in the queue and
   are delivered after the ``StartFrame``, in order: none is lost.
2. While it runs, one task delivers the queued frames one at a time, so frames from the bus
   and frames the worker queues itself keep one order.
3. ``cleanup()`` ends the pipeline: an :class:`~natsbus.frames.EndFrame` queued behind
   everything else on a graceful end, a :class:`~natsbus.frames.CancelFrame` at once (queued
   frames dropped) on a cancel; then the processors are cleaned up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from natsbus.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    FrameDirection,
    StartFrame,
    TTSSpeakFrame,
)
from natsbus.messages import (
    BusCancelWorkerMessage,
    BusFrameMessage,
    BusMessage,
    BusTTSSpeakMessage,
)
from natsbus.pipeline.bridge import BusEdgeProcessor, received
from natsbus.pipeline.pipeline import Pipeline
from natsbus.pipeline.processor import FrameProcessor, FrameProcessorSetup
from natsbus.tasks import TaskManager, cancel_and_wait
from natsbus.workers import BaseWorker

__all__ = ["PipelineWorker"]

logger = logging.getLogger(__name__)

START_TIMEOUT: Final = 20.0
"""Seconds the StartFrame may take to pass through the pipeline before setup fails."""
END_TIMEOUT: Final = 10.0
"""Seconds the queued frames and the EndFrame may take on a graceful end."""

_Queued = tuple[Frame, FrameDirection] | None  # None: stop delivering


class _End(FrameProcessor):
    """One end of the worker's pipeline: frames leaving it reach the worker's hooks."""

    def __init__(self, worker: PipelineWorker, direction: FrameDirection) -> None:
        super().__init__(name=f"{worker.name}::{direction.name.lower()}-end")
        self._worker = worker
        self._direction = direction

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is not self._direction:
            return
        if direction is FrameDirection.DOWNSTREAM:
            await self._worker.on_frame_reached_downstream(frame)
        else:
            await self._worker.on_frame_reached_upstream(frame)


class PipelineWorker(BaseWorker):
    """A worker that runs a pipeline of frame processors.

    Give it a pipeline, or override :meth:`build_pipeline` (called in ``setup``, once the
    worker has its bus, which a :class:`~natsbus.pipeline.BusBridgeProcessor` needs). Queue
    frames with :meth:`queue_frame`. A :class:`~natsbus.messages.BusTTSSpeakMessage` queues a
    :class:`~natsbus.frames.TTSSpeakFrame`.

    A *bridged* worker has a tee at each end of its pipeline: frames leaving the pipeline
    downstream (at its end) or upstream (at its start) continue locally and are also sent to
    the bus; frames from the bus enter the pipeline, downstream ones at its start and upstream
    ones at its end, while the worker is active (or is starting and will be active). Inbound
    frames from this worker itself, targeted at another worker, or from a bridge not in
    ``bridged`` are ignored. A frame that arrived over the bus is never sent back onto it, so
    two bridged workers active at once do not echo frames to each other.

    Subclasses that override ``setup``, ``cleanup`` or ``on_bus_message`` call ``super()``.

    Args:
        pipeline: The pipeline (any processor; a list is made a :class:`Pipeline`), or None
            to build it in :meth:`build_pipeline`.
        name: The worker's name on the bus.
        active: Become active when ready.
        bridged: False (or None) for a worker that is not bridged; True (or ``()``) to accept
            frames of every bridge; a tuple of names to accept only those bridges' frames.
            With exactly one name, outgoing frames are tagged with it.
        exclude_frames: Frame types that never cross the bus (lifecycle frames never do).
        start_timeout: Seconds the StartFrame may take through the pipeline.
        end_timeout: Seconds a graceful end may take to drain the queue.
    """

    def __init__(
        self,
        pipeline: FrameProcessor | list[FrameProcessor] | None = None,
        *,
        name: str | None = None,
        active: bool = True,
        bridged: bool | tuple[str, ...] | None = False,
        exclude_frames: tuple[type[Frame], ...] = (),
        start_timeout: float = START_TIMEOUT,
        end_timeout: float = END_TIMEOUT,
    ) -> None:
        is_bridged = bridged is not None and bridged is not False
        super().__init__(name, active=active, bridged=is_bridged)
        self._pipeline = Pipeline(pipeline) if isinstance(pipeline, list) else pipeline
        self._bridges: tuple[str, ...] = bridged if isinstance(bridged, tuple) else ()
        self._exclude_frames = exclude_frames
        self._start_timeout = start_timeout
        self._end_timeout = end_timeout
        self._root: Pipeline | None = None
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._cancel_requested = False

    # --- the pipeline -----------------------------------------------------------------------

    @property
    def pipeline(self) -> FrameProcessor | None:
        """The pipeline this worker runs (None until built)."""
        return self._pipeline

    @property
    def pipeline_started(self) -> bool:
        """Whether the StartFrame has passed through the pipeline."""
        return self._started

    async def build_pipeline(self) -> FrameProcessor:
        """Build the pipeline when none was given (called by ``setup``, after ``attach``).

        Returns:
            The pipeline to run.

        Raises:
            RuntimeError: Not overridden, and no pipeline was given.
        """
        raise RuntimeError(f"{self!r}: give a pipeline or override build_pipeline()")

    async def queue_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Queue a frame into the pipeline: downstream enters at its start, upstream at its end.

        Frames queued before the pipeline has started are delivered right after the
        StartFrame. Frames queued after the pipeline ended are dropped.

        Args:
            frame: The frame.
            direction: The way it travels.
        """
        if self._closed:
            logger.debug("%s: pipeline ended, %s dropped", self.name, frame.name)
            return
        self._queue.put_nowait((frame, direction))

    async def queue_frames(self, frames: list[Frame]) -> None:
        """Queue frames downstream, in order.

        Args:
            frames: The frames.
        """
        for frame in frames:
            await self.queue_frame(frame)

    async def on_frame_reached_downstream(self, frame: Frame) -> None:
        """Called for every frame that leaves the pipeline's end downstream (does nothing).

        Args:
            frame: The frame.
        """

    async def on_frame_reached_upstream(self, frame: Frame) -> None:
        """Called for every frame that leaves the pipeline's start upstream (does nothing).

        Args:
            frame: The frame.
        """

    # --- lifecycle --------------------------------------------------------------------------

    async def setup(self, task_manager: TaskManager | None = None) -> None:
        """Build and set up the pipeline, start it, then start delivering queued frames.

        Args:
            task_manager: As for :meth:`BaseWorker.setup`.

        Raises:
            TimeoutError: The StartFrame did not pass through within ``start_timeout``.
        """
        await super().setup(task_manager)
        if self._pipeline is None:
            self._pipeline = await self.build_pipeline()
        processors: list[FrameProcessor] = [self._pipeline]
        if self.bridged:
            bridge = self._bridges[0] if len(self._bridges) == 1 else None
            source, sink = (
                BusEdgeProcessor(
                    worker_name=self.name,
                    direction=direction,
                    bridge=bridge,
                    exclude_frames=self._exclude_frames,
                    name=f"{self.name}::{direction.name.lower()}-edge",
                )
                for direction in (FrameDirection.UPSTREAM, FrameDirection.DOWNSTREAM)
            )
            processors = [source, self._pipeline, sink]
        root = Pipeline(processors, name=f"{self.name}::pipeline")
        _End(self, FrameDirection.UPSTREAM).link(root)
        root.link(_End(self, FrameDirection.DOWNSTREAM))
        self._root = root
        await root.setup(FrameProcessorSetup(worker_name=self.name, bus=self.bus))
        async with asyncio.timeout(self._start_timeout):
            await root.process_frame(StartFrame(), FrameDirection.DOWNSTREAM)
        self._started = True
        self._task = asyncio.create_task(self._deliver(root), name=f"natsbus-pipeline[{self.name}]")

    async def cleanup(self) -> None:
        """End the pipeline (gracefully, or at once after a cancel) and clean it up."""
        self._closed = True
        root, task = self._root, self._task
        try:
            if task is not None and root is not None:
                if self._cancel_requested:
                    await self._cancel(root, task)
                else:
                    await self._end(task)
        finally:
            if root is not None:
                await root.cleanup()
            await super().cleanup()

    async def _end(self, task: asyncio.Task[None]) -> None:
        self._queue.put_nowait((EndFrame(), FrameDirection.DOWNSTREAM))
        self._queue.put_nowait(None)
        try:
            async with asyncio.timeout(self._end_timeout):
                await asyncio.shield(task)
        except TimeoutError:
            logger.warning("%s: pipeline did not drain within %.1f s", self.name, self._end_timeout)
            await cancel_and_wait((task,))

    async def _cancel(self, root: Pipeline, task: asyncio.Task[None]) -> None:
        await cancel_and_wait((task,))
        try:
            async with asyncio.timeout(self._end_timeout):
                await root.process_frame(CancelFrame(), FrameDirection.DOWNSTREAM)
        except Exception:
            logger.exception("%s: cancelling the pipeline failed", self.name)

    async def _deliver(self, root: Pipeline) -> None:
        queue = self._queue
        while True:
            item = await queue.get()
            if item is None:
                return
            frame, direction = item
            try:
                await root.process_frame(frame, direction)
            except Exception:
                # One failing frame must not stop the pipeline: log it and go on.
                logger.exception("%s: processing %s failed", self.name, frame.name)

    # --- the bus ----------------------------------------------------------------------------

    async def on_bus_message(self, message: BusMessage) -> None:
        """Take frames from the bus (bridged workers) and TTS requests; then as BaseWorker.

        Args:
            message: The message.
        """
        if isinstance(message, BusFrameMessage):
            if self.bridged:
                self._on_frame_message(message)
            return
        target = message.target
        if target is not None and target != self.name:
            return
        if isinstance(message, BusTTSSpeakMessage):
            await self.queue_frame(TTSSpeakFrame(message.text, message.append_to_context))
            return
        if isinstance(message, BusCancelWorkerMessage):
            self._cancel_requested = True
        await super().on_bus_message(message)

    def _on_frame_message(self, message: BusFrameMessage) -> None:
        if message.source == self.name:
            return
        if message.target is not None and message.target != self.name:
            return
        if self._bridges and message.bridge not in self._bridges:
            return
        # A worker that is still starting and will then be active takes frames: they wait in
        # the queue (for the StartFrame, if it has not passed yet) instead of being lost.
        if not (self.active or self.lifecycle.pending_activation):
            return
        if self._closed:
            return
        self._queue.put_nowait((received(message), message.direction))
