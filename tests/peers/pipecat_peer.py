"""A pipecat app in its own process, on natsbus.pipecat.NatsBus (pipecat's own classes only).

    python -m tests.peers.pipecat_peer NATS_URL CHANNEL ROLE [--count N] [--ack-wait S]

Roles:

* ``listener``: a PipelineWorker ``listener`` whose pipeline is
  ``[BusBridgeProcessor, Echo]``; Echo prints every frame it gets (``FRAME <class> <what>``)
  and sends each TextFrame back upstream as ``echo: <text>`` (which crosses back through the
  bridge). Says ``READY`` once its pipeline has started.
* ``sender``: a PipelineWorker ``sender`` whose pipeline is ``[Printer, BusBridgeProcessor]``;
  once started it queues N rounds of transcription, text and audio frames (which cross to the
  listener) and prints what comes back upstream (``BACK <class> <what>``).
* ``worker``: a BaseWorker ``translator`` with jobs ``translate`` (an update, a stream of two
  chunks, then the end of the stream) and ``slow`` (says ``STARTED <job_id> <pid>`` and
  answers after ``--slow-seconds``). Says ``READY`` once active (``--inactive``: once
  activated by a ``BusActivateWorkerMessage``).

Every role says ``RUNNING`` once its runner is (the bus started, the workers too).
* ``requester``: a BaseWorker ``client`` that asks ``translator`` (or ``--target``) for a
  ``translate`` job and prints each event (``EVENT <type> <data>``), then ``RESPONSE <dict>``.
* ``slow-requester``: asks for a ``slow`` job and prints ``RESPONSE <dict>`` when answered.
* ``canceller``: asks for a ``slow`` job, cancels it a second later (``CANCEL_SENT <job_id>``)
  and prints the answer it gets (``ANSWER <job_id> <status>``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.job_context import JobParams
from pipecat.pipeline.job_decorator import job
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.base_worker import BaseWorker
from pipecat.workers.runner import WorkerRunner

from natsbus import JetStreamOptions
from natsbus.pipecat import NatsBus

from .common import say

from pipecat.bus import BusBridgeProcessor  # isort: skip  (pipecat's own bridge)


def describe(frame: Frame) -> str:
    if isinstance(frame, TranscriptionFrame):
        return f"{frame.text}|{frame.user_id}|{frame.language}"
    if isinstance(frame, TextFrame):
        return frame.text
    if isinstance(frame, OutputAudioRawFrame):
        return f"{len(frame.audio)}|{frame.sample_rate}|{frame.num_channels}|{frame.audio[:1]!r}"
    return ""


class Echo(FrameProcessor):
    """Prints the frames from the bus and answers each TextFrame upstream."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, (TextFrame, OutputAudioRawFrame)):
            say(f"FRAME {type(frame).__name__} {describe(frame)}")
            if type(frame) is TextFrame:
                await self.push_frame(TextFrame(f"echo: {frame.text}"), FrameDirection.UPSTREAM)
            return
        await self.push_frame(frame, direction)


class Printer(FrameProcessor):
    """Prints the frames that come back upstream from the bus."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.UPSTREAM and isinstance(frame, TextFrame):
            say(f"BACK {type(frame).__name__} {frame.text}")
            return
        await self.push_frame(frame, direction)


def rounds(count: int) -> list[Frame]:
    frames: list[Frame] = []
    for i in range(count):
        frames.append(
            TranscriptionFrame(f"heard {i}", "user-1", "2026-12-02T00:00:00Z", language="en-US")
        )
        frames.append(TextFrame(f"text {i}"))
        frames.append(OutputAudioRawFrame(bytes([i % 256]) * 320, 16000, 1))
    return frames


class Translator(BaseWorker):
    slow_seconds = 30.0

    @job(name="translate")
    async def translate(self, message) -> None:  # type: ignore[no-untyped-def]
        text = message.payload["text"]
        await self.send_job_update(message.job_id, {"progress": 0.5, "big": 2**40})
        await self.send_job_stream_start(message.job_id, {"kind": "words"})
        for word in text.split():
            await self.send_job_stream_data(message.job_id, {"word": word.upper()})
        await self.send_job_stream_end(message.job_id, {"text": text.upper(), "pid": os.getpid()})

    @job(name="slow")
    async def slow(self, message) -> None:  # type: ignore[no-untyped-def]
        say(f"STARTED {message.job_id} {os.getpid()}")
        await asyncio.sleep(self.slow_seconds)
        await self.send_job_response(message.job_id, {"pid": os.getpid()})


class Canceller(BaseWorker):
    """Asks for a ``slow`` job, cancels it a second later, prints the answer it gets."""

    def __init__(self, target: str) -> None:
        super().__init__("canceller")
        self._target = target

    async def on_activated(self, args: dict | None) -> None:
        await super().on_activated(args)
        self.create_task(self._ask(), "ask")

    async def _ask(self) -> None:
        job_id = await self.request_job(self._target, params=JobParams(name="slow"))
        await asyncio.sleep(1.0)
        await self.cancel_job_group(job_id, reason="not needed")
        say(f"CANCEL_SENT {job_id}")

    async def on_job_response(self, message) -> None:  # type: ignore[no-untyped-def]
        await super().on_job_response(message)
        say(f"ANSWER {message.job_id} {message.status.value}")


class Client(BaseWorker):
    def __init__(self, target: str, job_name: str) -> None:
        super().__init__("client")
        self._target = target
        self._job_name = job_name
        self.done = asyncio.Event()

    async def on_activated(self, args: dict | None) -> None:
        await super().on_activated(args)
        self.create_task(self._ask(), "ask")

    async def _ask(self) -> None:
        params = JobParams(name=self._job_name, payload={"text": "hello big world"}, timeout=60)
        async with self.job(self._target, params=params) as handle:
            async for event in handle:
                say(f"EVENT {event.type} {json.dumps(event.data, sort_keys=True)}")
        say(f"RESPONSE {json.dumps(handle.response, sort_keys=True)}")
        self.done.set()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("channel")
    parser.add_argument("role")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--ack-wait", type=float, default=30.0)
    parser.add_argument("--target", default="translator")
    parser.add_argument("--name", default=None)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--inactive", action="store_true", help="the worker starts inactive")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    bus = NatsBus(
        servers=args.url,
        channel=args.channel,
        jetstream_options=JetStreamOptions(ack_wait=args.ack_wait),
    )
    runner = WorkerRunner(bus=bus, name=f"runner-{args.role}-{os.getpid()}", handle_sigint=False)

    if args.role in ("listener", "sender"):
        if args.role == "listener":
            bridge = BusBridgeProcessor(bus=bus, worker_name="listener")
            processors: list[FrameProcessor] = [bridge, Echo()]
        else:
            bridge = BusBridgeProcessor(bus=bus, worker_name="sender")
            processors = [Printer(), bridge]
        worker = PipelineWorker(
            Pipeline(processors),
            name=args.role,
            idle_timeout_secs=None,
            enable_rtvi=False,
            enable_turn_tracking=False,
        )

        @worker.event_handler("on_pipeline_started")
        async def started(worker: PipelineWorker, frame: Frame) -> None:
            say("READY")
            if args.role == "sender":
                await worker.queue_frames(rounds(args.count))
                say("SENT")

        await runner.add_workers(worker)
    elif args.role == "worker":
        translator = Translator(args.name or "translator", active=not args.inactive)
        translator.slow_seconds = args.slow_seconds

        @translator.event_handler("on_activated")
        async def activated(worker: BaseWorker, _: object) -> None:
            say("READY")

        await runner.add_workers(translator)
    elif args.role == "canceller":
        await runner.add_workers(Canceller(args.target))
    else:
        client = Client(args.target, "slow" if args.role == "slow-requester" else "translate")
        await runner.add_workers(client)

    @runner.event_handler("on_ready")
    async def running(runner: WorkerRunner) -> None:
        say("RUNNING")

    await runner.run()
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    say(f"EXIT {code}")
    sys.exit(code)
