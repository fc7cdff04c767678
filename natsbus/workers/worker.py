"""The :class:`BaseWorker`: a named bus subscriber with a lifecycle, children and jobs."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar

from natsbus._events import EventHandlers
from natsbus.bus import BusSubscriber, WorkerBus
from natsbus.messages import (
    JOB_MESSAGE_TYPES,
    BusActivateWorkerMessage,
    BusCancelWorkerLocalMessage,
    BusCancelWorkerMessage,
    BusDeactivateWorkerMessage,
    BusEndWorkerLocalMessage,
    BusEndWorkerMessage,
    BusFrameMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    BusWorkerErrorMessage,
    BusWorkerLocalErrorMessage,
    JobRole,
    Payload,
)
from natsbus.tasks import TaskManager
from natsbus.workers.actions import WorkerActions
from natsbus.workers.compat import PipecatState
from natsbus.workers.executor import JobExecutor
from natsbus.workers.jobs_api import JobMethods
from natsbus.workers.lifecycle import Lifecycle, WorkerHandle, WorkerState
from natsbus.workers.registry import WorkerRegistry
from natsbus.workers.requests import JobGroup, JobTracker
from natsbus.workers.types import WorkerErrorData, WorkerReadyData

if TYPE_CHECKING:
    from natsbus.workers.runner import WorkerRunner

__all__ = ["BaseWorker"]

logger = logging.getLogger(__name__)

_Route = Callable[[Any], Awaitable[None]]

_REPLIES = tuple(
    cls
    for cls in JOB_MESSAGE_TYPES
    if cls.job_role in (JobRole.UPDATE, JobRole.STREAM, JobRole.ANSWER)
)
"""What the worker's job tracker takes: every reply a worker sends about a job."""


_EVENTS = (
    "on_activated",
    "on_deactivated",
    "on_bus_message",
    "on_worker_ready",
    "on_worker_failed",
    "on_job_request",
    "on_job_response",
    "on_job_update",
    "on_job_update_requested",
    "on_job_completed",
    "on_job_error",
    "on_job_stream_start",
    "on_job_stream_data",
    "on_job_stream_end",
    "on_job_cancelled",
)
"""The events a worker fires, each after the hook method of the same name."""


def _default_name(cls: type) -> str:
    """``TranslatorWorker`` -> ``translator-worker``: replicas of a class share a name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


class BaseWorker(WorkerActions, JobMethods, PipecatState, EventHandlers, BusSubscriber):
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
    :meth:`on_worker_ready` / :meth:`on_worker_failed`, and the job hooks ``on_job_*``. Or
    attach event handlers as in pipecat, which run after the hook of the same name::

        @worker.event_handler("on_job_completed")
        async def completed(worker, result): ...

    Messages of your own types reach :meth:`on_bus_message`: override it and call ``super()``.

    Every replica of a worker (the same worker on several runners) has the same name; a job
    sent to that name is handled by exactly one of them on a NatsBus.

    Args:
        name: The worker's name on the bus; defaults to :attr:`default_name`, else the class
            name in kebab case (``TranslatorWorker`` -> ``translator-worker``).
        active: Whether the worker is active from the start (as in pipecat, even before a
            runner starts it); ``on_activated`` fires once it is ready. An inactive worker
            answers job requests ``error`` until it is activated (it still answers cancels,
            and its own jobs' replies reach it).
        bridged: Whether the worker is bridged onto a pipeline (reported in the registry).
        task_manager: The task manager for the worker's tasks; defaults to its runner's.
    """

    default_name: ClassVar[str | None] = None
    """The name instances get when none is given."""

    runs_jobs: ClassVar[bool] = True
    """Whether the worker takes job requests. One that only asks for jobs (a client) says
    False: a network bus then keeps no job consumer for it (requests to it wait in the
    stream, unanswered), and its NATS user needs only the ``requester`` permissions."""

    def __init__(
        self,
        name: str | None = None,
        *,
        active: bool = True,
        bridged: bool = False,
        task_manager: TaskManager | None = None,
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
        self._task_manager = task_manager
        self._watched: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executor = JobExecutor(self)
        self._tracker = JobTracker(self)
        self._lifecycle = Lifecycle(self, self._executor, self._tracker, active=active)
        for event in _EVENTS:
            self._register_event_handler(event)
        self._routes: dict[type[BusMessage], _Route] = {
            BusActivateWorkerMessage: self._handle_worker_activate,
            BusDeactivateWorkerMessage: self._handle_worker_deactivate,
            BusEndWorkerMessage: self._handle_worker_end,
            BusEndWorkerLocalMessage: self._handle_worker_end,
            BusCancelWorkerMessage: self._handle_worker_cancel,
            BusCancelWorkerLocalMessage: self._handle_worker_cancel,
            BusJobRequestMessage: self._executor.on_request,
            BusJobCancelMessage: self._executor.on_cancel,
            BusJobUpdateRequestMessage: self._executor.on_update_request,
            BusWorkerLocalErrorMessage: self._handle_worker_error,
            BusWorkerErrorMessage: self._handle_worker_error,
            **dict.fromkeys(_REPLIES, self._tracker.on_reply),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._lifecycle.state.value}>"

    def __str__(self) -> str:
        return self._name

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
    def bus_job_targets(self) -> frozenset[str]:
        """The worker's own name, unless it runs no jobs (:attr:`runs_jobs`)."""
        return frozenset((self.name,)) if self.runs_jobs else frozenset()

    @property
    def bus_taking_jobs(self) -> bool:
        """Whether a network bus may pull this worker's job requests now.

        Only once the worker is set up and active, and until it starts ending or draining:
        until then its requests wait in the stream for a replica that is ready, so a replica
        that is still loading a model never answers a job ``error``.
        """
        return self._lifecycle.takes_jobs

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
    def active_jobs(self) -> dict[str, BusJobRequestMessage]:
        """The requests this worker took and has not answered yet, by job id."""
        return self._executor.running

    running_jobs = active_jobs

    @property
    def job_groups(self) -> dict[str, JobGroup]:
        """The jobs and job groups this worker requested that are still open, by job id."""
        return self._tracker.groups

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
    def worker_runner(self) -> WorkerRunner:
        """The runner hosting the worker (``self.worker_runner.get_worker("helper")``).

        Raises:
            RuntimeError: The worker was not given to a runner yet.
        """
        if self._runner is None:
            raise RuntimeError(f"{self!r} has no runner: add it to a WorkerRunner first")
        return self._runner

    runner = worker_runner

    @property
    def task_manager(self) -> TaskManager:
        """The task manager the worker's tasks are made with: its own, its runner's, or new."""
        if self._task_manager is None:
            self._task_manager = (
                self._runner.task_manager if self._runner is not None else TaskManager()
            )
        return self._task_manager

    async def wait(self) -> None:
        """Wait until the worker has ended."""
        await self._lifecycle.wait()

    # --- hooks ------------------------------------------------------------------------------

    async def setup(self, task_manager: TaskManager | None = None) -> None:
        """Prepare the worker before it is announced ready; raising fails the worker.

        Override it without arguments (natsbus) or with the task manager (pipecat, which
        calls it with one); the runner calls it either way.

        Args:
            task_manager: The task manager to make the worker's tasks with.
        """
        if task_manager is not None:
            self._task_manager = task_manager

    async def cleanup(self) -> None:
        """Release what :meth:`setup` took, once the worker has ended (jobs are answered)."""
        await self._wait_event_handlers()

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

    # --- tasks ------------------------------------------------------------------------------

    def create_task(
        self, coroutine: Coroutine[Any, Any, Any], name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run a coroutine in a task of the worker's task manager.

        Args:
            coroutine: The coroutine.
            name: The task's name (prefixed with the worker's).

        Returns:
            The task.
        """
        label = name or getattr(getattr(coroutine, "cr_code", None), "co_name", "task")
        return self.task_manager.create_task(coroutine, f"{self._name}::{label}")

    async def cancel_task(self, task: asyncio.Task[Any], timeout: float | None = 1.0) -> None:
        """Cancel a task and wait for it (at most ``timeout`` seconds)."""
        await self.task_manager.cancel_task(task, timeout)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in a task of the worker's task manager.

        The runner cancels and awaits the tasks still running when its run ends.
        """
        task = self.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the runner's side ------------------------------------------------------------------

    async def attach(
        self,
        *,
        registry: WorkerRegistry,
        bus: WorkerBus,
        worker_runner: WorkerRunner,
        grace_period: float | None = None,
    ) -> WorkerHandle | None:
        """Join a runner: subscribe to its bus (called by the runner, as in pipecat).

        A worker attached but not started yet may be attached again (to another runner, as
        pipecat allows): it leaves the first one. Once it has started, a second attach is
        logged and ignored.

        Args:
            registry: The runner's registry.
            bus: The runner's bus.
            worker_runner: The runner.
            grace_period: Seconds running jobs get on a graceful end (default: the runner's).

        Returns:
            What the runner drives of the worker (start, drain, end), or None if ignored.
        """
        state = self._lifecycle.state
        if state not in (WorkerState.CREATED, WorkerState.ATTACHED):
            logger.error("%r has started on a runner already; attach ignored", self)
            return None
        previous, previous_bus = self._runner, self._bus
        if state is WorkerState.ATTACHED and previous is not worker_runner:
            logger.warning(
                "%r moves from %r to %r before it started", self, previous, worker_runner
            )
            if previous is not None:
                previous.release(self)
            if previous_bus is not None and previous_bus is not bus:
                await previous_bus.unsubscribe(self)
        self._bus, self._registry, self._runner = bus, registry, worker_runner
        if grace_period is None:
            grace_period = getattr(worker_runner, "grace_period", None)
        if grace_period is not None:
            self._lifecycle.grace_period = grace_period
        self._lifecycle.state = WorkerState.ATTACHED
        await bus.subscribe(self)
        return WorkerHandle(self._lifecycle, self._executor)

    # --- events -----------------------------------------------------------------------------

    @property
    def _takes_any_job(self) -> bool:
        """Whether a request no ``@job`` handler claims has somewhere to go."""
        overridden = type(self).on_job_request is not JobMethods.on_job_request
        return overridden or bool(self._event_handlers.get("on_job_request"))

    async def _fire(self, event: str, *args: Any) -> None:
        """Call the hook method named ``event``, then the event handlers attached to it."""
        try:
            await getattr(self, event)(*args)
        except Exception:
            # A hook's bug must not stop the lane (or the job) that fired it.
            logger.exception("%s: %s raised", self, event)
        if self._event_handlers.get(event):  # most events have no handler: skip the coroutine
            await self._call_event_handler(event, *args)

    async def _fire_event(self, event: str, *args: Any) -> None:
        """Call only the event handlers attached to ``event`` (its hook was called already)."""
        if self._event_handlers.get(event):
            await self._call_event_handler(event, *args)

    # --- receiving --------------------------------------------------------------------------

    async def on_bus_message(self, message: BusMessage) -> None:
        """Handle a message: lifecycle, jobs and errors are routed to their handlers.

        Messages for another worker are ignored (an in-process bus delivers everything to
        everyone), and so are frames (a pipeline worker takes those). Override to handle your
        own message types, and call ``super()``. The ``on_bus_message`` event fires after.

        Args:
            message: The message.
        """
        target = message.target
        if target is not None and target != self._name:
            return
        route = self._routes.get(type(message))
        if route is not None:
            await route(message)
        # Read on every message: an object with no handlers at all has an empty dict.
        handlers = self._event_handlers
        if handlers and handlers.get("on_bus_message") and not isinstance(message, BusFrameMessage):
            await self._call_event_handler("on_bus_message", message)

    async def _handle_worker_activate(self, message: BusActivateWorkerMessage) -> None:
        await self._lifecycle.activate(message.args)

    async def _handle_worker_deactivate(self, message: BusDeactivateWorkerMessage) -> None:
        await self._lifecycle.deactivate()

    async def _handle_worker_end(self, message: BusEndWorkerMessage) -> None:
        """End gracefully; returns once the children have ended (as pipecat's does)."""
        if self._runner is not None and not self._runner.admits_end(message):
            return
        self._lifecycle.begin_stop(graceful=True, reason=message.reason)
        await self._lifecycle.end_children(message.reason)
        await self._lifecycle.wait_children()

    async def _handle_worker_cancel(self, message: BusCancelWorkerMessage) -> None:
        """Cancel at once; the children are told before this returns."""
        if self._runner is not None and not self._runner.admits_end(message):
            return
        self._lifecycle.begin_stop(graceful=False, reason=message.reason)
        await self._lifecycle.cancel_children(message.reason)

    async def _handle_worker_error(
        self, message: BusWorkerErrorMessage | BusWorkerLocalErrorMessage
    ) -> None:
        source = message.source
        if source == self._name:
            return
        is_child = any(child.name == source for child in self._children)
        if is_child or (isinstance(message, BusWorkerErrorMessage) and source in self._watched):
            await self._fire("on_worker_failed", WorkerErrorData(source, message.error))

    async def _on_watched_worker_ready(self, data: WorkerReadyData) -> None:
        await self._fire("on_worker_ready", data)
