"""One hosted session: its channel, bus and runner, its workers, and what it leaves behind.

A :class:`HostedSession` is owned by the :class:`~natsbus.sessions.host.SessionHost` that took
its request; it owns the session's runner (and through it the bus and the workers). When the
session ends, :meth:`HostedSession.release` deletes what the server still holds for its
channel: the job request consumers its bus made (durable, and shared in a long-lived channel,
but nobody else's in a session's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from natsbus.errors import SessionStartError
from natsbus.sessions.protocol import Outcome
from natsbus.workers import BaseWorker, WorkerRunner
from natsbus.workers.channels import ChannelClient

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

    from natsbus.bus.nats.bus import NatsBus

__all__ = ["HostedSession", "SessionRunner"]

logger = logging.getLogger(__name__)


class SessionRunner(WorkerRunner):
    """The runner of one session: it remembers why it ended (the first reason given)."""

    reason: str | None = None

    async def end(self, reason: str | None = None) -> None:
        """End the session's workers gracefully (see :meth:`WorkerRunner.end`)."""
        if not self.draining:
            self.reason = reason
        await super().end(reason)

    async def cancel(self, reason: str | None = None) -> None:
        """Cancel the session's workers (see :meth:`WorkerRunner.cancel`)."""
        if not self.cancelled:
            self.reason = reason if not self.draining else (self.reason or reason)
        await super().cancel(reason)


def _names(workers: Iterable[BaseWorker]) -> set[str]:
    """The names of these workers and of their children, recursively."""
    found: set[str] = set()
    for worker in workers:
        found.add(worker.name)
        found |= _names(worker.children)
    return found


class HostedSession:
    """One session: its workers on a bus and runner of their own, until they have all ended.

    Args:
        session_id: The session's id.
        bus: The session's bus (not started; the runner starts and stops it).
        workers: What the factory made.
        grace_period: Seconds running jobs get to finish when the session ends.
        channels: Other channels its workers may ask jobs on (the services').
    """

    def __init__(
        self,
        *,
        session_id: str,
        bus: NatsBus,
        workers: list[BaseWorker],
        grace_period: float,
        channels: Mapping[str, ChannelClient],
    ) -> None:
        self.session_id = session_id
        self._bus = bus
        self._workers = workers
        self._runner = SessionRunner(
            bus=bus, name=f"session-{session_id}", handle_signals=False, grace_period=grace_period
        )
        for channel, client in channels.items():
            self._runner.add_channel(channel, client)
        self._task: asyncio.Task[None] | None = None

    @property
    def channel(self) -> str:
        """The session's channel."""
        return self._bus.channel

    @property
    def worker_names(self) -> list[str]:
        """The names of the session's root workers."""
        return [worker.name for worker in self._workers]

    @property
    def task(self) -> asyncio.Task[None]:
        """The task running the session (done once every worker ended)."""
        assert self._task is not None, "start() first"
        return self._task

    async def start(self, ready_timeout: float) -> None:
        """Start the runner and wait until every root worker is ready.

        Raises:
            SessionStartError: The runner failed, or the workers were not ready in time (the
                session is then cancelled: call :meth:`finish` still).
        """
        await self._runner.add_workers(*self._workers)
        self._task = asyncio.create_task(
            self._runner.run(), name=f"natsbus-session[{self.session_id}]"
        )
        ready = asyncio.ensure_future(self._runner.registry.wait_ready(self.worker_names))
        try:
            done, _ = await asyncio.wait(
                (ready, self._task), timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready in done and not ready.cancelled():
            return
        if self._task.done():
            error = self._task.exception()
            raise SessionStartError(
                f"the session's runner ended before its workers were ready: {error!r}",
                session_id=self.session_id,
            )
        raise SessionStartError(
            f"workers {self.worker_names} were not ready within {ready_timeout:g} s",
            session_id=self.session_id,
        )

    async def cancel(self, reason: str) -> None:
        """Cancel the session's workers (it still ends through :meth:`finish`)."""
        await self._runner.cancel(reason)

    async def finish(self) -> tuple[Outcome, str | None]:
        """Wait for the session's end (cancelling it if this is cancelled); its outcome."""
        if self._task is None:
            return Outcome.FAILED, None
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_now("the serving process cancelled the session"))
            raise
        except Exception:
            logger.exception("session %s: its runner failed", self.session_id)
        outcome = Outcome.CANCELLED if self._runner.cancelled else Outcome.ENDED
        return outcome, self._runner.reason

    async def _stop_now(self, reason: str) -> None:
        await self._runner.cancel(reason)
        try:
            await self.task
        except Exception:
            logger.exception("session %s: its runner failed", self.session_id)

    async def abandon(self) -> None:
        """Stop a session that did not start (cancel its workers, wait for its runner)."""
        if self._task is not None:
            await self._stop_now("the session did not start")

    async def release(self, jetstream: JetStreamContext) -> None:
        """Delete the consumers the server still holds for the session (after its bus stopped).

        Its job request consumers, one per worker that took jobs: durable, and nobody's once
        the session is over. Instance consumers and core subscriptions went with the bus.
        Messages stored under its subjects are left to the streams' ``max_age`` (purging
        them would need a permission to purge every channel's). A failure is logged: the
        consumers' inactive threshold removes what could not be deleted now.
        """
        layout = self._bus.layout
        for worker in sorted(_names(self._workers)):
            try:
                await jetstream.delete_consumer(layout.request_stream, layout.job_consumer(worker))
            except Exception as error:  # most workers made none: not found
                logger.debug("session %s: consumer of %r: %s", self.session_id, worker, error)
