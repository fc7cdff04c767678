"""The requester's side of a session: :meth:`natsbus.BusClient.start_session` and its handle.

The session request is a job (see :mod:`natsbus.sessions.protocol`); the handle reads its
updates in a task of its own. It knows a session failed when its serving process stops
sending heartbeats (``MISSED_HEARTBEATS`` of them: a few seconds), and when its job is
answered ``error``; it knows it ended from the job's response.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from natsbus.errors import SessionFailedError, SessionStartError, SessionStartTimeoutError
from natsbus.messages import BusCancelMessage, BusEndMessage, BusMessage, JobStatus, Payload
from natsbus.sessions.protocol import (
    MISSED_HEARTBEATS,
    RESTART_WAIT,
    SESSION_JOB,
    Event,
    Outcome,
)
from natsbus.workers import JobError, JobHandle, JobParams, WorkerNotFoundError
from natsbus.workers.types import JobEvent

if TYPE_CHECKING:
    from natsbus.bus.nats.shared import NatsConnections
    from natsbus.client import BusClient

__all__ = ["SessionEnd", "SessionHandle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionEnd:
    """How a session ended.

    Attributes:
        outcome: ``ended`` or ``cancelled``.
        reason: The reason its ``end()``/``cancel()`` gave, if any.
    """

    outcome: Outcome
    reason: str | None


class SessionHandle:
    """A running session, from ``await client.start_session(group, args=...)``.

    Its :attr:`channel` is the session's own; :meth:`job`, :meth:`publish` and :meth:`watch`
    talk in it (through a client of that channel, opened on first use and closed with the
    handle); :meth:`end` ends it gracefully, :meth:`cancel` at once; :meth:`wait` returns how
    it ended or raises :class:`~natsbus.errors.SessionFailedError`. As ``async with``, leaving
    the block ends the session (if it still runs) and waits for its end.
    """

    def __init__(
        self, client: BusClient, connections: NatsConnections, group: str, session_id: str
    ) -> None:
        self._client = client
        self._connections = connections
        self.group = group
        self.id = session_id
        self.channel = ""
        self.host = ""
        self.workers: list[str] = []
        self.restart = False
        self.restarts = 0
        """How many times the session was started again after its process was lost."""
        self._restarting = False
        self._job: JobHandle | None = None
        self._reader: asyncio.Task[SessionEnd] | None = None
        self._ready = asyncio.Event()
        self._inner: BusClient | None = None
        self._inner_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<SessionHandle {self.group}/{self.id} on {self.host or '?'}>"

    @property
    def done(self) -> bool:
        """Whether the session is over (ended, cancelled or failed)."""
        return self._reader is not None and self._reader.done()

    async def _start(self, args: Payload, timeout: float) -> None:
        job = self._client.job(
            self.group,
            name=SESSION_JOB,
            payload={"session_id": self.id, "args": args},
            params=JobParams(ready_timeout=timeout),
        )
        started = time.monotonic()
        try:
            await job.__aenter__()
        except WorkerNotFoundError as error:
            raise SessionStartTimeoutError(
                f"no serving process of group {self.group!r} within {timeout:g} s",
                session_id=self.id,
            ) from error
        self._job = job
        self._reader = asyncio.create_task(self._read(job), name=f"natsbus-session[{self.id}]")
        left = max(timeout - (time.monotonic() - started), 0.0)
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait((ready, self._reader), timeout=left, return_when="FIRST_COMPLETED")
        finally:
            ready.cancel()
        if self._ready.is_set():
            return
        if self._reader.done():
            self._reader.result()  # raises why it did not start
            raise SessionStartError("the session ended before it was ready", session_id=self.id)
        await self.cancel("not ready in time")
        raise SessionStartTimeoutError(
            f"session of group {self.group!r} not ready within {timeout:g} s", session_id=self.id
        )

    async def _read(self, job: JobHandle) -> SessionEnd:
        """Follow the job's updates (readiness, heartbeats) until its answer."""
        silence: float | None = None  # no bound until a process took it
        while True:
            try:
                event: JobEvent = await asyncio.wait_for(anext(job), silence)
            except StopAsyncIteration:
                break
            except TimeoutError:
                if self.restart and not self._restarting:
                    # Its request is redelivered (after ack_wait) to another process, which
                    # starts it again on the same channel: wait that long for it.
                    logger.warning(
                        "session %s: process %s lost; waiting for a restart", self.id, self.host
                    )
                    self._restarting = True
                    self._ready.clear()
                    silence = RESTART_WAIT
                    continue
                await self._lost(job)
                raise SessionFailedError(
                    f"session {self.id!r}: its serving process {self.host!r} went silent"
                    f" for {silence:g} s",
                    session_id=self.id,
                ) from None
            data = event.data if isinstance(event.data, dict) else {}
            kind = data.get("event")
            if kind == Event.TAKEN:
                self.host = str(data.get("host", ""))
                silence = _silence(data.get("heartbeat"))
                if self._restarting:
                    self._restarting = False
                    self.restarts += 1
            elif kind == Event.READY:
                self.host = str(data.get("host", ""))
                self.channel = str(data.get("channel", ""))
                self.workers = [str(name) for name in data.get("workers") or ()]
                self.restart = bool(data.get("restart"))
                silence = _silence(data.get("heartbeat"))
                self._ready.set()
        try:
            await job.wait()
        except JobError as error:
            if error.status is JobStatus.CANCELLED:
                return SessionEnd(Outcome.CANCELLED, str(error))
            if self._ready.is_set():
                raise SessionFailedError(
                    f"session {self.id!r}: {error}", session_id=self.id
                ) from error
            raise SessionStartError(
                f"session {self.id!r} did not start: {error}", session_id=self.id
            ) from error
        response = job.response or {}
        outcome = Outcome(response.get("outcome", Outcome.ENDED.value))
        reason = response.get("reason")
        return SessionEnd(outcome, None if reason is None else str(reason))

    async def _lost(self, job: JobHandle) -> None:
        """Stop tracking the job of a lost session; cancel it in case it is ever redelivered."""
        try:
            # Not waiting for answers: the process that would give them is gone.
            await self._client.cancel(job.job_id, "its serving process was lost")
            await job.wait()
        except JobError:
            pass  # the cancel just made it fail: that is the point
        except Exception:
            logger.debug("session %s: cancel after loss failed", self.id, exc_info=True)

    async def wait(self, timeout: float | None = None) -> SessionEnd:
        """Wait for the session's end.

        Raises:
            SessionFailedError: Its serving process died or went silent, or it failed.
            TimeoutError: ``timeout`` passed (the session goes on).
        """
        assert self._reader is not None
        return await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def end(self, reason: str | None = None) -> None:
        """End the session gracefully: a ``BusEndMessage`` on its channel."""
        client = await self.session_client()
        await client.publish(BusEndMessage(reason, source=client.name))

    async def cancel(self, reason: str | None = None) -> None:
        """Cancel the session at once (its request too, if no process started it yet)."""
        if self._job is not None and not self._job.done:
            await self._job.cancel(reason)
        elif self._inner is not None and self.channel:
            await self._inner.publish(BusCancelMessage(reason, source=self._inner.name))

    async def session_client(self) -> BusClient:
        """The client of the session's channel (opened on the first call)."""
        from natsbus.client import BusClient  # noqa: PLC0415  (client imports this module)
        from natsbus.sessions.connections import channel_bus  # noqa: PLC0415

        if not self.channel:
            raise RuntimeError(f"{self!r} is not ready: it has no channel yet")
        async with self._inner_lock:
            if self._inner is None:
                bus = channel_bus(
                    self._connections, self.channel, name=f"{self._client.name}@{self.id}"
                )
                inner = BusClient(bus, name=self._client.name)
                await inner.start()
                self._inner = inner
            return self._inner

    def job(self, worker: str, **kwargs: object) -> _LazyJob:
        """A job on one of the session's workers, as ``async with`` (see ``BusClient.job``)."""
        return _LazyJob(self, worker, kwargs)

    async def request(
        self, worker: str, name: str | None = None, payload: Payload | None = None, **kwargs: object
    ) -> Payload | None:
        """Run a job on one of the session's workers and return its response."""
        client = await self.session_client()
        return await client.request(worker, name, payload, **kwargs)  # type: ignore[arg-type]

    async def publish(self, message: BusMessage) -> None:
        """Send a message into the session (its ``source`` must be the client's name)."""
        await (await self.session_client()).publish(message)

    async def watch(self, size: int = 1000) -> AsyncIterator[BusMessage]:
        """Yield the session's broadcasts and what is sent to the client in it."""
        client = await self.session_client()
        async for message in client.watch(size):
            yield message

    async def close(self) -> None:
        """Close the handle's client of the session's channel (the session goes on)."""
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.done:
                if exc_type is None:
                    await self.end("requester done")
                else:
                    await self.cancel("requester failed")
                try:
                    await self.wait()
                except Exception:
                    if exc_type is None:
                        raise
        finally:
            await self.close()


class _LazyJob:
    """``async with session.job(...)``: opens the session's client, then the job."""

    def __init__(self, session: SessionHandle, worker: str, kwargs: dict[str, object]) -> None:
        self._session = session
        self._worker = worker
        self._kwargs = kwargs
        self._job: JobHandle | None = None

    async def __aenter__(self) -> JobHandle:
        client = await self._session.session_client()
        self._job = client.job(self._worker, **self._kwargs)  # type: ignore[arg-type]
        return await self._job.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._job is not None
        await self._job.__aexit__(exc_type, exc, tb)


def _silence(heartbeat: object) -> float:
    """Seconds without an update after which the session's process counts as lost."""
    beat = float(heartbeat) if isinstance(heartbeat, int | float) and heartbeat > 0 else 1.0
    return beat * MISSED_HEARTBEATS


def new_session_id() -> str:
    """A fresh random session id."""
    return secrets.token_hex(8)


async def start_session(
    client: BusClient,
    connections: NatsConnections,
    group: str,
    args: Payload | None,
    *,
    session_id: str | None,
    timeout: float,
) -> SessionHandle:
    """Ask the group for a session and wait until its workers are ready (see BusClient)."""
    if not group:
        raise ValueError("a session group is a non-empty name")
    if args is not None and not isinstance(args, dict):
        raise TypeError(f"session args must be a dict, not {args!r}")
    handle = SessionHandle(client, connections, group, session_id or new_session_id())
    await handle._start(args or {}, timeout)
    return handle
