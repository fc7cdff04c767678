"""A transport worker in its own process, for the cross-process bridge scene.

Run as ``python -m tests.peers.transport_peer --url URL --channel C --count N``. Its
pipeline is ``BusBridgeProcessor(target_task="agent") -> Printer``. Once the ``agent`` worker
is ready (on this runner or another) it queues N transcription frames; the bridge sends them
to the bus, and the Printer prints what comes back from the agent. It prints, flushed:

* ``READY`` once its worker is ready;
* ``SENT <n>`` after queueing the transcriptions;
* ``GOT <FrameClass> <text or pts> <source>`` for each text or audio frame that comes back;
* ``EXIT <code>`` last (it ends on SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import sys

from natsbus.bus.nats import NatsBus
from natsbus.frames import Frame, FrameDirection, OutputAudioRawFrame, TextFrame, TranscriptionFrame
from natsbus.messages import Payload
from natsbus.pipeline import BusBridgeProcessor, FrameProcessor, Pipeline, PipelineWorker
from natsbus.workers import WorkerReadyData, WorkerRunner

from .common import exit_after, run_runner, say


class Printer(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TextFrame):
            say(f"GOT TextFrame {frame.text} {frame.bus_source}")
        elif isinstance(frame, OutputAudioRawFrame):
            say(f"GOT OutputAudioRawFrame {frame.pts} {frame.bus_source} {len(frame.audio)}")
        await self.push_frame(frame, direction)


class Transport(PipelineWorker):
    def __init__(self, count: int) -> None:
        super().__init__(name="transport")
        self._count = count

    async def build_pipeline(self) -> FrameProcessor:
        bridge = BusBridgeProcessor(bus=self.bus, worker_name=self.name, target_task="agent")
        return Pipeline([bridge, Printer()])

    async def on_activated(self, args: Payload | None) -> None:
        await self.watch_workers("agent")

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        if data.worker_name != "agent":
            return
        for i in range(self._count):
            await self.queue_frame(TranscriptionFrame(str(i), "user", f"t{i}"))
        say(f"SENT {self._count}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    runner = WorkerRunner(
        bus=NatsBus(servers=args.url, channel=args.channel), name="transport-runner"
    )
    await runner.add_workers(Transport(args.count))
    return await run_runner(runner, ["transport"], "READY")


if __name__ == "__main__":
    exit_after(main)
