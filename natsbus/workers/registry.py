"""The worker registry: which workers are ready, on this runner and on the others.

A runner owns one registry and shares it with its workers. It learns about local workers when
they become ready and about remote ones from the ``BusWorkerReadyMessage`` and
``BusWorkerRegistryMessage`` snapshots other runners send. A worker *watches* names it cares
about; the registry calls it back once per name when that worker is (or becomes) ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeAlias

from natsbus.workers.types import WorkerReadyData

__all__ = ["WatchHandler", "WorkerRegistry"]

logger = logging.getLogger(__name__)

WatchHandler: TypeAlias = Callable[[WorkerReadyData], Awaitable[None]]
"""Called with a watched worker's data once it is ready."""


class WorkerRegistry:
    """Known ready workers, local and remote, and the watches on them.

    Args:
        runner_name: The runner that owns the registry; workers it registers are local.
    """

    def __init__(self, runner_name: str) -> None:
        self._runner_name = runner_name
        self._workers: dict[str, WorkerReadyData] = {}
        self._watches: defaultdict[str, list[WatchHandler]] = defaultdict(list)
        self._ready_events: dict[str, asyncio.Event] = {}

    @property
    def runner_name(self) -> str:
        """The runner that owns this registry."""
        return self._runner_name

    @property
    def local_workers(self) -> list[str]:
        """Names of the ready workers hosted by this registry's runner."""
        return [name for name, data in self._workers.items() if data.local]

    @property
    def remote_workers(self) -> list[str]:
        """Names of the ready workers hosted by other runners."""
        return [name for name, data in self._workers.items() if not data.local]

    def get(self, worker_name: str) -> WorkerReadyData | None:
        """Return what is known of a ready worker, or None."""
        return self._workers.get(worker_name)

    def __contains__(self, worker_name: object) -> bool:
        return worker_name in self._workers

    async def register(self, data: WorkerReadyData) -> bool:
        """Record a ready worker and call the handlers watching it.

        A name is registered once; later announcements of it (another replica, a repeated
        snapshot) change nothing. A watch handler that raises is logged and skipped.

        Args:
            data: The worker that is ready.

        Returns:
            True if the worker was new.
        """
        existing = self._workers.get(data.worker_name)
        if existing is not None:
            if existing.runner != data.runner and logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "worker %r is also hosted by runner %r (first seen on %r)",
                    data.worker_name,
                    data.runner,
                    existing.runner,
                )
            return False
        self._workers[data.worker_name] = data
        event = self._ready_events.pop(data.worker_name, None)
        if event is not None:
            event.set()
        for handler in list(self._watches.get(data.worker_name, ())):
            await self._call(handler, data)
        return True

    def forget(self, worker_name: str) -> None:
        """Forget a worker that ended.

        Only local workers are forgotten: nothing tells a runner when a remote one ends.
        """
        self._workers.pop(worker_name, None)

    async def watch(self, worker_name: str, handler: WatchHandler) -> None:
        """Call ``handler`` when ``worker_name`` is ready (at once if it already is).

        Args:
            worker_name: The worker to watch.
            handler: Called with the worker's data.
        """
        self._watches[worker_name].append(handler)
        existing = self._workers.get(worker_name)
        if existing is not None:
            await self._call(handler, existing)

    def unwatch(self, worker_name: str, handler: WatchHandler) -> None:
        """Remove a watch added with :meth:`watch` (a no-op if it is not there)."""
        handlers = self._watches.get(worker_name)
        if handlers and handler in handlers:
            handlers.remove(handler)

    def all_ready(self, worker_names: Iterable[str]) -> bool:
        """Whether every named worker is known to be ready now.

        Args:
            worker_names: The workers to ask about.
        """
        workers = self._workers
        return all(name in workers for name in worker_names)

    async def wait_ready(self, worker_names: Iterable[str]) -> None:
        """Wait until every named worker is ready.

        Args:
            worker_names: The workers to wait for.
        """
        for name in worker_names:
            if name in self._workers:
                continue
            event = self._ready_events.setdefault(name, asyncio.Event())
            await event.wait()

    async def _call(self, handler: WatchHandler, data: WorkerReadyData) -> None:
        try:
            await handler(data)
        except Exception:
            # One watcher's bug must not keep the others from hearing about the worker.
            logger.exception("watch handler for worker %r raised", data.worker_name)
