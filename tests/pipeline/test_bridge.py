"""BusBridgeProcessor: one test per rule of the reference, on an in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from natsbus.bus import AsyncQueueBus
from natsbus.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    FrameDirection,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    StopFrame,
    TextFrame,
    TranscriptionFrame,
)
from natsbus.messages import BusFrameMessage
from natsbus.pipeline import FrameProcessorSetup, Pipeline
from natsbus.pipeline.bridge import BusBridgeProcessor

from helpers.frames import Recorder, eventually, started_pipeline
from helpers.recorders import Tap

DOWN, UP = FrameDirection.DOWNSTREAM, FrameDirection.UPSTREAM
PCM = b"\x01\x02" * 320


class Scene:
    """``upstream recorder -> bridge -> downstream recorder`` on an in-process bus."""

    def __init__(self, bus: AsyncQueueBus, tap: Tap, **bridge_args: Any) -> None:
        self.bus = bus
        self.tap = tap
        self.up = Recorder("up")
        self.down = Recorder("down")
        args = {"worker_name": "transport", **bridge_args}
        self.bridge = BusBridgeProcessor(bus=bus, **args)
        self.pipeline: Pipeline | None = None

    async def start(self) -> None:
        self.pipeline = await started_pipeline([self.up, self.bridge, self.down], self.bus)

    async def inbound(self, frame: Frame, direction: FrameDirection = DOWN, **kw: Any) -> None:
        kw.setdefault("source", "agent")
        await self.bus.send(BusFrameMessage(frame, direction, kw.pop("bridge", None), **kw))

    async def marker(self, **kw: Any) -> TextFrame:
        """Send an accepted frame and wait for it: everything sent before it was handled."""
        frame = TextFrame("marker")
        await self.inbound(frame, **kw)
        await self.down.until(lambda: frame in self.down.frames(TextFrame))
        return frame

    def inbound_texts(self) -> list[str]:
        return [f.text for f in self.down.frames(TextFrame) if f.bus_source is not None]


@pytest.fixture
async def bus() -> AsyncIterator[AsyncQueueBus]:
    async with AsyncQueueBus() as bus:
        yield bus


@pytest.fixture
async def tap(bus: AsyncQueueBus) -> Tap:
    tap = Tap()
    await bus.subscribe(tap)
    return tap


async def test_subscribes_at_setup_and_unsubscribes_at_cleanup(bus: AsyncQueueBus) -> None:
    bridge = BusBridgeProcessor(bus=bus, worker_name="transport")
    pipeline = Pipeline([bridge])
    assert bridge not in bus.subscribers
    await started_pipeline([pipeline], bus)
    assert bridge in bus.subscribers
    assert bridge.bus_targets == frozenset({"transport"})
    await pipeline.cleanup()
    assert bridge not in bus.subscribers


@pytest.mark.parametrize("frame", [StartFrame(), EndFrame(), CancelFrame(), StopFrame()])
async def test_lifecycle_frames_stay_local(bus: AsyncQueueBus, tap: Tap, frame: Frame) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    await scene.pipeline.process_frame(frame, DOWN)  # type: ignore[union-attr]
    await scene.marker()
    assert frame in scene.down.frames(type(frame))
    assert [m.frame for m in tap.frames() if m.source == "transport"] == []


async def test_an_urgent_transport_message_passes_through_locally(
    bus: AsyncQueueBus, tap: Tap
) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    urgent = OutputTransportMessageUrgentFrame({"type": "server-message"})
    await scene.pipeline.process_frame(urgent, DOWN)  # type: ignore[union-attr]
    await scene.marker()
    assert scene.down.frames(OutputTransportMessageUrgentFrame) == [urgent]
    assert [m for m in tap.frames() if m.source == "transport"] == []


async def test_excluded_frames_stay_local(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap, exclude_frames=(InterruptionFrame,))
    await scene.start()
    await scene.pipeline.process_frame(InterruptionFrame(), UP)  # type: ignore[union-attr]
    await scene.marker()
    assert len(scene.up.frames(InterruptionFrame, UP)) == 1
    assert [m for m in tap.frames() if m.source == "transport"] == []


@pytest.mark.parametrize("direction", [DOWN, UP])
async def test_other_frames_go_to_the_bus_tagged_and_not_on(
    bus: AsyncQueueBus, tap: Tap, direction: FrameDirection
) -> None:
    scene = Scene(bus, tap, bridge="voice", target_task="agent")
    await scene.start()
    frame = TranscriptionFrame("hello", "u1", "t0")
    await scene.bridge.process_frame(frame, direction)
    await scene.marker(bridge="voice")
    [sent] = [m for m in tap.frames() if m.source == "transport"]
    assert sent == BusFrameMessage(frame, direction, "voice", source="transport")
    assert sent.frame is frame
    assert not scene.down.frames(TranscriptionFrame) and not scene.up.frames(TranscriptionFrame)


async def test_inbound_frames_are_pushed_in_their_direction(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    down, up = TextFrame("down"), TextFrame("up")
    await scene.inbound(down, DOWN)
    await scene.inbound(up, UP)
    await scene.up.until(lambda: bool(scene.up.frames(TextFrame, UP)))
    assert scene.down.frames(TextFrame, DOWN) == [down]
    assert scene.up.frames(TextFrame, UP) == [up]
    [received] = scene.down.frames(TextFrame, DOWN)
    assert received.bus_source == "agent" and received.id == down.id


async def test_own_frames_are_not_pushed_back(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    await scene.inbound(TextFrame("mine"), source="transport")
    await scene.marker()
    assert scene.inbound_texts() == ["marker"]


async def test_frames_of_another_bridge_are_ignored(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap, bridge="voice")
    await scene.start()
    await scene.inbound(TextFrame("video"), bridge="video")
    await scene.inbound(TextFrame("untagged"))
    await scene.inbound(TextFrame("voice"), bridge="voice")
    await scene.marker(bridge="voice")
    assert scene.inbound_texts() == ["voice", "marker"]


async def test_an_unnamed_bridge_takes_every_bridge(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    await scene.inbound(TextFrame("video"), bridge="video")
    await scene.marker()
    assert scene.inbound_texts() == ["video", "marker"]


async def test_only_the_target_task_is_heard(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap, target_task="agent")
    await scene.start()
    await scene.inbound(TextFrame("other"), source="other-agent")
    await scene.inbound(TextFrame("agent"), source="agent")
    await scene.marker()
    assert scene.inbound_texts() == ["agent", "marker"]


async def test_frames_targeted_at_someone_else_are_ignored(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    await scene.inbound(TextFrame("for another"), target="another-transport")
    await scene.inbound(TextFrame("for me"), target="transport")
    await scene.marker()
    assert scene.inbound_texts() == ["for me", "marker"]


async def test_frames_before_start_are_kept_and_delivered_after_it(
    bus: AsyncQueueBus, tap: Tap
) -> None:
    scene = Scene(bus, tap)
    pipeline = Pipeline([scene.up, scene.bridge, scene.down])
    await pipeline.setup(FrameProcessorSetup(worker_name="transport"))
    early = [TextFrame(f"early {i}") for i in range(5)]
    for frame in early:
        await scene.inbound(frame)
    await scene.inbound(TextFrame("early up"), UP)

    # Every early message has been handled by the bridge before the pipeline starts.
    await eventually(
        lambda: bus.statistics().subscribers[scene.bridge.name].data.handled == len(early) + 1
    )
    assert scene.down.seen == []
    await pipeline.process_frame(StartFrame(), DOWN)
    await scene.marker()
    assert isinstance(scene.down.seen[0][0], StartFrame)
    assert scene.inbound_texts() == [*(f.text for f in early), "marker"]
    assert scene.up.frames(TextFrame, UP) == [TextFrame("early up")]


async def test_frames_from_one_source_keep_their_order(bus: AsyncQueueBus, tap: Tap) -> None:
    scene = Scene(bus, tap)
    await scene.start()
    frames: list[Frame] = []
    for i in range(200):
        frames.append(TextFrame(str(i)))
        frames.append(InputAudioRawFrame(PCM, 16000, 1, pts=i))
    for frame in frames:
        await scene.inbound(frame)
    await scene.down.until(lambda: len(scene.down.seen) == len(frames) + 1)
    assert [f for f, _ in scene.down.seen[1:]] == frames
