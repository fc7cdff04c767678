"""The :class:`PipelineWorker`: a worker that runs a pipeline, optionally bridged to the bus.

This module sits on top of both the pipeline model (:mod:`natsbus.pipeline`) and the worker
runtime (:mod:`natsbus.workers`); neither of those imports it.

Life of the pipeline, inside the worker's own life:

1. ``setup()`` builds the pipeline (given, or :meth:`PipelineWorker.build_pipeline`), sets up
   its processors, pushes a :class:`~natsbus.frames.StartFrame` through it (then
   ``on_pipeline_started`` fires) and only then starts the task that delivers queued frames.
   Frames queued before that (by ``on_activated``, or arriving from the bus while the worker
   starts) wait in the queue and are delivered after the ``StartFrame``, in order: none is
   lost.
2. While it runs, one task delivers the queued frames one at a time, so frames from the bus
   and frames the worker queues itself keep one order.
3. The pipeline ends when an :class:`~natsbus.frames.EndFrame` (graceful) or a
   :class:`~natsbus.frames.CancelFrame` (at once) has gone through it:
   ``on_pipeline_finished`` fires with that frame, and the worker then ends (or is cancelled)
   as if its runner had asked. The frame comes from :meth:`PipelineWorker.queue_frame`, from a
   processor pushing it downstream, or from the worker ending: on a graceful end
   (``BusEndWorkerMessage``) ``cleanup()`` queues an ``EndFrame`` behind everything else, on a
   cancel it pushes a ``CancelFrame`` at once (queued frames dropped). Then the processors
   are cleaned up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
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
from natsbus.pipeline._worker_parts import IdleWatch, PipelineEnd, ReachedFilters
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

_EVENTS: Final = (
    "on_pipeline_started",
    "on_pipeline_finished",
    "on_frame_reached_downstream",
    "on_frame_reached_upstream",
    "on_idle_timeout",
)

_Bridged = bool | tuple[str, ...] | None


class PipelineWorker(BaseWorker):
    """A worker that runs a pipeline of frame processors.

    Give it a pipeline, or override :meth:`build_pipeline` (called in ``setup``, once the
    worker has its bus, which a :class:`~natsbus.pipeline.BusBridgeProcessor` needs). Queue
    frames with :meth:`queue_frame`; queue an :class:`~natsbus.frames.EndFrame` to end the
    pipeline (and then the worker) once the frames before it went through, or a
    :class:`~natsbus.frames.CancelFrame` to cancel them. A
    :class:`~natsbus.messages.BusTTSSpeakMessage` queues a :class:`~natsbus.frames.TTSSpeakFrame`.

    Events, besides :class:`~natsbus.workers.BaseWorker`'s (``@worker.event_handler(name)``):

    - ``on_pipeline_started(worker, frame)``: the StartFrame went through the pipeline.
    - ``on_pipeline_finished(worker, frame)``: the EndFrame or CancelFrame that ended it did.
    - ``on_frame_reached_downstream(worker, frame)`` / ``on_frame_reached_upstream(worker,
      frame)``: a frame of a type chosen with :meth:`set_reached_downstream_filter` (or
      upstream) left the pipeline. The hook methods of the same name see every frame.
    - ``on_idle_timeout(worker)``: no frame passed for ``idle_timeout_secs``.

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
        bridged: None (or False) for a worker that is not bridged; ``()`` (or True) to accept
            frames of every bridge; a tuple of names to accept only those bridges' frames.
            With exactly one name, outgoing frames are tagged with it.
        exclude_frames: Frame types that never cross the bus (lifecycle frames never do).
        cancel_on_idle_timeout: Cancel the worker when the idle timeout fires (otherwise only
            ``on_idle_timeout`` fires, again after each further ``idle_timeout_secs``).
        idle_timeout_secs: Seconds without any frame passing through the pipeline (queued
            into it, or leaving it at either end) after which it is idle; None, the default,
            for no idle timeout (pipecat's default is 300 s).
        start_timeout: Seconds the StartFrame may take through the pipeline.
        end_timeout: Seconds a graceful end may take to drain the queue; then the pipeline
            is cancelled.

    Raises:
        ValueError: ``idle_timeout_secs`` is not positive.
    """

    def __init__(
        self,
        pipeline: FrameProcessor | list[FrameProcessor] | None = None,
        *,
        name: str | None = None,
        active: bool = True,
        bridged: _Bridged = None,
        exclude_frames: tuple[type[Frame], ...] | None = (),
        cancel_on_idle_timeout: bool = True,
        idle_timeout_secs: float | None = None,
        start_timeout: float = START_TIMEOUT,
        end_timeout: float = END_TIMEOUT,
    ) -> None:
        is_bridged = bridged is not None and bridged is not False
        super().__init__(name, active=active, bridged=is_bridged)
        self._pipeline = Pipeline(pipeline) if isinstance(pipeline, list) else pipeline
        self._bridges: tuple[str, ...] = bridged if isinstance(bridged, tuple) else ()
        self._exclude_frames = exclude_frames or ()
        self._cancel_on_idle_timeout = cancel_on_idle_timeout
        self._idle = (
            IdleWatch(idle_timeout_secs, self._on_idle, name=self.name)
            if idle_timeout_secs is not None
            else None
        )
        self._start_timeout = start_timeout
        self._end_timeout = end_timeout
        self._reached = ReachedFilters()
        self._root: Pipeline | None = None
        self._queue: asyncio.Queue[tuple[Frame, FrameDirection]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._finished_by: EndFrame | CancelFrame | None = None
        self._finished = False
        self._cancel_requested = asyncio.Event()
        for event in _EVENTS:
            self._register_event_handler(event)

    # --- the pipeline -----------------------------------------------------------------------

    @property
    def pipeline(self) -> FrameProcessor | None:
        """The pipeline this worker runs (None until built)."""
        return self._pipeline

    @property
    def pipeline_started(self) -> bool:
        """Whether the StartFrame has passed through the pipeline."""
        return self._started

    def has_finished(self) -> bool:
        """Whether the pipeline has ended and its processors are cleaned up.

        Returns:
            True once the worker's ``cleanup`` has run.
        """
        return self._finished

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
        StartFrame. Frames queued after the pipeline ended are dropped. A downstream
        EndFrame ends the pipeline once the frames queued before it went through, and then
        the worker; a downstream CancelFrame cancels them in the same way.

        Args:
            frame: The frame.
            direction: The way it travels.
        """
        if self._closed:
            logger.debug("%s: pipeline ended, %s dropped", self.name, frame.name)
            return
        self._queue.put_nowait((frame, direction))

    async def queue_frames(
        self, frames: Iterable[Frame], direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Queue frames, in order.

        Args:
            frames: The frames.
            direction: The way they travel.
        """
        for frame in frames:
            await self.queue_frame(frame, direction)

    # --- frames leaving the pipeline --------------------------------------------------------

    @property
    def reached_downstream_types(self) -> tuple[type[Frame], ...]:
        """The frame types that fire ``on_frame_reached_downstream``."""
        return self._reached.types(FrameDirection.DOWNSTREAM)

    @property
    def reached_upstream_types(self) -> tuple[type[Frame], ...]:
        """The frame types that fire ``on_frame_reached_upstream``."""
        return self._reached.types(FrameDirection.UPSTREAM)

    def set_reached_downstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Choose the frame types that fire ``on_frame_reached_downstream`` (none by default).

        Args:
            types: The frame types (subclasses match too).
        """
        self._reached.set(FrameDirection.DOWNSTREAM, types)

    def set_reached_upstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Choose the frame types that fire ``on_frame_reached_upstream`` (none by default).

        Args:
            types: The frame types (subclasses match too).
        """
        self._reached.set(FrameDirection.UPSTREAM, types)

    def add_reached_downstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Add frame types that fire ``on_frame_reached_downstream``.

        Args:
            types: The frame types to add.
        """
        self._reached.add(FrameDirection.DOWNSTREAM, types)

    def add_reached_upstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Add frame types that fire ``on_frame_reached_upstream``.

        Args:
            types: The frame types to add.
        """
        self._reached.add(FrameDirection.UPSTREAM, types)

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

    async def _frame_left_pipeline(self, frame: Frame, direction: FrameDirection) -> None:
        if self._idle is not None:
            self._idle.touch()
        if direction is FrameDirection.DOWNSTREAM:
            event = "on_frame_reached_downstream"
            await self.on_frame_reached_downstream(frame)
        else:
            event = "on_frame_reached_upstream"
            await self.on_frame_reached_upstream(frame)
        if self._reached.matches(frame, direction):
            await self._call_event_handler(event, frame)
        if direction is FrameDirection.DOWNSTREAM and isinstance(frame, (EndFrame, CancelFrame)):
            await self._pipeline_finished(frame)

    async def _pipeline_finished(self, frame: EndFrame | CancelFrame) -> None:
        """The pipeline is over: fire ``on_pipeline_finished`` (once) and end the worker."""
        if self._finished_by is not None:
            return
        self._finished_by = frame
        self._closed = True
        await self._call_event_handler("on_pipeline_finished", frame)
        # The worker ends with its pipeline, as if its runner had asked (a no-op when it is
        # ending already, which is how a BusEndWorkerMessage got here).
        self._lifecycle.begin_stop(graceful=isinstance(frame, EndFrame), reason=frame.reason)

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
        PipelineEnd(self, FrameDirection.UPSTREAM).link(root)
        root.link(PipelineEnd(self, FrameDirection.DOWNSTREAM))
        self._root = root
        await root.setup(FrameProcessorSetup(worker_name=self.name, bus=self.bus, worker=self))
        start = StartFrame()
        async with asyncio.timeout(self._start_timeout):
            await root.process_frame(start, FrameDirection.DOWNSTREAM)
        self._started = True
        await self._call_event_handler("on_pipeline_started", start)
        if self._idle is not None:
            self._idle.start()
        self._task = asyncio.create_task(self._deliver(root), name=f"natsbus-pipeline[{self.name}]")

    async def cleanup(self) -> None:
        """End the pipeline (gracefully, or at once after a cancel) and clean it up."""
        self._closed = True
        root, task = self._root, self._task
        try:
            if self._idle is not None and self._idle.task is not None:
                await cancel_and_wait((self._idle.task,))
            if task is not None and root is not None:
                if self._finished_by is not None:
                    await cancel_and_wait((task,))  # idle, or about to return
                elif self._cancelling:
                    await self._cancel(root, task)
                else:
                    await self._end(root, task)
        finally:
            try:
                if root is not None:
                    await root.cleanup()
            finally:
                self._finished = True
                await super().cleanup()

    @property
    def _cancelling(self) -> bool:
        """Whether the worker is being cancelled rather than ended."""
        runner = self._runner
        return self._cancel_requested.is_set() or (runner is not None and runner.cancelled)

    async def _end(self, root: Pipeline, task: asyncio.Task[None]) -> None:
        self._queue.put_nowait(
            (EndFrame(reason=self._lifecycle.end_reason), FrameDirection.DOWNSTREAM)
        )
        cancel = asyncio.ensure_future(self._cancel_requested.wait())
        try:
            await asyncio.wait(
                (task, cancel), timeout=self._end_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cancel.cancel()
        if task.done():
            return
        if not self._cancel_requested.is_set():
            logger.warning("%s: pipeline did not drain within %.1f s", self.name, self._end_timeout)
        await self._cancel(root, task)

    async def _cancel(self, root: Pipeline, task: asyncio.Task[None]) -> None:
        await cancel_and_wait((task,))
        frame = CancelFrame(reason=self._lifecycle.end_reason)
        try:
            async with asyncio.timeout(self._end_timeout):
                await root.process_frame(frame, FrameDirection.DOWNSTREAM)
        except Exception:
            logger.exception("%s: cancelling the pipeline failed", self.name)
        await self._pipeline_finished(frame)

    async def _deliver(self, root: Pipeline) -> None:
        queue = self._queue
        while True:
            frame, direction = await queue.get()
            if self._idle is not None:
                self._idle.touch()
            try:
                await root.process_frame(frame, direction)
            except Exception:
                # One failing frame must not stop the pipeline: log it and go on.
                logger.exception("%s: processing %s failed", self.name, frame.name)
            if direction is FrameDirection.DOWNSTREAM and isinstance(
                frame, (EndFrame, CancelFrame)
            ):
                # Over even if a processor kept the frame from reaching the end.
                await self._pipeline_finished(frame)
                return

    async def _on_idle(self) -> bool:
        await self._call_event_handler("on_idle_timeout")
        if not self._cancel_on_idle_timeout:
            return True
        logger.warning("%s: idle pipeline: cancelling the worker", self.name)
        self._cancel_requested.set()
        self._lifecycle.begin_stop(graceful=False, reason="idle timeout")
        return False

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
            frame = TTSSpeakFrame(text=message.text, append_to_context=message.append_to_context)
            await self.queue_frame(frame)
            return
        await super().on_bus_message(message)

    async def _handle_worker_cancel(self, message: BusCancelWorkerMessage) -> None:
        """Cancel: the pipeline gets a CancelFrame at once (even during a graceful end)."""
        self._cancel_requested.set()
        await super()._handle_worker_cancel(message)

    def _on_frame_message(self, message: BusFrameMessage) -> None:
        if message.source == self.name:
            return
        if message.target is not None and message.target != self.name:
            return
        if self._bridges and message.bridge not in self._bridges:
            return
        # A worker that is still starting and will then be active takes frames: they wait in
        # the queue (for the StartFrame, if it has not passed yet) instead of being lost.
        if not (self.active or self._lifecycle.pending_activation):
            return
        if self._closed:
            return
        self._queue.put_nowait((received(message), message.direction))
