"""The :class:`FrameProcessor`: one link of a pipeline."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from natsbus.bus import WorkerBus
from natsbus.frames import Frame, FrameDirection

if TYPE_CHECKING:
    # For annotations only: the pipeline layer never imports the workers layer at run time.
    from natsbus.workers import BaseWorker, WorkerRunner

__all__ = ["FrameProcessor", "FrameProcessorSetup", "IdentityFilter"]

logger = logging.getLogger(__name__)

_counters: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)


@dataclass(frozen=True, slots=True)
class FrameProcessorSetup:
    """What a processor is told when its pipeline is set up.

    Attributes:
        worker_name: The worker running the pipeline, or None outside a worker.
        bus: That worker's bus, or None outside a worker.
        worker: The worker running the pipeline, or None outside a worker.
    """

    worker_name: str | None = None
    bus: WorkerBus | None = None
    worker: BaseWorker | None = None


class FrameProcessor:
    """A link of a pipeline: receives frames, and pushes frames on in either direction.

    Override :meth:`process_frame` and call :meth:`push_frame` for what should go on: the base
    class passes nothing on by itself, so a processor decides what it consumes. Frames travel
    by direct calls: :meth:`push_frame` awaits the next processor's :meth:`process_frame`, so
    one push reaches the end of the pipeline (or a processor that keeps the frame) before it
    returns, and frames pushed one after another keep their order.

    A processor may be called from more than one task: the pipeline's own, and a bridge's bus
    dispatch task pushing frames that arrived over the bus.

    Example::

        class Upper(FrameProcessor):
            async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
                await super().process_frame(frame, direction)
                if isinstance(frame, TextFrame):
                    frame = TextFrame(frame.text.upper())
                await self.push_frame(frame, direction)

    Args:
        name: A name for logs and, for processors that subscribe to a bus, the subscriber
            name; defaults to ``"<class>#<n>"``.
    """

    def __init__(self, *, name: str | None = None) -> None:
        if name is None:
            cls = type(self).__name__
            name = f"{cls}#{next(_counters[cls])}"
        self._name = name
        self._prev: FrameProcessor | None = None
        self._next: FrameProcessor | None = None
        self._setup: FrameProcessorSetup | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}>"

    @property
    def name(self) -> str:
        """The processor's name."""
        return self._name

    @property
    def next(self) -> FrameProcessor | None:
        """The processor downstream of this one, if linked."""
        return self._next

    @property
    def previous(self) -> FrameProcessor | None:
        """The processor upstream of this one, if linked."""
        return self._prev

    @property
    def worker_runner(self) -> WorkerRunner:
        """The runner hosting the worker that runs this processor's pipeline.

        Use it to reach another worker of that runner by name:
        ``self.worker_runner.get_worker("helper")``.

        Raises:
            RuntimeError: The processor was not set up by a worker on a runner (or a
                subclass's ``setup`` did not call ``super().setup``).
        """
        worker = self._setup.worker if self._setup is not None else None
        if worker is None:
            raise RuntimeError(f"{self!r} is not in a pipeline run by a worker")
        return worker.worker_runner

    def link(self, processor: FrameProcessor) -> None:
        """Make ``processor`` the next one downstream (and this one its previous).

        Args:
            processor: The processor that receives what this one pushes downstream.
        """
        self._next = processor
        processor._prev = self

    async def setup(self, setup: FrameProcessorSetup) -> None:
        """Prepare the processor before frames flow (the base keeps ``setup``).

        Args:
            setup: What the processor is told about its pipeline.
        """
        self._setup = setup

    async def cleanup(self) -> None:
        """Release what :meth:`setup` took, after frames stopped flowing (the base does nothing)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Handle one frame; push what should go on with :meth:`push_frame`.

        The base implementation passes nothing on: it is there for ``super()`` calls, so a
        processor written as ``await super().process_frame(frame, direction)`` followed by
        ``await self.push_frame(frame, direction)`` pushes each frame once.

        Args:
            frame: The frame.
            direction: The way it travels.
        """

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Hand a frame to the next processor in ``direction``.

        A frame pushed off an end of a pipeline that nothing is linked to is dropped.

        Args:
            frame: The frame.
            direction: Downstream (to :attr:`next`) or upstream (to :attr:`previous`).
        """
        neighbour = self._next if direction is FrameDirection.DOWNSTREAM else self._prev
        if neighbour is not None:
            await neighbour.process_frame(frame, direction)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: %s pushed %s off the end", self._name, frame.name, direction.name)


class IdentityFilter(FrameProcessor):
    """A processor that passes every frame on unchanged, in the direction it travels.

    Useful as a placeholder in a pipeline, and in tests.

    Args:
        name: A name for logs.
    """

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Push the frame on unchanged.

        Args:
            frame: The frame.
            direction: The way it travels.
        """
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
