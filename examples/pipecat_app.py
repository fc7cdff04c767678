"""A pipecat worker app that runs on natsbus with only its imports changed.

It is written against pipecat's API (pipecat-ai 1.14.0) and uses its main pieces: a runner,
a parent worker that adds children, a job group whose workers send updates and a stream, a
hand-off with ``deactivate_self``, and pipeline workers that exchange frames through a
``BusBridgeProcessor`` and a bridged pipeline. On pipecat the imports are::

    from pipecat.bus import BusBridgeProcessor
    from pipecat.frames.frames import TextFrame
    from pipecat.pipeline.job_context import JobGroupParams
    from pipecat.pipeline.job_decorator import job
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.base_worker import BaseWorker, WorkerActivationArgs
    from pipecat.workers.runner import WorkerRunner

The scene: ``coordinator`` adds ``researcher`` and ``writer`` as children, runs one job group
on both (the researcher reports progress, the writer streams its draft), then hands over to
``presenter``: it turns itself inactive and activates the presenter, whose pipeline sends the
summary over the bus to ``echo`` (a bridged pipeline worker that shouts it back); when the
shouted summary comes back through the presenter's bridge, the presenter ends the session.

Run it: ``python examples/pipecat_app.py`` (in process), or import :func:`run_app` with a bus.
"""

from __future__ import annotations

import asyncio
from typing import Any

from natsbus import (
    BaseWorker,
    BusBridgeProcessor,
    JobGroupParams,
    WorkerActivationArgs,
    WorkerBus,
    WorkerRunner,
    job,
)
from natsbus.frames import TextFrame
from natsbus.pipeline import FrameDirection, FrameProcessor, Pipeline, PipelineWorker

Log = list[tuple[Any, ...]]


class Researcher(BaseWorker):
    """Reports its progress, then answers with its facts."""

    @job(name="work")
    async def research(self, message: Any) -> None:
        for progress in (50, 100):
            await self.send_job_update(message.job_id, {"progress": progress})
        await self.send_job_response(message.job_id, {"facts": ["fast", "durable"]})


class Writer(BaseWorker):
    """Streams its draft word by word; the end of the stream is its answer."""

    @job(name="work")
    async def write(self, message: Any) -> None:
        await self.send_job_stream_start(message.job_id, {"content_type": "text"})
        for word in ("buses", "carry", "frames"):
            await self.send_job_stream_data(message.job_id, {"word": word})
        await self.send_job_stream_end(message.job_id, {"words": 3})


class Coordinator(BaseWorker):
    """Adds the children, runs the job group, then hands over to the presenter."""

    def __init__(self, log: Log) -> None:
        super().__init__("coordinator")
        self._log = log
        self._ready: set[str] = set()
        self._work: asyncio.Task[None] | None = None

    async def on_activated(self, args: dict[str, Any] | None) -> None:
        await super().on_activated(args)
        if self._work is None and not self.children:
            await self.add_workers(Researcher("researcher"), Writer("writer"))

    async def on_worker_ready(self, data: Any) -> None:
        await super().on_worker_ready(data)
        self._ready.add(data.worker_name)
        if self._work is None and {"researcher", "writer"} <= self._ready:
            self._work = self.create_task(self._run_group(), "group")

    async def _run_group(self) -> None:
        params = JobGroupParams(name="work", payload={"topic": "buses"}, timeout=30)
        async with self.job_group("researcher", "writer", params=params) as group:
            async for event in group:
                self._log.append(("event", event.worker_name, str(event.type), event.data))
        self._log.append(("responses", dict(group.responses)))
        summary = " ".join(group.responses["researcher"]["facts"])
        await self.activate_worker(
            "presenter",
            args=WorkerActivationArgs(metadata={"summary": summary}),
            deactivate_self=True,
        )
        self._log.append(("handed over", self.active))


class Shout(FrameProcessor):
    """Turns every text frame into its upper-case version."""

    async def process_frame(self, frame: Any, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            await self.push_frame(TextFrame(text=frame.text.upper()), direction)
        else:
            await self.push_frame(frame, direction)


def make_presenter(bus: WorkerBus, log: Log) -> PipelineWorker:
    """The presenter: its bridge sends the summary to the bus and brings the echo back."""
    bridge = BusBridgeProcessor(bus=bus, worker_name="presenter")
    presenter = PipelineWorker(
        Pipeline([bridge]), name="presenter", active=False, cancel_on_idle_timeout=False
    )
    presenter.set_reached_downstream_filter((TextFrame,))

    @presenter.event_handler("on_activated")
    async def on_activated(worker: PipelineWorker, args: dict[str, Any] | None) -> None:
        summary = WorkerActivationArgs.from_dict(args or {}).metadata or {}
        log.append(("presenter active", worker.active, summary.get("summary")))
        await worker.queue_frame(TextFrame(text=summary["summary"]))

    @presenter.event_handler("on_frame_reached_downstream")
    async def on_frame(worker: PipelineWorker, frame: TextFrame) -> None:
        if frame.text.isupper():
            log.append(("echo", frame.text))
            await worker.end(reason="presented")

    return presenter


def make_echo() -> PipelineWorker:
    """A bridged pipeline worker: frames from the bus go through ``Shout`` and back onto it."""
    return PipelineWorker(
        Pipeline([Shout()]), name="echo", bridged=(), cancel_on_idle_timeout=False
    )


async def run_app(bus: WorkerBus, *, timeout: float = 30.0) -> Log:
    """Run the scene on ``bus`` until the presenter ends the session; return what happened."""
    log: Log = []
    runner = WorkerRunner(bus=bus, handle_sigint=False)
    await runner.add_workers(Coordinator(log), make_presenter(bus, log), make_echo())
    await asyncio.wait_for(runner.run(), timeout)
    return log


if __name__ == "__main__":
    from natsbus import AsyncQueueBus

    for entry in asyncio.run(run_app(AsyncQueueBus())):
        print(*entry)
