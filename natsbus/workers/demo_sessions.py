"""The sessions scene of ``make demo`` (on NATS only): calls on a fleet of serving processes.

1. a shared ``tts`` service worker runs with ``natsbus run --service``, and two serving
   processes with ``natsbus serve natsbus.workers.demo_sessions:make_session --group calls``;
2. a client starts four sessions at once; each lands on a process with a free slot, and each
   session's ``agent`` asks the shared ``tts`` for its greeting (``channel="services"``);
3. one caller hangs up: that session's agent calls ``self.end()``; only its workers stop, the
   other sessions and the service go on;
4. one serving process is killed (SIGKILL): its sessions are reported failed to their
   requesters within seconds, the others go on;
5. the rest end; the service worker and the last serving process stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, job

if TYPE_CHECKING:
    from natsbus.client import BusClient

__all__ = ["Agent", "Line", "Tts", "make_session", "play"]

Say = Callable[[str, str], None]


class Agent(BaseWorker):
    """A session's voice agent: greets through the shared TTS, hangs up when told to."""

    default_name = "agent"

    @job(name="greet")
    async def greet(self, message: BusJobRequestMessage) -> Payload:
        """Ask the shared TTS service to speak the greeting; its answer is the audio."""
        caller = (message.payload or {}).get("caller", "?")
        async with self.job(
            "tts", name="speak", payload={"text": f"hello {caller}"}, channel="services"
        ) as speech:
            pass
        return dict(speech.response or {})

    @job(name="hang_up")
    async def hang_up(self, message: BusJobRequestMessage) -> Payload:
        """End this session (after answering: ending waits for running jobs)."""
        self.spawn(self.end("the caller hung up"))
        return {}


class Line(BaseWorker):
    """A session's second worker (the phone line)."""

    default_name = "line"


def make_session(args: Payload) -> list[BaseWorker]:
    """``make_session(args)``: an agent and a line per call."""
    return [Agent(), Line()]


class Tts(BaseWorker):
    """The shared text-to-speech service: long-lived, used by every session."""

    default_name = "tts"

    async def on_activated(self, args: Payload | None) -> None:
        """Say it is up (the scene waits for this line)."""
        print("tts service ready", flush=True)

    @job(name="speak")
    async def speak(self, message: BusJobRequestMessage) -> Payload:
        """'Synthesize' the text (upper case stands in for audio)."""
        return {"audio": str((message.payload or {}).get("text", "")).upper(), "pid": os.getpid()}


async def _spawn(
    argv: list[str], env: Mapping[str, str], ready: str
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    """Start ``python -m natsbus ...``; wait for a line containing ``ready``, then pipe the rest."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "natsbus", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=dict(env),
    )  # fmt: skip
    assert proc.stdout is not None
    stdout = proc.stdout
    while True:
        line = await asyncio.wait_for(stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"natsbus {argv[0]} exited before it was ready")
        if ready in line.decode():
            break

    async def pipe() -> None:
        async for raw in stdout:
            text = raw.decode().rstrip()
            if "WARNING" not in text:  # the scene says what matters
                print(text, flush=True)

    return proc, asyncio.create_task(pipe())


async def play(url: str, env: Mapping[str, str], say: Say) -> None:
    """Play the sessions scene against the nats-server at ``url``."""
    import natsbus  # noqa: PLC0415  (the client imports the workers layer)

    common = [f"--nats-url={url}", "--log-level=INFO", "--no-metrics"]
    tts, tts_pipe = await _spawn(
        ["run", "natsbus.workers.demo_sessions:Tts", "--service", "--channel=services", *common],
        env, "tts service ready",
    )  # fmt: skip
    say("sessions", f"shared tts service up (pid {tts.pid}, natsbus run --service)")
    hosts: dict[str, tuple[asyncio.subprocess.Process, asyncio.Task[None]]] = {}
    try:
        for _ in range(2):
            serve = ["serve", "natsbus.workers.demo_sessions:make_session", "--group=calls"]
            proc, pipe = await _spawn(
                [*serve, "--slots=3", "--heartbeat=0.5", "--grace-period=10", *common],
                env, "serving group",
            )  # fmt: skip
            hosts[str(proc.pid)] = (proc, pipe)
            say("sessions", f"serving process up (pid {proc.pid}): group 'calls', 3 slots")
        async with natsbus.connect(url, name="switchboard") as client:
            await _calls(client, say)
    finally:
        codes = []
        for proc, pipe in [*hosts.values(), (tts, tts_pipe)]:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append(await asyncio.wait_for(proc.wait(), 20))
            except TimeoutError:
                proc.kill()
                codes.append(await proc.wait())
            await asyncio.gather(pipe, return_exceptions=True)
        say("sessions", f"serving and service processes exited with {codes}")


async def _calls(client: BusClient, say: Say) -> None:
    """Steps 2 to 4: four calls, one hanging up, one serving process killed."""
    from natsbus.errors import SessionFailedError  # noqa: PLC0415

    calls = await asyncio.gather(
        *(client.start_session("calls", args={"caller": f"caller {n}"}) for n in range(4))
    )
    placed = collections.Counter(call.host for call in calls)
    say("sessions", f"4 sessions started: {dict(placed)} sessions per process")
    for n, call in enumerate(calls):
        spoken = await call.request("agent", "greet", {"caller": f"caller {n}"})
        audio = (spoken or {}).get("audio")
        say(f"call {n}", f"agent said {audio!r} via tts pid {(spoken or {}).get('pid')}")
    first, rest = calls[0], calls[1:]
    await first.request("agent", "hang_up", {})
    end = await first.wait(20)
    say("call 0", f"session {end.outcome.value} ({end.reason}); only its workers stopped")
    for n, call in enumerate(rest, 1):
        spoken = await call.request("agent", "greet", {"caller": f"caller {n}"})
        say(f"call {n}", f"still talking: {(spoken or {}).get('audio')!r}")
    if len({call.host for call in rest}) == 1:
        # All on one process: it is full (3 slots), so one more call lands on the other.
        rest.append(await client.start_session("calls", args={"caller": "caller 4"}))
        calls.append(rest[-1])
        say("call 4", f"a new call goes to the process with a free slot: {rest[-1].host}")
    victim_host = collections.Counter(call.host for call in rest).most_common()[-1][0]
    victims = [call for call in rest if call.host == victim_host]
    survivors = [call for call in rest if call.host != victim_host]
    pid = int(victim_host.rsplit(":", 1)[1])  # a host is <hostname>:<pid>
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    say("sessions", f"killed serving process pid {pid} (SIGKILL) with {len(victims)} calls")
    for call in victims:
        try:
            await call.wait(30)
        except SessionFailedError as error:
            took = time.monotonic() - killed_at
            say("sessions", f"session {call.id} reported failed after {took:.1f}s: {error}")
    for call in survivors:
        spoken = await call.request("agent", "greet", {"caller": "again"})
        say("sessions", f"session {call.id} on the other process goes on: {spoken!r}")
        await call.end("call over")
        say("sessions", f"session {call.id} {(await call.wait(20)).outcome.value}")
    for call in calls:
        await call.close()
