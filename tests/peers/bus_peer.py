"""A NatsBus in its own process, for cross-process tests.

Run as ``python -m tests.peers.bus_peer --url URL --channel C --name W --mode MODE``. It prints
``READY`` once subscribed, then one line per event, flushed at once so a test can follow it:

* ``echo``: every message for ``W`` is sent back to its source; a job request is answered with
  one of each job reply (update, urgent update, stream start/data/end, then the response), their
  values derived from the request's payload so that the test can compare them.
* ``worker``: a job request prints ``TOOK <job_id>``, waits ``--job-seconds``, then is answered
  ``completed`` with ``{"pid": <pid>, "job": <job_id>}``; the line ``DONE <job_id>`` follows.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys

from natsbus import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    BusSubscriber,
    JobStatus,
    NatsBus,
)
from natsbus.bus.nats.options import JetStreamOptions

from .common import say


def job_replies(request: BusJobRequestMessage, me: str) -> list[BusMessage]:
    """The replies an echo peer sends for one request, in order."""
    payload = request.payload or {}
    job_id, to = request.job_id, request.source
    return [
        BusJobUpdateMessage(job_id, {"progress": 0.5, "echo": payload}, source=me, target=to),
        BusJobUpdateUrgentMessage(job_id, {"urgent": True}, source=me, target=to),
        BusJobStreamStartMessage(job_id, {"content_type": "text/plain"}, source=me, target=to),
        BusJobStreamDataMessage(job_id, {"chunk": b"\x00\xffbytes"}, source=me, target=to),
        BusJobStreamEndMessage(job_id, None, source=me, target=to),
        BusJobResponseMessage(job_id, JobStatus.COMPLETED, {"echo": payload}, source=me, target=to),
    ]


class Peer(BusSubscriber):
    def __init__(self, bus: NatsBus, name: str, mode: str, job_seconds: float) -> None:
        self._bus = bus
        self._name = name
        self._mode = mode
        self._job_seconds = job_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self._name

    @property
    def bus_job_targets(self) -> frozenset[str]:
        return frozenset((self._name,))  # it answers the job requests sent to it

    async def on_bus_message(self, message: BusMessage) -> None:
        if message.target != self._name:
            return
        if isinstance(message, BusJobRequestMessage):
            if self._mode == "echo":
                for reply in job_replies(message, self._name):
                    await self._bus.send(reply)
            else:
                task = asyncio.create_task(self._work(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        say(f"GOT {type(message).__name__}")
        await self._bus.send(dataclasses.replace(message, target=message.source))

    async def _work(self, request: BusJobRequestMessage) -> None:
        say(f"TOOK {request.job_id}")
        await asyncio.sleep(self._job_seconds)
        response = {"pid": os.getpid(), "job": request.job_id}
        await self._bus.send(
            BusJobResponseMessage(
                request.job_id,
                JobStatus.COMPLETED,
                response,
                source=self._name,
                target=request.source,
            )
        )
        say(f"DONE {request.job_id}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--mode", choices=["echo", "worker"], default="echo")
    parser.add_argument("--job-seconds", type=float, default=0.0)
    parser.add_argument("--ack-wait", type=float, default=30.0)
    args = parser.parse_args()

    bus = NatsBus(
        servers=args.url,
        channel=args.channel,
        jetstream_options=JetStreamOptions(ack_wait=args.ack_wait),
    )
    await bus.subscribe(Peer(bus, args.name, args.mode, args.job_seconds))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with bus:
        say("READY")
        await stop.wait()
        await bus.flush(timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
