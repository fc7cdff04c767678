"""Pieces of :class:`~natsbus.pipeline.PipelineWorker` kept apart from its lifecycle.

- :class:`PipelineEnd`: the processor at each end of the worker's pipeline, through which
  frames leaving it reach the worker.
- :class:`ReachedFilters`: which frame types fire the ``on_frame_reached_*`` events.
- :class:`IdleWatch`: the idle timeout, a deadline pushed back by every frame that passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from natsbus.frames import Frame, FrameDirection
from natsbus.pipeline.processor import FrameProcessor

__all__ = ["IdleWatch", "PipelineEnd", "ReachedFilters"]

logger = logging.getLogger(__name__)


class _Ends(Protocol):
    """What a :class:`PipelineEnd` hands the frames leaving the pipeline to."""

    @property
    def name(self) -> str: ...

    async def _frame_left_pipeline(self, frame: Frame, direction: FrameDirection) -> None: ...


class PipelineEnd(FrameProcessor):
    """One end of a worker's pipeline: frames leaving it there go to the worker.

    Args:
        worker: The worker.
        direction: The direction this end takes: DOWNSTREAM after the pipeline's last
            processor, UPSTREAM before its first.
    """

    def __init__(self, worker: _Ends, direction: FrameDirection) -> None:
        super().__init__(name=f"{worker.name}::{direction.name.lower()}-end")
        self._worker = worker
        self._direction = direction

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Hand a frame leaving the pipeline at this end to the worker.

        Args:
            frame: The frame.
            direction: The way it travels (a frame going the other way is dropped).
        """
        if direction is self._direction:
            await self._worker._frame_left_pipeline(frame, direction)


class ReachedFilters:
    """The frame types for which ``on_frame_reached_downstream/upstream`` events fire.

    Empty by default, as in pipecat: each event handler runs in a task of its own, so firing
    it for every frame would be costly; the overridable hook methods see every frame anyway.
    """

    def __init__(self) -> None:
        self._types: dict[FrameDirection, tuple[type[Frame], ...]] = {
            FrameDirection.DOWNSTREAM: (),
            FrameDirection.UPSTREAM: (),
        }

    def types(self, direction: FrameDirection) -> tuple[type[Frame], ...]:
        """The frame types that fire the event for ``direction``."""
        return self._types[direction]

    def set(self, direction: FrameDirection, types: Iterable[type[Frame]]) -> None:
        """Replace the frame types for ``direction``."""
        self._types[direction] = _unique(types)

    def add(self, direction: FrameDirection, types: Iterable[type[Frame]]) -> None:
        """Add frame types for ``direction``."""
        self._types[direction] = _unique((*self._types[direction], *types))

    def matches(self, frame: Frame, direction: FrameDirection) -> bool:
        """Whether ``frame`` leaving the pipeline in ``direction`` fires the event."""
        types = self._types[direction]
        return bool(types) and isinstance(frame, types)


def _unique(types: Iterable[type[Frame]]) -> tuple[type[Frame], ...]:
    return tuple(dict.fromkeys(types))


class IdleWatch:
    """Calls ``on_idle`` after ``timeout`` seconds without a frame, and after each further one.

    It goes on until it is stopped or ``on_idle`` returns False.

    Args:
        timeout: Seconds of quiet that make the pipeline idle.
        on_idle: Called when it is; returns whether to keep watching.
        name: The worker's name, for the task and the logs.

    Raises:
        ValueError: ``timeout`` is not positive.
    """

    def __init__(
        self, timeout: float, on_idle: Callable[[], Awaitable[bool]], *, name: str
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"idle_timeout_secs must be positive, got {timeout!r}")
        self._timeout = timeout
        self._on_idle = on_idle
        self._name = name
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    def touch(self) -> None:
        """A frame passed: push the deadline back (cheap: one clock read, no wake-up)."""
        self._last = asyncio.get_running_loop().time()

    def start(self) -> None:
        """Start watching, from now."""
        self.touch()
        self._task = asyncio.create_task(self._watch(), name=f"natsbus-idle[{self._name}]")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The watching task, once started."""
        return self._task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = self._last + self._timeout - loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            logger.warning(
                "%s: no frame for %.1f s: the pipeline is idle", self._name, self._timeout
            )
            self._last = loop.time()
            if not await self._on_idle():
                return
