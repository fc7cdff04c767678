"""Frames across OS processes over NatsBus: a transport's bridge and a bridged agent."""

from __future__ import annotations

import signal
import uuid

from natsbus.bus.nats import NatsBus
from natsbus.frames import FrameDirection, InputAudioRawFrame, TextFrame
from natsbus.messages import BusFrameMessage
from natsbus.pipeline import BusBridgeProcessor, PipelineWorker

from helpers.frames import PCM, Recorder, Responder, started_pipeline
from helpers.process import Peer
from helpers.workers import running

COUNT = 50


async def test_a_transport_and_an_agent_in_two_processes_exchange_frames_in_order(
    nats_url: str,
) -> None:
    channel = f"frames-{uuid.uuid4().hex[:8]}"
    agent = PipelineWorker([Responder()], name="agent", bridged=True)
    transport = Peer(
        "tests.peers.transport_peer",
        f"--url={nats_url}",
        f"--channel={channel}",
        f"--count={COUNT}",
    )
    try:
        await transport.start()
        async with running(agent, bus=NatsBus(servers=nats_url, channel=channel)):
            await transport.wait_for("SENT")
            await transport.wait_for(f"GOT OutputAudioRawFrame {COUNT - 1} ")
        transport.signal(signal.SIGTERM)
        assert await transport.wait(10) == 0
    finally:
        await transport.close()
    expected: list[str] = []
    for i in range(COUNT):
        expected += [f"GOT TextFrame re: {i} agent", f"GOT OutputAudioRawFrame {i} agent 640"]
    assert transport.found("GOT") == expected


async def test_audio_frames_from_one_source_keep_their_order_over_nats(nats_url: str) -> None:
    channel = f"frames-{uuid.uuid4().hex[:8]}"
    async with (
        NatsBus(servers=nats_url, channel=channel) as sending,
        NatsBus(servers=nats_url, channel=channel) as receiving,
    ):
        recorder = Recorder()
        bridge = BusBridgeProcessor(bus=receiving, worker_name="agent", target_task="mic")
        await started_pipeline([bridge, recorder], receiving)
        frames = [InputAudioRawFrame(PCM, 16000, 1, pts=i) for i in range(500)]
        for frame in frames:
            await sending.send(BusFrameMessage(frame, FrameDirection.DOWNSTREAM, source="mic"))
        await sending.send(
            BusFrameMessage(TextFrame("last"), FrameDirection.DOWNSTREAM, source="mic")
        )
        await recorder.until(lambda: bool(recorder.frames(TextFrame)))
        assert recorder.frames(InputAudioRawFrame) == frames
