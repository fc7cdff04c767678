"""A client of a bus: ask workers for jobs, send and watch messages, without writing a worker.

For a script or a web handler, the way FastStream has ``broker.request()`` and Celery
``.delay()``::

    async with natsbus.connect("nats://nats:4222", channel="shop") as client:
        receipt = await client.request("payments", "charge", {"amount": 12})
        async with client.job("writer", name="draft", payload={"topic": "tea"}) as job:
            async for event in job:
                print(event.kind, event.data)

Underneath, a client hosts one worker of its own (named ``client-<random>`` unless given a
name) on a runner of its own: the jobs it asks for come back to it, and it learns from the
registry which workers are ready. It runs no job (``runs_jobs = False``: no job consumer, and
its NATS user needs only the ``requester`` permissions) and ends nobody: closing it ends its
own worker only, with messages that never leave the process. Nor does an end or cancel sent
on its channel by anyone else stop it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import weakref
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from natsbus.bus import WorkerBus
from natsbus.messages import BusMessage, Payload
from natsbus.workers import (
    BaseWorker,
    JobGroupHandle,
    JobGroupParams,
    JobHandle,
    JobParams,
    WorkerRunner,
)
from natsbus.workers.service import ServiceRunner

if TYPE_CHECKING:
    from natsbus.bus.nats import JetStreamOptions, NatsConnectOptions
    from natsbus.bus.nats.shared import NatsConnections
    from natsbus.sessions.handle import SessionHandle

__all__ = ["BusClient", "connect"]

DEFAULT_WATCH_SIZE = 1000
"""Messages a watcher holds before it drops the oldest (every buffer has a size)."""


class _ClientWorker(BaseWorker):
    """The client's own worker: asks for jobs, runs none, hands what reaches it to watchers."""

    runs_jobs = False

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.watchers: set[asyncio.Queue[BusMessage]] = set()

    async def on_bus_message(self, message: BusMessage) -> None:
        await super().on_bus_message(message)
        if message.target not in (None, self.name):
            return
        for queue in self.watchers:
            if queue.full():
                queue.get_nowait()  # the oldest goes: a slow watcher never blocks the bus
            queue.put_nowait(message)


class BusClient:
    """Asks workers on a bus for jobs, and sends and watches messages.

    Use it as an async context manager (or call :meth:`start` and :meth:`close`).

    Args:
        bus: The bus to talk on; the client starts and stops it unless it was started
            already.
        name: The client's name on the bus (its messages' ``source``); ``client-<random>``
            by default.
        ready_timeout: Seconds a job waits for a worker the registry does not know before
            :class:`~natsbus.workers.WorkerNotFoundError`; None waits for ever. A job's own
            ``JobParams.ready_timeout`` overrides it.
        sessions: The connections the client's sessions' channels are talked on
            (:meth:`start_session`); :func:`connect` gives the pair its bus uses. The client
            closes it, after its bus.
    """

    def __init__(
        self,
        bus: WorkerBus,
        *,
        name: str | None = None,
        ready_timeout: float | None = 30.0,
        sessions: NatsConnections | None = None,
    ) -> None:
        self._sessions = sessions
        self._handles: weakref.WeakSet[SessionHandle] = weakref.WeakSet()
        self._worker = _ClientWorker(name or f"client-{secrets.token_hex(4)}")
        # Nobody else's end or cancel stops a client: it is not part of the channel's session
        # (a session's worker may send one on the services channel through it, say).
        self._runner: WorkerRunner = ServiceRunner(
            bus=bus, handle_signals=False, grace_period=5.0, log_refused=False
        )
        self._ready_timeout = ready_timeout
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The client's name on the bus."""
        return self._worker.name

    @property
    def bus(self) -> WorkerBus:
        """The bus the client talks on."""
        return self._runner.bus

    async def start(self) -> None:
        """Start the bus (if needed) and the client's worker; return once it is ready."""
        if self._task is not None:
            return
        try:
            await self._start()
        except BaseException:
            if self._sessions is not None:  # nothing else will close it
                await self._sessions.close()
            raise

    async def _start(self) -> None:
        await self._runner.add_workers(self._worker)
        self._task = asyncio.create_task(self._runner.run(), name=f"natsbus-client[{self.name}]")
        ready = asyncio.ensure_future(self._runner.registry.wait_ready([self.name]))
        await asyncio.wait((ready, self._task), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self._task  # the runner failed (the bus did not start): raise its error
            raise RuntimeError("the client's runner ended before it was ready")

    async def close(self) -> None:
        """End the client's own worker (nobody else) and stop the bus it started.

        The clients of its sessions' channels close too (the sessions go on, unless the client
        was still waiting on them: those are cancelled after a 5 s grace).
        """
        task, self._task = self._task, None
        if task is None:
            return
        for handle in list(self._handles):  # their buses ride on the pair closed below
            await handle.close()
        if not task.done():
            await self._runner.end("client closed")
        await task
        if self._sessions is not None:
            await self._sessions.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- jobs ---------------------------------------------------------------------------------

    async def request(
        self,
        worker: str,
        name: str | None = None,
        payload: Payload | None = None,
        *,
        timeout: float | None = None,
        params: JobParams | None = None,
    ) -> Payload | None:
        """Run a job on ``worker`` and return its response.

        Args:
            worker: The worker to ask.
            name: The job name (its ``@job(name=...)`` handler).
            payload: The job's arguments.
            timeout: Seconds before the job is cancelled and
                :class:`~natsbus.workers.JobTimeoutError` raised.
            params: Further settings; the arguments above override it.

        Raises:
            JobError: The worker answered ``error``, ``failed`` or ``cancelled``.
            JobTimeoutError: ``timeout`` passed.
            WorkerNotFoundError: No worker of that name became ready in time.
        """
        async with self.job(
            worker, name=name, payload=payload, timeout=timeout, params=params
        ) as j:
            pass
        return j.response

    def job(
        self,
        worker: str,
        *,
        name: str | None = None,
        payload: Payload | None = None,
        timeout: float | None = None,
        params: JobParams | None = None,
    ) -> JobHandle:
        """A job on ``worker`` as an ``async with`` block, for its updates and stream events.

        See :meth:`BaseWorker.job <natsbus.workers.BaseWorker.job>`.
        """
        return self._worker.job(
            worker, params=self._params(params), name=name, payload=payload, timeout=timeout
        )

    def job_group(
        self,
        *workers: str,
        name: str | None = None,
        payload: Payload | None = None,
        timeout: float | None = None,
        cancel_on_error: bool | None = None,
        params: JobGroupParams | None = None,
    ) -> JobGroupHandle:
        """One job on several workers as an ``async with`` block (they share its id)."""
        merged = params or JobGroupParams(ready_timeout=self._ready_timeout)
        return self._worker.job_group(
            *workers,
            params=merged,
            name=name,
            payload=payload,
            timeout=timeout,
            cancel_on_error=cancel_on_error,
        )

    async def cancel(self, job_id: str, reason: str | None = None) -> None:
        """Cancel a job (or group) this client requested; whoever waits on it gets JobError."""
        await self._worker.cancel_job_group(job_id, reason=reason)

    # --- sessions -----------------------------------------------------------------------------

    async def start_session(
        self,
        group: str,
        args: Payload | None = None,
        *,
        timeout: float = 30.0,
        session_id: str | None = None,
    ) -> SessionHandle:
        """Ask a group of serving processes (``natsbus serve``) for a session.

        Returns once a process took it and its workers are all ready. The handle has its
        :attr:`~natsbus.sessions.SessionHandle.channel` and id, sends messages and jobs into
        it, watches it, ends or cancels it. See ``docs/sessions.md``.

        Args:
            group: The session group (``natsbus serve --group``).
            args: What the group's ``make_session(args)`` gets.
            timeout: Seconds to wait for a process with a free slot and its workers ready.
            session_id: The session's id (default: random).

        Raises:
            SessionStartTimeoutError: Not started within ``timeout`` (the request is
                cancelled).
            SessionStartError: The process refused it (bad args, a factory that raised).
            SessionFailedError: Its process was lost while starting it.
            RuntimeError: The client was not made by :func:`connect` (no NATS connections
                for session channels).
        """
        from natsbus.sessions.handle import start_session  # noqa: PLC0415  (imports workers)

        if self._sessions is None:
            raise RuntimeError("start_session needs a client made by natsbus.connect()")
        handle = await start_session(
            self, self._sessions, group, args, session_id=session_id, timeout=timeout
        )
        self._handles.add(handle)
        return handle

    # --- messages -----------------------------------------------------------------------------

    async def publish(self, message: BusMessage) -> None:
        """Send a message on the bus, from this client.

        Its ``source`` must be the client's name (the bus refuses, and a NATS server with
        generated permissions drops, what claims another).

        Raises:
            ValueError: ``message.source`` is not the client's name.
        """
        if message.source != self.name:
            raise ValueError(
                f"a client sends as itself: source must be {self.name!r}, not {message.source!r}"
            )
        await self._worker.send_bus_message(message)

    async def watch(self, size: int = DEFAULT_WATCH_SIZE) -> AsyncIterator[BusMessage]:
        """Yield every message that reaches the client: broadcasts and those targeted at it.

        A watcher holds at most ``size`` messages; past that the oldest is dropped. Stop
        iterating (``break``) to stop watching.
        """
        queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize=size)
        self._worker.watchers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._worker.watchers.discard(queue)

    def _params(self, params: JobParams | None) -> JobParams:
        return params if params is not None else JobParams(ready_timeout=self._ready_timeout)


def connect(
    servers: str | Sequence[str] = "nats://127.0.0.1:4222",
    *,
    channel: str = "default",
    name: str | None = None,
    connect_options: NatsConnectOptions | None = None,
    jetstream_options: JetStreamOptions | None = None,
    ready_timeout: float | None = 30.0,
    **bus_options: Any,
) -> BusClient:
    """A :class:`BusClient` on a new :class:`~natsbus.bus.nats.NatsBus`.

    Use it with ``async with``: the bus connects on enter and closes on exit.

    Args:
        servers: NATS server URL or URLs.
        channel: The channel to talk in.
        name: The client's name (default ``client-<random>``).
        connect_options: Authentication, TLS and reconnect settings.
        jetstream_options: JetStream settings (the deployment's ``stream``, say).
        ready_timeout: See :class:`BusClient`.
        **bus_options: Further ``NatsBus`` arguments (``prefix``, ``metrics``...).
    """
    # nats-py only when connecting:
    from natsbus.bus.nats import NatsBus, NatsConnections, NatsConnectOptions  # noqa: PLC0415
    from natsbus.bus.nats.layout import DEFAULT_PREFIX, SubjectLayout  # noqa: PLC0415

    options = connect_options or NatsConnectOptions()
    if servers:
        options = dataclasses.replace(
            options, servers=(servers,) if isinstance(servers, str) else tuple(servers)
        )
    prefix = bus_options.get("prefix", DEFAULT_PREFIX)
    # One connection pair for the client's bus and those of its sessions' channels; their
    # pulls come to the inboxes of the client's own channel (what its permissions allow).
    inbox = SubjectLayout(channel, prefix).inbox_prefix
    connections = NatsConnections(
        connect_options=dataclasses.replace(options, inbox_prefix=inbox),
        prefix=prefix,
        name=f"natsbus-client-{name or channel}",
    )
    bus = NatsBus(
        connections=connections,
        channel=channel,
        jetstream_options=jetstream_options,
        name=name,
        **bus_options,
    )
    return BusClient(bus, name=name, ready_timeout=ready_timeout, sessions=connections)
