"""The :class:`Pipeline`: processors linked in a row, itself a processor."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from natsbus.frames import Frame, FrameDirection
from natsbus.pipeline.processor import FrameProcessor, FrameProcessorSetup

__all__ = ["Pipeline"]

logger = logging.getLogger(__name__)


class _Source(FrameProcessor):
    """The pipeline's upstream end: what reaches it upstream leaves the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(name=f"{pipeline.name}::source")
        self._pipeline = pipeline

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is FrameDirection.UPSTREAM:
            await self._pipeline.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)


class _Sink(FrameProcessor):
    """The pipeline's downstream end: what reaches it downstream leaves the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(name=f"{pipeline.name}::sink")
        self._pipeline = pipeline

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is FrameDirection.DOWNSTREAM:
            await self._pipeline.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)


class Pipeline(FrameProcessor):
    """Processors linked in a row; a pipeline is a processor, so pipelines nest.

    A frame the pipeline receives downstream enters its first processor; one it receives
    upstream enters its last. What leaves the first processor upstream, or the last one
    downstream, leaves the pipeline in the same direction.

    Example::

        pipeline = Pipeline([transport_input, bridge, transport_output])

    Args:
        processors: The processors, from upstream to downstream. Each may be in one pipeline
            only.
        name: A name for logs.
    """

    def __init__(self, processors: Sequence[FrameProcessor], *, name: str | None = None) -> None:
        super().__init__(name=name)
        self._processors = tuple(processors)
        self._source = _Source(self)
        self._sink = _Sink(self)
        chain: list[FrameProcessor] = [self._source, *self._processors, self._sink]
        for upstream, downstream in itertools.pairwise(chain):
            upstream.link(downstream)

    @property
    def processors(self) -> tuple[FrameProcessor, ...]:
        """The processors, from upstream to downstream."""
        return self._processors

    async def setup(self, setup: FrameProcessorSetup) -> None:
        """Set up every processor, upstream first.

        Args:
            setup: Passed on to each processor.
        """
        await super().setup(setup)
        for processor in self._processors:
            await processor.setup(setup)

    async def cleanup(self) -> None:
        """Clean up every processor, downstream first; one that fails does not stop the rest."""
        await super().cleanup()
        for processor in reversed(self._processors):
            try:
                await processor.cleanup()
            except Exception:
                # The others still hold resources (bus subscriptions): release them anyway.
                logger.exception("%s: cleanup of %s failed", self.name, processor.name)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Send a frame into the pipeline at the end its direction enters by.

        Args:
            frame: The frame.
            direction: Downstream enters the first processor, upstream the last.
        """
        if direction is FrameDirection.DOWNSTREAM:
            await self._source.push_frame(frame, direction)
        else:
            await self._sink.push_frame(frame, direction)
