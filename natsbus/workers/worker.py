"""The :class:`BaseWorker`: a named bus subscriber with a lifecycle, children and jobs."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from natsbus.bus import BusSubscriber, WorkerBus
from natsbus.messages import (
    BusActivateWorkerMessage,
    BusAddWorkerMessage,
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDeactivateWorkerMessage,
    BusEndMessage,
    BusEndWorkerMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    BusWorkerErrorMessage,
    BusWorkerLocalErrorMessage,
    Payload,
)
from natsbus.workers.executor import JobExecutor
from natsbus.workers.jobs_api import JobMethods
from natsbus.workers.lifecycle import Lifecycle, WorkerState
from natsbus.workers.registry import WorkerRegistry
from natsbus.workers.requests import JobTracker
from natsbus.workers.types import WorkerErrorData, WorkerReadyData

if TYPE_CHECKING:
    from natsbus.workers.runner import WorkerRunner

__all__ = ["BaseWorker"]

logger = logging.getLogger(__name__)

_Route = Callable[[Any], Awaitable[None]]

_REPLIES = (
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    BusJobStreamStartMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
)


def _default_name(cls: type) -> str:
    """``TranslatorWorker`` -> ``translator-worker``: replicas of a class share a name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


class BaseWorker(JobMethods, BusSubscriber):
    """A worker: a named bus subscriber that runs jobs, requests jobs, and has children.

    Subclass it, mark job handlers with :func:`~natsbus.workers.job`, and give it to a
    :class:`~natsbus.workers.WorkerRunner`::

        class Greeter(BaseWorker):
            @job(name="greet")
            async def greet(self, message: BusJobRequestMessage) -> dict[str, str]:
                return {"text": f"hello {(message.payload or {})['who']}"}

        runner = WorkerRunner(bus=AsyncQueueBus())
        await runner.add_workers(Greeter())
        await runner.run()

    Override the hooks (each default does nothing; calling ``super()`` is not needed):
    :meth:`setup` / :meth:`cleanup`, :meth:`on_activated` / :meth:`on_deactivated`,
    :meth:`on_worker_ready` / :meth:`on_worker_failed`, and the job hooks ``on_job_*``.
    Messages of your own types reach :meth:`on_bus_message`: override it and call ``super()``.

    Every replica of a worker (the same worker on several runners) has the same name; a job
    sent to that name is handled by exactly one of them on a NatsBus.

    Args:
        name: The worker's name on the bus; defaults to :attr:`default_name`, else the class
            name in kebab case (``TranslatorWorker`` -> ``translator-worker``).
        active: Become active when ready. An inactive worker answers job requests
            ``error`` until it is activated (it still answers cancels and its own jobs'
            replies reach it).
        bridged: Whether the worker is bridged onto a pipeline (reported in the registry).
    """

    default_name: ClassVar[str | None] = None
    """The name instances get when none is given."""

    def __init__(
        self, name: str | None = None, *, active: bool = True, bridged: bool = False
    ) -> None:
        if name is None:
            name = self.default_name or _default_name(type(self))
        if not isinstance(name, str) or not name:
            raise ValueError(f"a worker name must be a non-empty str, got {name!r}")
        self._name = name
        self._bridged = bridged
        self._parent: str | None = None
        self._children: list[BaseWorker] = []
        self._bus: WorkerBus | None = None
        self._registry: WorkerRegistry | None = None
        self._runner: WorkerRunner | None = None
        self._watched: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lifecycle = Lifecycle(self, active=active)
        self._executor = JobExecutor(self)
        if type(self).on_job_request is not JobMethods.on_job_request:
            self._executor.set_fallback(self.on_job_request)
        self._tracker = JobTracker(self)
        self._routes: dict[type[BusMessage], _Route] = {
            BusActivateWorkerMessage: self._on_activate,
            BusDeactivateWorkerMessage: self._on_deactivate,
            BusEndWorkerMessage: self._on_end,
            BusCancelWorkerMessage: self._on_cancel,
            BusJobRequestMessage: self._executor.on_request,
            BusJobCancelMessage: self._executor.on_cancel,
            BusJobUpdateRequestMessage: self._executor.on_update_request,
            BusWorkerLocalErrorMessage: self._on_worker_error,
            BusWorkerErrorMessage: self._on_worker_error,
            **dict.fromkeys(_REPLIES, self._tracker.on_reply),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._lifecycle.state.value}>"

    # --- identity and state -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The worker's name on the bus."""
        return self._name

    @property
    def parent(self) -> str | None:
        """The parent worker's name, or None for a root worker."""
        return self._parent

    @property
    def children(self) -> list[BaseWorker]:
        """The child workers added with :meth:`add_workers`."""
        return list(self._children)

    @property
    def active(self) -> bool:
        """Whether the worker is active (takes new jobs)."""
        return self._lifecycle.active

    @property
    def activation_args(self) -> Payload | None:
        """The arguments of the latest activation, or None when inactive."""
        return self._lifecycle.activation_args

    @property
    def bridged(self) -> bool:
        """Whether the worker is bridged onto a pipeline."""
        return self._bridged

    @property
    def started_at(self) -> float | None:
        """Unix time at which the worker became ready, or None before."""
        return self._lifecycle.started_at

    @property
    def state(self) -> WorkerState:
        """Where the worker is in its life."""
        return self._lifecycle.state

    @property
    def running_jobs(self) -> dict[str, BusJobRequestMessage]:
        """The requests this worker is handling, by job id."""
        return self._executor.running

    @property
    def bus(self) -> WorkerBus:
        """The bus the worker is attached to.

        Raises:
            RuntimeError: The worker was not given to a runner yet.
        """
        if self._bus is None:
            raise RuntimeError(f"{self!r} has no bus: add it to a WorkerRunner first")
        return self._bus

    @property
    def registry(self) -> WorkerRegistry:
        """The registry of the worker's runner.

        Raises:
            RuntimeError: The worker was not given to a runner yet.
        """
        if self._registry is None:
            raise RuntimeError(f"{self!r} has no registry: add it to a WorkerRunner first")
        return self._registry

    @property
    def registry_or_none(self) -> WorkerRegistry | None:
        """The registry of the worker's runner, or None before it has one."""
        return self._registry

    @property
    def runner(self) -> WorkerRunner:
        """The runner hosting the worker.

        Raises:
            RuntimeError: The worker was not given to a runner yet.
        """
        if self._runner is None:
            raise RuntimeError(f"{self!r} has no runner: add it to a WorkerRunner first")
        return self._runner

    @property
    def executor(self) -> JobExecutor:
        """Runs this worker's job handlers (internal)."""
        return self._executor

    @property
    def tracker(self) -> JobTracker:
        """Tracks the jobs this worker requested (internal)."""
        return self._tracker

    @property
    def lifecycle(self) -> Lifecycle:
        """This worker's lifecycle state machine (internal)."""
        return self._lifecycle

    async def wait(self) -> None:
        """Wait until the worker has ended."""
        await self._lifecycle.wait()

    # --- hooks ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Prepare the worker before it is announced ready; raising fails the worker."""

    async def cleanup(self) -> None:
        """Release what :meth:`setup` took, once the worker has ended (jobs are answered)."""

    async def on_activated(self, args: Payload | None) -> None:
        """Called when the worker becomes active (when ready, if created active).

        Args:
            args: The activation arguments, or None.
        """

    async def on_deactivated(self) -> None:
        """Called when the worker becomes inactive."""

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        """Called when a watched worker (or a child) is ready, on this runner or another.

        Args:
            data: The worker that is ready.
        """

    async def on_worker_failed(self, data: WorkerErrorData) -> None:
        """Called when a child, or a watched root worker, reports an error.

        Args:
            data: The worker and its error.
        """

    # --- actions ----------------------------------------------------------------------------

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
            args: Arguments for its ``on_activated``.
            deactivate_self: Hand over: this worker becomes inactive *before* the activation
                is sent, so the two are never active at once.
        """
        if deactivate_self:
            # Locally and at once: a deactivation sent to ourselves over the bus could arrive
            # after the other worker already handed activation back.
            await self._lifecycle.deactivate()
        await self.send_bus_message(
            BusActivateWorkerMessage(args, source=self._name, target=worker_name)
        )

    async def deactivate_worker(self, worker_name: str) -> None:
        """Deactivate a worker (``on_deactivated`` fires on it).

        Args:
            worker_name: The worker to deactivate.
        """
        if worker_name == self._name:
            await self._lifecycle.deactivate()
            return
        await self.send_bus_message(
            BusDeactivateWorkerMessage(source=self._name, target=worker_name)
        )

    async def add_workers(self, *workers: BaseWorker, watch: bool = True) -> None:
        """Add child workers, hosted by this worker's runner and ended with this worker.

        Args:
            *workers: The children.
            watch: Call :meth:`on_worker_ready` when each child is ready.

        Raises:
            ValueError: A worker already has a parent.
        """
        for worker in workers:
            if worker._parent is not None or worker is self:
                raise ValueError(f"{worker!r} already has a parent ({worker._parent!r})")
        for worker in workers:
            worker._parent = self._name
            self._children.append(worker)
            await self.send_bus_message(BusAddWorkerMessage(worker, source=self._name))
        if watch:
            await self.watch_workers(*(worker.name for worker in workers))

    async def watch_workers(self, *worker_names: str) -> None:
        """Call :meth:`on_worker_ready` when each named worker is ready, here or remotely.

        Fires at once for a worker already known to be ready. A watched root worker's error
        reports reach :meth:`on_worker_failed`.

        Args:
            *worker_names: The workers to watch.
        """
        for worker_name in worker_names:
            if worker_name in self._watched:
                continue
            self._watched.add(worker_name)
            await self.registry.watch(worker_name, self.on_worker_ready)

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

    # --- the runner's side ------------------------------------------------------------------

    async def attach(
        self, *, bus: WorkerBus, registry: WorkerRegistry, runner: WorkerRunner, grace_period: float
    ) -> None:
        """Join a runner: subscribe to its bus (called by the runner).

        Raises:
            RuntimeError: The worker was already attached.
        """
        if self._lifecycle.state is not WorkerState.CREATED:
            raise RuntimeError(f"{self!r} was already added to a runner")
        self._bus, self._registry, self._runner = bus, registry, runner
        self._lifecycle.grace_period = grace_period
        self._lifecycle.state = WorkerState.ATTACHED
        await bus.subscribe(self)

    def deliver_locally(self, message: BusMessage) -> None:
        """Hand a message to this process's subscribers only, never to the network.

        Used to end or cancel this worker's children: replicas of a worker on other runners
        share its name (and its children's), and a targeted message sent over NATS would reach
        every one of them.
        """
        bus = self.bus
        bus.stamp(message)
        bus.on_message_received(message)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in a task the worker keeps until it is done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- receiving --------------------------------------------------------------------------

    async def on_bus_message(self, message: BusMessage) -> None:
        """Handle a message: lifecycle, jobs and errors are routed to their handlers.

        Messages for another worker are ignored (an in-process bus delivers everything to
        everyone). Override to handle your own message types, and call ``super()``.

        Args:
            message: The message.
        """
        target = message.target
        if target is not None and target != self._name:
            return
        route = self._routes.get(type(message))
        if route is not None:
            await route(message)

    async def _on_activate(self, message: BusActivateWorkerMessage) -> None:
        await self._lifecycle.activate(message.args)

    async def _on_deactivate(self, message: BusDeactivateWorkerMessage) -> None:
        await self._lifecycle.deactivate()

    async def _on_end(self, message: BusEndWorkerMessage) -> None:
        self._lifecycle.begin_stop(graceful=True, reason=message.reason)

    async def _on_cancel(self, message: BusCancelWorkerMessage) -> None:
        self._lifecycle.begin_stop(graceful=False, reason=message.reason)

    async def _on_worker_error(
        self, message: BusWorkerErrorMessage | BusWorkerLocalErrorMessage
    ) -> None:
        source = message.source
        if source == self._name:
            return
        is_child = any(child.name == source for child in self._children)
        if is_child or (isinstance(message, BusWorkerErrorMessage) and source in self._watched):
            await self.on_worker_failed(WorkerErrorData(source, message.error))
