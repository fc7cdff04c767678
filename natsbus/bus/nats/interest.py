"""What a NatsBus listens to, kept in step with its subscribers.

The core subjects of the targets its subscribers answer to (or everything, for an observer) and
of the fast copies of its replies, and, through the :class:`~natsbus.bus.nats.jobs.JobChannel`,
the controls of the workers it hosts and the job requests of those ready to take them. One lock
serialises every change, so that a subscriber joining during a drain, say, never adds a job
consumer after the pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from nats.aio.client import Client
from nats.aio.subscription import Subscription

from natsbus.bus.limits import QueueLimits
from natsbus.bus.nats.direct import DirectHandler, subscribe_direct, unsubscribe_direct
from natsbus.bus.nats.jobs import JobChannel
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.subscriber import BusSubscriber
from natsbus.messages import Lane
from natsbus.tasks import cancel_and_wait

__all__ = ["Interest"]

logger = logging.getLogger("natsbus.bus.nats")

_LANES: Final[tuple[Lane, Lane]] = (Lane.SYSTEM, Lane.DATA)
_RETRY_INTERVAL: Final = 1.0
"""Seconds between two attempts to update the subscriptions when the server refused."""
_NARROW_DELAY: Final = 1.0
"""Seconds a consumer keeps reading for workers that left before it is told to read less:
the workers of a bus that is stopping leave one by one, and the consumers are deleted a
moment later anyway (narrowing them first cost the server an update each, which made
stopping a thousand sessions at once take tens of seconds)."""


class Interest:
    """The subscriptions and consumers of one bus, matched to what its subscribers want.

    Args:
        layout: The bus's subjects.
        instance: The bus's instance id (the fast copies of its replies are addressed to it).
        limits: The pending limits of the core subscriptions.
        jobs: The bus's job channel (its consumers follow the hosted workers).
        subscribers: Returns the bus's current subscribers.
        on_message: Called with the subject and payload of every core message (from the
            connection's reader: see :mod:`natsbus.bus.nats.direct`).
        name: The bus's name, for logs and task names.
    """

    def __init__(
        self,
        *,
        layout: SubjectLayout,
        instance: str,
        limits: QueueLimits,
        jobs: JobChannel,
        subscribers: Callable[[], Iterable[BusSubscriber]],
        on_message: DirectHandler,
        name: str,
    ) -> None:
        self._layout = layout
        self._instance = instance
        self._limits = limits
        self._jobs = jobs
        self._subscribers = subscribers
        self._on_message = on_message
        self._name = name
        self._clients: Mapping[Lane, Client] = {}
        self._subscriptions: dict[str, tuple[Client, Subscription]] = {}
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None
        self._narrowing: asyncio.Task[None] | None = None
        self._open = False

    async def open(self, clients: Mapping[Lane, Client]) -> None:
        """Subscribe for the first time.

        Raises:
            nats.errors.Error: The server refused or did not answer.
        """
        self._clients = clients
        self._open = True
        await self.sync()

    async def sync(self, *, narrow: bool = True) -> None:
        """Listen for exactly what the subscribers want now.

        With ``narrow=False``, consumers that would only read less are narrowed a moment
        later (:data:`_NARROW_DELAY`), unless the bus closes first.

        Raises:
            nats.errors.Error: The server refused or did not answer; what was done stays
                done, and the next call completes the rest.
        """
        async with self._lock:
            targets = self._wanted_targets()
            wanted = self._wanted_subjects(targets)
            for subject in set(self._subscriptions) - set(wanted):
                await unsubscribe_direct(*self._subscriptions.pop(subject))
            for subject, lane in wanted.items():
                if subject not in self._subscriptions:
                    client = self._clients[lane]
                    self._subscriptions[subject] = (
                        client,
                        await subscribe_direct(client, subject, self._on_message),
                    )
            wider = await self._jobs.sync(*self.job_workers(), targets, narrow=narrow)
            # Both at once: a round trip instead of two (a session's start waits for them).
            await asyncio.gather(*(client.flush() for client in self._clients.values()))
        if wider and (self._narrowing is None or self._narrowing.done()):
            self._narrowing = asyncio.create_task(
                self._narrow_later(), name=f"natsbus-narrow[{self._name}]"
            )

    async def refresh(self) -> None:
        """Like :meth:`sync`, but never raises nor waits for a server that is away.

        A refusal is logged and retried every second; while a connection is down the update
        waits for it to come back.
        """
        if not self._open:
            return
        if not all(client.is_connected for client in self._clients.values()):
            # The server is away: asking now would only wait for timeouts (a worker leaving
            # during an outage, or a process stopping). Retry once it is back.
            self._retry_soon()
            return
        try:
            await self.sync(narrow=False)
        except Exception as error:
            logger.warning(
                "%s could not update its subscriptions (%s); retrying", self._name, error
            )
            self._retry_soon()

    async def _narrow_later(self) -> None:
        """Have every consumer read exactly what is wanted, in a moment (never raises)."""
        await asyncio.sleep(_NARROW_DELAY)
        if not self._open:
            return
        try:
            await self.sync()
        except Exception:
            logger.debug("%s: consumers not narrowed yet", self._name, exc_info=True)
            self._retry_soon()

    def _retry_soon(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(
                self._retry_sync(), name=f"natsbus-interest[{self._name}]"
            )

    async def pause_jobs(self) -> None:
        """Take no new job request (a drain), between two changes, never during one."""
        async with self._lock:
            await self._jobs.pause()

    def missing(self) -> set[str]:
        """The hosted workers whose consumers are not in place (for readiness)."""
        return self._jobs.missing(*self.job_workers())

    def job_workers(self) -> tuple[set[str], set[str]]:
        """The workers whose jobs the subscribers run, and those taking requests now."""
        workers: set[str] = set()
        taking: set[str] = set()
        for subscriber in self._subscribers():
            targets = subscriber.bus_job_targets
            workers.update(targets)
            if subscriber.bus_taking_jobs:
                taking.update(targets)
        return workers, taking

    async def close(self) -> None:
        """Stop retrying and drop the core subscriptions (the job channel closes itself)."""
        self._open = False
        await cancel_and_wait(tuple(t for t in (self._retry, self._narrowing) if t is not None))
        for client, subscription in self._subscriptions.values():
            await unsubscribe_direct(client, subscription)
        self._subscriptions.clear()

    def _wanted_targets(self) -> set[str] | None:
        """The targets the subscribers answer to; None if one of them observes every one."""
        targets: set[str] = set()
        for subscriber in self._subscribers():
            declared = subscriber.bus_targets
            if declared is None:
                return None
            targets.update(declared)
        return targets

    def _wanted_subjects(self, targets: set[str] | None) -> dict[str, Lane]:
        """The core subjects of ``targets`` (None: every subject) and of the reply copies."""
        layout = self._layout
        wanted = {layout.reply_copies(self._instance, lane): lane for lane in _LANES}
        if targets is None:
            wanted.update({layout.everything(lane): lane for lane in _LANES})
            return wanted
        for lane in _LANES:
            wanted[layout.broadcast(lane)] = lane
            for target in targets:
                wanted[layout.targeted(lane, target)] = lane
        return wanted

    async def _retry_sync(self) -> None:
        while self._open:
            await asyncio.sleep(_RETRY_INTERVAL)
            if not all(client.is_connected for client in self._clients.values()):
                continue
            try:
                await self.sync()
            except Exception:
                logger.debug("%s: subscriptions still not updated", self._name, exc_info=True)
            else:
                return
