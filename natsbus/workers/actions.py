"""What a worker does to others: send messages, (de)activate, add children, watch, end, cancel.

Kept apart from :class:`~natsbus.workers.BaseWorker`'s state and message handling so that each
module stays readable; mixed into it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from natsbus.messages import (
    BusActivateWorkerMessage,
    BusAddWorkerMessage,
    BusCancelMessage,
    BusDeactivateWorkerMessage,
    BusEndMessage,
    BusMessage,
    BusWorkerErrorMessage,
    BusWorkerLocalErrorMessage,
    Payload,
)

if TYPE_CHECKING:
    from natsbus.bus import WorkerBus
    from natsbus.workers.lifecycle import Lifecycle
    from natsbus.workers.registry import WorkerRegistry
    from natsbus.workers.types import WorkerReadyData
    from natsbus.workers.worker import BaseWorker

__all__ = ["WorkerActions"]

logger = logging.getLogger(__name__)


class WorkerActions:
    """The worker's actions on the bus; mixed into :class:`~natsbus.workers.BaseWorker`."""

    if TYPE_CHECKING:  # provided by BaseWorker
        _name: str
        _parent: str | None
        _children: list[BaseWorker]
        _registry: WorkerRegistry | None
        _watched: set[str]
        _lifecycle: Lifecycle

        @property
        def bus(self) -> WorkerBus:  # noqa: D102
            ...

        @property
        def active(self) -> bool:  # noqa: D102
            ...

        async def _on_watched_worker_ready(self, data: WorkerReadyData) -> None: ...

    async def send_bus_message(self, message: BusMessage) -> None:
        """Send a message on the worker's bus.

        Args:
            message: The message.
        """
        await self.bus.send(message)

    async def send_bus_error_message(self, error: str) -> None:
        """Report an error: to the parent (local only) for a child, to everyone for a root.

        Args:
            error: Description of the error.
        """
        if self._parent is not None:
            message: BusMessage = BusWorkerLocalErrorMessage(
                error, source=self._name, target=self._parent
            )
        else:
            message = BusWorkerErrorMessage(error, source=self._name)
        await self.send_bus_message(message)

    async def activate_worker(
        self, worker_name: str, *, args: Payload | None = None, deactivate_self: bool = False
    ) -> None:
        """Activate a worker (``on_activated(args)`` fires on it).

        Args:
            worker_name: The worker to activate.
            args: Arguments for its ``on_activated`` (a dict, or an object with ``to_dict()``
                such as pipecat's ``WorkerActivationArgs``).
            deactivate_self: Hand over: this worker becomes inactive *before* the activation
                is sent (locally, at once, and with a ``BusDeactivateWorkerMessage`` for
                observers), so the two are never active at once.
        """
        if deactivate_self and self.active:
            # Locally and at once: a deactivation that only went over the bus could arrive
            # after the other worker already handed activation back.
            await self._lifecycle.deactivate()
            await self.send_bus_message(
                BusDeactivateWorkerMessage(source=self._name, target=self._name)
            )
        to_dict = getattr(args, "to_dict", None)
        payload: Payload | None = to_dict() if callable(to_dict) else args
        await self.send_bus_message(
            BusActivateWorkerMessage(payload, source=self._name, target=worker_name)
        )

    async def deactivate_worker(self, worker_name: str) -> None:
        """Deactivate a worker (``on_deactivated`` fires on it).

        Args:
            worker_name: The worker to deactivate; for this worker itself the change is
                immediate (the message still goes out, for observers).
        """
        if worker_name == self._name:
            await self._lifecycle.deactivate()
        await self.send_bus_message(
            BusDeactivateWorkerMessage(source=self._name, target=worker_name)
        )

    async def add_workers(self, *workers: BaseWorker, watch: bool = True) -> None:
        """Add child workers, hosted by this worker's runner and ended with this worker.

        A worker that already has a parent is logged and skipped, as in pipecat.

        Args:
            *workers: The children.
            watch: Call :meth:`on_worker_ready` when each child is ready.
        """
        added: list[str] = []
        for worker in workers:
            if worker._parent is not None or worker is self:
                logger.warning(
                    "%s: %r already has a parent (%r); skipped", self, worker, worker._parent
                )
                continue
            worker._parent = self._name
            self._children.append(worker)
            added.append(worker.name)
            await self.send_bus_message(BusAddWorkerMessage(worker, source=self._name))
        if watch and added:
            await self.watch_workers(*added)

    async def watch_workers(self, *worker_names: str) -> None:
        """Call :meth:`on_worker_ready` when each named worker is ready, here or remotely.

        Fires at once for a worker already known to be ready. A watched root worker's error
        reports reach :meth:`on_worker_failed`. A no-op before the worker has a runner.

        Args:
            *worker_names: The workers to watch.
        """
        registry = self._registry
        if registry is None:
            return
        for worker_name in worker_names:
            if worker_name in self._watched:
                continue
            self._watched.add(worker_name)
            await registry.watch(worker_name, self._on_watched_worker_ready)

    async def end(self, reason: str | None = None) -> None:
        """Ask the runners to end the session gracefully (``BusEndMessage``).

        Args:
            reason: Why, for the logs and the workers.
        """
        await self.send_bus_message(BusEndMessage(reason, source=self._name))

    async def cancel(self, reason: str | None = None) -> None:
        """Ask the runners to cancel the session at once (``BusCancelMessage``).

        Args:
            reason: Why, for the logs and the workers.
        """
        await self.send_bus_message(BusCancelMessage(reason, source=self._name))
