"""The worker a serving process hosts for its group: it takes session requests and runs them.

One :class:`SessionHost` per serving process, named after the group, on the deployment's
channel. Its ``session`` job is a session request (see :mod:`natsbus.sessions.protocol`); the
bus takes at most ``slots`` of them at once (``JetStreamOptions.max_jobs_in_flight``), so a
full process takes none and the others wait in the stream for a process with a free slot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from natsbus.bus.nats.options import JetStreamOptions
from natsbus.errors import SessionStartError
from natsbus.messages import BusJobRequestMessage, Payload
from natsbus.sessions.connections import channel_bus
from natsbus.sessions.protocol import (
    DEFAULT_HEARTBEAT,
    SESSION_JOB,
    Event,
    Outcome,
    session_channel,
)
from natsbus.sessions.session import HostedSession
from natsbus.workers import BaseWorker, job
from natsbus.workers.channels import ChannelClient

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

    from natsbus.bus.base import BusObserverFactory
    from natsbus.bus.nats.shared import NatsConnections
    from natsbus.sessions.metrics import SessionMetrics

__all__ = ["SessionFactory", "SessionHost"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

SessionFactory: TypeAlias = Callable[
    [Payload], "BaseWorker | Iterable[BaseWorker] | Awaitable[BaseWorker | Iterable[BaseWorker]]"
]
"""``make_session(args) -> workers``: one worker or several, made by a function or a coroutine."""


class SessionHost(BaseWorker):
    """Takes session requests for one group and hosts each session until it ends.

    Args:
        factory: Makes a session's workers from its request's ``args``.
        group: The session group (this worker's name).
        slots: Sessions held at once, at most (the bus must take no more jobs than this).
        connections: The connection pair the sessions' buses share.
        jetstream: The deployment's JetStream context (to release a session's state).
        jetstream_options: The deployment's JetStream settings (the sessions' buses use them).
        prefix: The deployment's subject prefix.
        channels: Clients of other channels the sessions' workers may ask (the services').
        heartbeat: Seconds between a session's heartbeats to its requester.
        ready_timeout: Seconds a session's workers get to be ready.
        grace_period: Seconds a session's running jobs get to finish when it ends.
        restart: Whether the group starts a session again elsewhere when its process dies
            (reported to requesters; the bus's ``max_attempts`` makes it so).
        metrics: Where to record the group's session metrics; None records nothing.
        max_starting: Sessions started at once, at most (the others wait, heartbeats going).
        observer: Tracing for the sessions' buses (``BusTracing``); None traces nothing.
    """

    def __init__(
        self,
        factory: SessionFactory,
        *,
        group: str,
        slots: int,
        connections: NatsConnections,
        jetstream: JetStreamContext,
        jetstream_options: JetStreamOptions,
        prefix: str | None = None,
        channels: Mapping[str, ChannelClient] | None = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        ready_timeout: float = 10.0,
        grace_period: float = 30.0,
        restart: bool = False,
        metrics: SessionMetrics | None = None,
        max_starting: int = 4,
        observer: BusObserverFactory | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots!r}")
        super().__init__(group)
        self._factory = factory
        self._slots = slots
        self._connections = connections
        self._jetstream = jetstream
        self._js_options = jetstream_options
        self._prefix = prefix
        self._channels = dict(channels or {})
        self._heartbeat = heartbeat
        self._ready_timeout = ready_timeout
        self._session_grace = grace_period
        self._restart = restart
        self._metrics = metrics
        self._sessions: dict[str, HostedSession | None] = {}
        # The pod's name (its hostname) and the process: what an operator looks for.
        self._host_id = f"{socket.gethostname()}:{os.getpid()}"
        self._starting = asyncio.Semaphore(max_starting)
        self._observer = observer

    @property
    def host_id(self) -> str:
        """This process in session updates: ``<hostname>:<pid>`` (on Kubernetes, the pod)."""
        return self._host_id

    @property
    def sessions(self) -> list[str]:
        """The ids of the sessions held now (starting ones included)."""
        return list(self._sessions)

    @property
    def free_slots(self) -> int:
        """Sessions this process may still take."""
        return max(self._slots - len(self._sessions), 0)

    def taking(self) -> bool:
        """Whether the host takes new sessions (not draining)."""
        return not self.worker_runner.draining

    def _count(self) -> None:
        if self._metrics is not None:
            self._metrics.running(len(self._sessions), taking=self.taking())

    @job(name=SESSION_JOB)
    async def _session(self, message: BusJobRequestMessage) -> Payload:
        """One session request: start the session, report it, run it, answer its outcome."""
        try:
            args, session_id = _parse(message.payload)
            if session_id in self._sessions:
                raise SessionStartError(
                    f"session {session_id!r} runs here already", session_id=session_id
                )
            if len(self._sessions) >= self._slots:  # the bus's credit makes this unlikely
                raise SessionStartError(f"no free slot on {self._host_id}", session_id=session_id)
        except SessionStartError:
            self._ended(Outcome.FAILED)  # answered 'error' with the reason
            raise
        self._sessions[session_id] = None
        self._count()
        try:
            return await self._run(message, session_id, args)
        finally:
            del self._sessions[session_id]
            self._count()

    async def _run(self, message: BusJobRequestMessage, session_id: str, args: Payload) -> Payload:
        job_id = message.job_id
        await self.send_job_update(
            job_id,
            {"event": Event.TAKEN.value, "host": self._host_id, "heartbeat": self._heartbeat},
        )
        holder: list[HostedSession] = []  # set once made, for the release below
        try:
            # Sessions start a few at a time: a burst of requests must not starve the event
            # loop, or the heartbeats of the sessions already running would come late.
            session = await self._beating(job_id, self._start(session_id, args, holder))
            if self._metrics is not None and message.sent_at:
                self._metrics.started(time.time() - message.sent_at)
            await self.send_job_update(job_id, self._ready(session))
            outcome, reason = await self._hold(job_id, session)
        except asyncio.CancelledError:
            self._ended(Outcome.CANCELLED)
            raise
        except Exception:
            self._ended(Outcome.FAILED)
            raise
        finally:
            for made in holder:
                await asyncio.shield(made.release(self._jetstream))
        self._ended(outcome)
        return {"outcome": outcome.value, "reason": reason}

    async def _start(
        self, session_id: str, args: Payload, holder: list[HostedSession]
    ) -> HostedSession:
        """Make the session's workers, bus and runner, and wait until the workers are ready."""
        async with self._starting:
            workers = await _make(self._factory, args, session_id)
            bus = channel_bus(
                self._connections,
                session_channel(self.name, session_id),
                jetstream_options=self._session_options(),
                prefix=self._prefix,
                name=f"session-{session_id}",
                observer=self._observer,
            )
            session = HostedSession(
                session_id=session_id,
                bus=bus,
                workers=workers,
                grace_period=self._session_grace,
                channels=self._channels,
            )
            holder.append(session)
            self._sessions[session_id] = session
            try:
                await session.start(self._ready_timeout)
            except BaseException:
                await asyncio.shield(session.abandon())
                raise
            return session

    async def _beating(self, job_id: str, work: Awaitable[_T]) -> _T:
        """Await ``work``, sending the requester a heartbeat every ``heartbeat`` seconds."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait((task,), timeout=self._heartbeat)
                if done:
                    return task.result()
                try:
                    await self.send_job_update(job_id, {"event": Event.ALIVE.value})
                except Exception:  # a heartbeat lost is one more missed: the session goes on
                    logger.debug("job %s: heartbeat not sent", job_id, exc_info=True)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise

    async def _hold(self, job_id: str, session: HostedSession) -> tuple[Outcome, str | None]:
        """Send heartbeats until the session ends; its outcome (cancelled with this task)."""
        return await self._beating(job_id, session.finish())

    def _ready(self, session: HostedSession) -> Payload:
        return {
            "event": Event.READY.value,
            "host": self._host_id,
            "channel": session.channel,
            "workers": session.worker_names,
            "heartbeat": self._heartbeat,
            "restart": self._restart,
        }

    def _ended(self, outcome: Outcome) -> None:
        if self._metrics is not None:
            self._metrics.ended(outcome)

    def _session_options(self) -> JetStreamOptions:
        # The host deletes a session's consumers at its end; the threshold is the backstop
        # for a process that died first.
        import dataclasses  # noqa: PLC0415

        return dataclasses.replace(
            self._js_options, job_consumer_inactive_threshold=60.0, max_jobs_in_flight=64
        )


def _parse(payload: Payload | None) -> tuple[Payload, str]:
    """The ``args`` and ``session_id`` of a request, or a clear error."""
    if not isinstance(payload, dict):
        raise SessionStartError(f"a session request is a dict, not {payload!r}", session_id="")
    session_id = payload.get("session_id")
    args = payload.get("args") or {}
    if not isinstance(session_id, str) or not session_id:
        raise SessionStartError(f"bad session_id {session_id!r}", session_id="")
    if not isinstance(args, dict):
        raise SessionStartError(f"session args must be a dict, not {args!r}", session_id=session_id)
    return args, session_id


async def _make(factory: SessionFactory, args: Payload, session_id: str) -> list[BaseWorker]:
    """Call the factory; its workers as a list, or SessionStartError saying what went wrong."""
    try:
        made: Any = factory(args)
        if inspect.isawaitable(made):
            made = await made
    except Exception as error:
        raise SessionStartError(
            f"the session factory raised {type(error).__name__}: {error}", session_id=session_id
        ) from error
    workers = [made] if isinstance(made, BaseWorker) else list(made or ())
    if not workers or not all(isinstance(w, BaseWorker) for w in workers):
        raise SessionStartError(
            f"the session factory made {made!r}, not workers", session_id=session_id
        )
    names = [w.name for w in workers]
    if len(set(names)) != len(names):
        raise SessionStartError(f"worker names repeat: {names}", session_id=session_id)
    return workers
