"""Frames between pipelines and the bus: :class:`BusBridgeProcessor` and the bridged edges.

- :class:`BusBridgeProcessor` sits in the middle of a transport or session worker's pipeline
  and *consumes* frames: what reaches it goes to the bus, and what comes from the bus is pushed
  on from it.
- :class:`BusEdgeProcessor` is what :class:`~natsbus.pipeline.PipelineWorker` puts at both
  ends of a bridged pipeline: it *tees*, letting every frame continue locally and also sending
  the ones leaving the pipeline to the bus. Inbound frames of a bridged worker are handled by
  the worker itself (see ``natsbus.pipeline.worker``).

Both keep lifecycle frames (:data:`~natsbus.frames.LIFECYCLE_FRAMES`) and excluded frames
local. A frame that arrived over the bus (``frame.bus_source`` set) is never sent back onto it
by an edge, so two bridged workers active at once cannot echo frames to each other.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from typing import Final

from natsbus.bus import BusSubscriber, WorkerBus
from natsbus.frames import (
    LIFECYCLE_FRAMES,
    Frame,
    FrameDirection,
    OutputTransportMessageUrgentFrame,
    StartFrame,
)
from natsbus.messages import BusFrameMessage, BusMessage
from natsbus.pipeline.processor import FrameProcessor, FrameProcessorSetup

__all__ = ["EARLY_FRAME_LIMIT", "BusBridgeProcessor", "BusEdgeProcessor"]

logger = logging.getLogger(__name__)

_PASSTHROUGH_FRAMES: Final[tuple[type[Frame], ...]] = (OutputTransportMessageUrgentFrame,)

EARLY_FRAME_LIMIT: Final = 10_000
"""Frames a bridge keeps from the bus before its pipeline has started (then drops the oldest)."""


def received(message: BusFrameMessage) -> Frame:
    """The frame of an inbound message, as this process's own copy marked with its source.

    A shallow copy: on an in-process bus (or between subscribers of one NatsBus) every
    receiver would otherwise share one frame object with the sender and with each other.
    """
    frame = copy.copy(message.frame)
    frame.bus_source = message.source
    return frame


class BusBridgeProcessor(FrameProcessor, BusSubscriber):
    """Bidirectional mid-pipeline bridge between a pipeline and the bus.

    Placed in a transport or session worker's pipeline to exchange frames with other workers
    via the :class:`~natsbus.bus.WorkerBus`. Lifecycle and excluded frames pass through
    locally without crossing the bus, and so does
    :class:`~natsbus.frames.OutputTransportMessageUrgentFrame`, which must reach the transport
    even while no other worker is active. Every other frame is sent as a
    :class:`~natsbus.messages.BusFrameMessage` (a broadcast, tagged with ``bridge``) and goes
    no further locally.

    Inbound frames are pushed on in the direction they carry, unless they come from this
    worker, carry another bridge name (when ``bridge`` is set), come from another worker than
    ``target_task`` (when set), or are targeted at another worker. Frames that arrive before
    the :class:`~natsbus.frames.StartFrame` has passed through the bridge are kept, in order,
    and pushed right after it.

    Args:
        bus: The bus to exchange frames with.
        worker_name: Name of the owning worker, used as message source.
        target_task: When set, only accept frames from this worker.
        bridge: Optional bridge name for routing. When set, outgoing frames are tagged with
            it and only incoming frames with the same bridge name are accepted.
        exclude_frames: Extra frame types that never cross the bus (on top of lifecycle
            frames, which never do).
        name: The processor's name, also its subscriber name on the bus.
    """

    def __init__(
        self,
        *,
        bus: WorkerBus,
        worker_name: str,
        target_task: str | None = None,
        bridge: str | None = None,
        exclude_frames: tuple[type[Frame], ...] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._bus = bus
        self._worker_name = worker_name
        self._target_task = target_task
        self._bridge = bridge
        self._exclude_frames = exclude_frames or ()
        self._started = False
        self._early: deque[tuple[Frame, FrameDirection]] = deque()
        self._early_dropped = 0

    @property
    def bus_targets(self) -> frozenset[str]:
        """The owning worker's name: frames targeted at it are for this bridge."""
        return frozenset((self._worker_name,))

    async def setup(self, setup: FrameProcessorSetup) -> None:
        """Subscribe to the bus during processor setup.

        Args:
            setup: What the processor is told about its pipeline.
        """
        await super().setup(setup)
        await self._bus.subscribe(self)

    async def cleanup(self) -> None:
        """Unsubscribe from the bus on cleanup."""
        await super().cleanup()
        await self._bus.unsubscribe(self)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Send a frame to the bus, or pass it through locally if it stays local.

        Args:
            frame: The frame to process.
            direction: The direction the frame is traveling.
        """
        await super().process_frame(frame, direction)
        if isinstance(frame, LIFECYCLE_FRAMES):
            await self.push_frame(frame, direction)
            if isinstance(frame, StartFrame):
                await self._release_early_frames()
            return
        if isinstance(frame, (_PASSTHROUGH_FRAMES, self._exclude_frames)):
            await self.push_frame(frame, direction)
            return
        await self._bus.send(
            BusFrameMessage(frame, direction, self._bridge, source=self._worker_name)
        )

    async def on_bus_message(self, message: BusMessage) -> None:
        """Push the frame of an incoming frame message into the pipeline, if it is for us.

        Args:
            message: The bus message to handle.
        """
        if not isinstance(message, BusFrameMessage):
            return
        if message.source == self._worker_name:
            return
        if self._bridge and message.bridge != self._bridge:
            return
        if self._target_task and message.source != self._target_task:
            return
        if message.target and message.target != self._worker_name:
            return
        frame = received(message)
        if not self._started:
            self._keep_early(frame, message.direction)
            return
        await self.push_frame(frame, message.direction)

    def _keep_early(self, frame: Frame, direction: FrameDirection) -> None:
        if len(self._early) >= EARLY_FRAME_LIMIT:
            self._early.popleft()
            self._early_dropped += 1
            if self._early_dropped == 1 or self._early_dropped % 1000 == 0:
                logger.warning(
                    "%s: pipeline not started; %d early frames dropped (keeping the last %d)",
                    self.name,
                    self._early_dropped,
                    EARLY_FRAME_LIMIT,
                )
        self._early.append((frame, direction))

    async def _release_early_frames(self) -> None:
        # Frames arriving while these are pushed join the queue; started is set only once it
        # is empty, with no await in between, so their order holds.
        early = self._early
        while early:
            frame, direction = early.popleft()
            await self.push_frame(frame, direction)
        self._started = True


class BusEdgeProcessor(FrameProcessor):
    """A tee at one end of a bridged pipeline (placed by ``PipelineWorker``).

    Every frame continues locally. Frames travelling in ``direction`` (out of the pipeline at
    this end) are also sent to the bus as :class:`~natsbus.messages.BusFrameMessage`, unless
    they are lifecycle frames, excluded frames, or frames that themselves arrived over the bus.

    Args:
        worker_name: The owning worker, the messages' source.
        direction: The direction this edge forwards: UPSTREAM at the pipeline's start,
            DOWNSTREAM at its end.
        bridge: The bridge name outgoing frames are tagged with, or None.
        exclude_frames: Extra frame types that never cross the bus.
        name: A name for logs.
    """

    def __init__(
        self,
        *,
        worker_name: str,
        direction: FrameDirection,
        bridge: str | None = None,
        exclude_frames: tuple[type[Frame], ...] = (),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._worker_name = worker_name
        self._direction = direction
        self._bridge = bridge
        self._exclude_frames = exclude_frames
        self._bus: WorkerBus | None = None

    async def setup(self, setup: FrameProcessorSetup) -> None:
        """Take the bus from the setup.

        Args:
            setup: Must carry the worker's bus.

        Raises:
            ValueError: The setup has no bus.
        """
        await super().setup(setup)
        if setup.bus is None:
            raise ValueError(f"{self.name}: a bridged pipeline needs a bus")
        self._bus = setup.bus

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass the frame on locally and send it to the bus if it leaves the pipeline here.

        Args:
            frame: The frame.
            direction: The way it travels.
        """
        await self.push_frame(frame, direction)
        if (
            direction is not self._direction
            or frame.bus_source is not None
            or isinstance(frame, (LIFECYCLE_FRAMES, self._exclude_frames))
            or self._bus is None
        ):
            return
        await self._bus.send(
            BusFrameMessage(frame, direction, self._bridge, source=self._worker_name)
        )
