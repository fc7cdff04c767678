"""A session factory, its workers and a service worker, for the sessions tests."""

from __future__ import annotations

import os

from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.workers import BaseWorker, job


class Talker(BaseWorker):
    """A session's worker: echoes, asks the TTS service, ends or cancels its session."""

    @job(name="echo")
    async def echo(self, message: BusJobRequestMessage) -> Payload:
        return {"echo": message.payload, "pid": os.getpid(), "channel": self.bus.channel}

    @job(name="speak")
    async def speak(self, message: BusJobRequestMessage) -> Payload:
        text = (message.payload or {}).get("text", "")
        async with self.job("tts", name="say", payload={"text": text}, channel="services") as j:
            pass
        return dict(j.response or {})

    @job(name="end")
    async def end_session(self, message: BusJobRequestMessage) -> Payload:
        self.spawn(self.end("done"))  # after the answer: ending waits for running jobs
        return {}

    @job(name="end_services")
    async def end_services(self, message: BusJobRequestMessage) -> Payload:
        """Try to end the service workers: a session's end() on the services channel."""
        client = self.worker_runner.channel("services")
        from natsbus.messages import BusCancelMessage, BusEndMessage

        await client.publish(BusEndMessage("from a session", source=client.name))  # type: ignore[attr-defined]
        await client.publish(BusCancelMessage("from a session", source=client.name))  # type: ignore[attr-defined]
        return {}


class Listener(BaseWorker):
    """A second worker of each session (so that a session is more than one worker)."""

    @job(name="ping")
    async def ping(self, message: BusJobRequestMessage) -> Payload:
        return {"pong": True}


def make_session(args: Payload) -> list[BaseWorker]:
    """``make_session(args)``: a talker and a listener; ``{"fail": true}`` raises."""
    if args.get("fail"):
        raise ValueError("asked to fail")
    if args.get("not_workers"):
        return [object()]  # type: ignore[list-item]
    return [Talker(name="talker"), Listener(name="listener")]


class Tts(BaseWorker):
    """A service worker shared by the sessions."""

    def __init__(self, name: str = "tts") -> None:
        super().__init__(name)

    async def on_activated(self, args: Payload | None) -> None:
        print(f"ACTIVE {self.name}", flush=True)

    @job(name="say")
    async def say(self, message: BusJobRequestMessage) -> Payload:
        return {"audio": str((message.payload or {}).get("text", "")).upper(), "pid": os.getpid()}
