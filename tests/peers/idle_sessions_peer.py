"""A process holding idle sessions on one connection pair, for the crash tests.

Prints ``READY <n>`` once its ``--sessions`` sessions (a bus on a channel of its own, a
runner, a worker that takes jobs) are up, or ``FAILED <error>`` at the first that is not;
then waits to be killed.
"""

from __future__ import annotations

import argparse
import asyncio

from natsbus.bus.nats import JetStreamOptions, NatsBus, NatsConnections
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, WorkerRunner, job


class Agent(BaseWorker):
    """A session's worker: idle, but it answers ``echo``."""

    @job(name="echo")
    async def echo(self, message: BusJobRequestMessage) -> Payload:
        return {"echo": message.payload}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--max-consumers", type=int, required=True)
    parser.add_argument("--tag", required=True, help="part of the channels' names")
    args = parser.parse_args()
    options = JetStreamOptions(max_consumers=args.max_consumers)
    async with NatsConnections(args.url) as connections:
        for index in range(args.sessions):
            bus = NatsBus(
                connections=connections,
                channel=f"{args.tag}-{index}",
                jetstream_options=options,
            )
            runner = WorkerRunner(bus=bus, handle_signals=False)
            await runner.add_workers(Agent("agent"))
            task = asyncio.create_task(runner.run())
            ready = asyncio.create_task(runner.registry.wait_ready(["agent"]))
            await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                print(f"FAILED {task.exception() if task.done() else 'not ready'}", flush=True)
                break
        else:
            print(f"READY {args.sessions}", flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
