"""A WorkerRunner in its own process, for the cross-process worker tests.

Run as ``python -m tests.peers.runner_peer --runner R [options]``. It prints one line
per event, flushed at once, so that a test can follow it:

* ``READY <runner>`` once its workers are ready;
* ``SEEN <worker> <runner> <local>`` when a watched worker (``--watch``) is ready;
* ``TOOK <job_id>`` / ``DONE <job_id>`` around each ``sleep`` job of a ``--sleeper``;
* ``ANSWER <status> <response>`` for the job of ``--ask`` (asked once at start);
* ``EXIT <code>`` last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from natsbus.bus import AsyncQueueBus, WorkerBus
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, JobError, WorkerReadyData, WorkerRunner, job

from .common import exit_after, run_runner, say


class Sleeper(BaseWorker):
    """``sleep`` sleeps ``payload["seconds"]`` and answers with its pid; ``progress`` streams."""

    @job(name="sleep")
    async def sleep(self, message: BusJobRequestMessage) -> Payload:
        say(f"TOOK {message.job_id}")
        await asyncio.sleep((message.payload or {}).get("seconds", 0))
        say(f"DONE {message.job_id}")
        return {"pid": os.getpid(), "job": message.job_id}

    @job(name="progress")
    async def progress(self, message: BusJobRequestMessage) -> None:
        for step in range(2):
            await self.send_job_update(message.job_id, {"step": step})
        await self.send_job_stream_start(message.job_id, {"type": "text/plain"})
        for chunk in ("a", "b", "c"):
            await self.send_job_stream_data(message.job_id, {"chunk": chunk})
        await self.send_job_stream_end(message.job_id, {"pid": os.getpid()})


class Watcher(BaseWorker):
    """Watches the workers named on the command line and asks one job if told to."""

    def __init__(self, name: str, watch: list[str], ask: str | None) -> None:
        super().__init__(name)
        self._watch = watch
        self._ask = ask

    async def on_activated(self, args: Payload | None) -> None:
        await self.watch_workers(*self._watch)
        if self._ask:
            self.spawn(self._asking(self._ask))

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        say(f"SEEN {data.worker_name} {data.runner} {data.local}")

    async def _asking(self, spec: str) -> None:
        worker, seconds = spec.split(":")
        try:
            async with self.job(worker, name="sleep", payload={"seconds": float(seconds)}) as j:
                pass
            say(f"ANSWER {j.status} {json.dumps(j.response)}")
        except JobError as error:
            say(f"ANSWER {error.status} {error}")


def make_bus(url: str | None, channel: str) -> WorkerBus:
    if url is None:
        return AsyncQueueBus()
    from natsbus.bus.nats import JetStreamOptions, NatsBus

    return NatsBus(servers=url, channel=channel, jetstream_options=JetStreamOptions(ack_wait=5))


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--channel", default="default")
    parser.add_argument("--runner", required=True)
    parser.add_argument("--sleeper", help="host a Sleeper of this name")
    parser.add_argument("--watcher", help="host a Watcher of this name")
    parser.add_argument("--watch", action="append", default=[])
    parser.add_argument("--ask", help="WORKER:SECONDS, a sleep job the watcher asks once")
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    runner = WorkerRunner(
        bus=make_bus(args.url, args.channel), name=args.runner, grace_period=args.grace
    )
    workers: list[BaseWorker] = []
    if args.sleeper:
        workers.append(Sleeper(args.sleeper))
    if args.watcher:
        workers.append(Watcher(args.watcher, args.watch, args.ask))
    await runner.add_workers(*workers)
    return await run_runner(runner, [w.name for w in workers], f"READY {runner.name}")


if __name__ == "__main__":
    exit_after(main)
