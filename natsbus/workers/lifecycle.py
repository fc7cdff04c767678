"""A worker's life: start, ready, active or not, and its end (graceful) or cancel (hard).

::

    CREATED -> ATTACHED -> STARTING -> READY -> ENDING -> ENDED
                               |                      ^
                               +---- setup failed ----+

A worker made with ``active=True`` is active from construction, as in pipecat: it runs jobs
even before a runner starts it; ``on_activated`` fires once it is ready. A graceful end stops
taking jobs, ends the children, lets running jobs finish within the grace period, cancels what
is left, and then runs ``cleanup``. A hard cancel does the same without the wait. Either runs
in a task of its own: it never blocks the worker's dispatch lanes, so the answers its running
jobs wait for still arrive. ``active`` keeps the value it had when the worker ended.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from natsbus._lazy_event import LazyEvent
from natsbus.messages import BusCancelWorkerLocalMessage, BusEndWorkerLocalMessage, Payload

if TYPE_CHECKING:
    from natsbus.workers.executor import JobExecutor
    from natsbus.workers.requests import JobTracker
    from natsbus.workers.worker import BaseWorker

__all__ = ["Lifecycle", "WorkerHandle", "WorkerState"]

logger = logging.getLogger(__name__)

CANCEL_WAIT = 5.0
"""Seconds a cancelled job, or a cancelled child, is given to answer before it is abandoned."""


class WorkerState(enum.Enum):
    """Where a worker is in its life. It only moves forward."""

    CREATED = "created"
    """Made, not yet given to a runner."""
    ATTACHED = "attached"
    """Added to a runner and subscribed to its bus."""
    STARTING = "starting"
    """Running ``setup``."""
    READY = "ready"
    """Announced ready; takes jobs (while active)."""
    ENDING = "ending"
    """Ending or being cancelled: takes no new jobs."""
    ENDED = "ended"
    """Done; ``wait()`` has returned."""


class Lifecycle:
    """The lifecycle state of one worker and the sequences that move it.

    Args:
        worker: The worker (its hooks, children and bus).
        executor: Runs the worker's jobs: drained and cancelled as the worker ends.
        tracker: The jobs the worker requested: waited for, then cancelled, as it ends.
        active: Whether it becomes active as soon as it is ready.
    """

    def __init__(
        self,
        worker: BaseWorker,
        executor: JobExecutor,
        tracker: JobTracker,
        *,
        active: bool,
    ) -> None:
        self._worker = worker
        self._executor = executor
        self._tracker = tracker
        self.state = WorkerState.CREATED
        self.active = active
        self.pending_activation = active
        self.activation_args: Payload | None = None
        self.started_at: float | None = None
        self.grace_period: float = 30.0
        self.end_reason: str | None = None
        self.ended_event = LazyEvent()  # lazy: most workers' ends are never awaited
        self._stopping: asyncio.Task[None] | None = None
        self._hard = False
        self._children_told: set[type] = set()  # which of end / cancel the children were told

    @property
    def ended(self) -> bool:
        """Whether the worker has ended."""
        return self.ended_event.is_set()

    @property
    def takes_jobs(self) -> bool:
        """Whether the worker takes new job requests now: set up, active, and not ending."""
        return self.state is WorkerState.READY and self.active and not self._executor.draining

    async def taking_changed(self) -> None:
        """Tell the worker's bus that :attr:`takes_jobs` may have changed."""
        bus = self._worker._bus
        if bus is not None:
            await bus.refresh_interest()

    async def wait(self) -> None:
        """Wait until the worker has ended."""
        await self.ended_event.wait()

    async def run(self, announce: Callable[[], Awaitable[None]]) -> None:
        """Set up, announce the worker ready, activate it, and wait for its end.

        Args:
            announce: Sends the ready message and registers the worker (the runner's part).
        """
        worker = self._worker
        self.state = WorkerState.STARTING
        try:
            # pipecat's setup takes the task manager; natsbus's hook may take nothing.
            if inspect.signature(worker.setup).parameters:
                await worker.setup(worker.task_manager)
            else:
                await worker.setup()
        except Exception as error:
            logger.exception("%s: setup failed", worker)
            await worker.send_bus_error_message(f"setup failed: {error}")
            self.begin_stop(graceful=False, reason="setup failed")
            await self.wait()
            return
        if self._stopping is None:
            self.started_at = time.time()
            self.state = WorkerState.READY
            await announce()
            await self.activate_pending()
            await self.taking_changed()  # only now may a network bus pull its job requests
        await self.wait()

    async def activate(self, args: Payload | None) -> None:
        """Become active with these arguments (now if ready, else once ready)."""
        self.activation_args = args
        self.pending_activation = True
        await self.activate_pending()

    async def activate_pending(self) -> None:
        """Run a pending activation once the worker is ready."""
        if self.state is not WorkerState.READY or not self.pending_activation:
            return
        self.pending_activation = False
        was_active, self.active = self.active, True
        if not was_active:
            await self.taking_changed()
        await self._worker._fire("on_activated", self.activation_args)

    async def deactivate(self) -> None:
        """Become inactive; a no-op when already inactive (so the hook fires once)."""
        self.pending_activation = False
        if not self.active:
            return
        self.active = False
        self.activation_args = None
        await self.taking_changed()
        await self._worker._fire("on_deactivated")

    def begin_stop(self, *, graceful: bool, reason: str | None) -> None:
        """Start ending (graceful) or cancelling (hard) the worker, in a task of its own.

        A cancel during a graceful end cuts its grace period short.
        """
        worker = self._worker
        self.drain()
        if self._stopping is not None:
            if not graceful and not self._hard:
                self._hard = True
                worker.spawn(self.cancel_children(reason))
                worker.spawn(self._executor.cancel_all(reason or "worker cancelled"))
            return
        self._hard = not graceful
        self.end_reason = reason
        if self.state is not WorkerState.ENDED:
            self.state = WorkerState.ENDING
        self._stopping = asyncio.create_task(
            self._stop(reason), name=f"natsbus-worker-stop[{worker.name}]"
        )

    def drain(self) -> None:
        """Take no new job from now on (running ones go on); the bus stops pulling them."""
        if self._executor.draining:
            return
        self._executor.drain()
        if self._worker._bus is not None:
            self._worker.spawn(self.taking_changed())

    async def _stop(self, reason: str | None) -> None:
        worker = self._worker
        try:
            if self._hard:
                await self.cancel_children(reason)
            else:
                await self.end_children(reason)
                await self._wait_jobs()
            await self._executor.cancel_all(reason or "worker ended", timeout=CANCEL_WAIT)
            await self._tracker.close(reason or "worker ended")
            await self.wait_children()
            try:
                await worker.cleanup()
            except Exception:
                logger.exception("%s: cleanup failed", worker)
        except Exception:
            # The worker must end whatever failed above, or its runner would wait for ever.
            logger.exception("%s: ending failed", worker)
        finally:
            self.state = WorkerState.ENDED
            self.ended_event.set()

    async def _wait_jobs(self) -> None:
        """Let the jobs this worker runs, and those it requested, finish within the grace."""
        worker = self._worker
        try:
            async with asyncio.timeout(self.grace_period):
                await self._executor.wait_idle(None)
                await self._tracker.wait_idle()
        except TimeoutError:
            logger.warning(
                "%s: jobs still running after the %.1f s grace period (%s); cancelling them",
                worker,
                self.grace_period,
                list(self._executor.running) + list(self._tracker.groups),
            )

    async def end_children(self, reason: str | None) -> None:
        """Tell each child to end (once), through the bus (in process) so that observers see it."""
        await self._tell_children(BusEndWorkerLocalMessage, reason)

    async def cancel_children(self, reason: str | None) -> None:
        """Tell each child to cancel (once), through the bus (in process) so observers see it."""
        await self._tell_children(BusCancelWorkerLocalMessage, reason)

    async def _tell_children(
        self,
        cls: type[BusEndWorkerLocalMessage] | type[BusCancelWorkerLocalMessage],
        reason: str | None,
    ) -> None:
        if cls in self._children_told:
            return
        self._children_told.add(cls)
        worker = self._worker
        for child in worker.children:
            await worker.send_bus_message(cls(reason, source=worker.name, target=child.name))

    async def wait_children(self) -> None:
        """Wait for the children to end (bounded: a child that hangs is logged and left)."""
        children = self._worker.children
        timeout = CANCEL_WAIT if self._hard else self.grace_period + CANCEL_WAIT
        try:
            async with asyncio.timeout(timeout):
                for child in children:
                    await child.wait()
        except TimeoutError:
            logger.error("%s: children did not end within %.1f s", self._worker, timeout)


class WorkerHandle:
    """What a runner drives of a worker it hosts (``attach()`` returns it); nothing else.

    Args:
        lifecycle: The worker's lifecycle.
        executor: The worker's job executor.
    """

    def __init__(self, lifecycle: Lifecycle, executor: JobExecutor) -> None:
        self._lifecycle = lifecycle
        self._executor = executor

    @property
    def will_be_active(self) -> bool:
        """Whether the worker is active, or becomes so once it is ready."""
        return self._lifecycle.active or self._lifecycle.pending_activation

    async def run(self, announce: Callable[[], Awaitable[None]]) -> None:
        """Set the worker up, announce it, and wait until it ended (see :meth:`Lifecycle.run`)."""
        await self._lifecycle.run(announce)

    def drain(self) -> None:
        """Take no new job from now on (running ones go on)."""
        self._lifecycle.drain()

    def begin_stop(self, *, graceful: bool, reason: str | None) -> None:
        """End (graceful) or cancel the worker, in a task of its own."""
        self._lifecycle.begin_stop(graceful=graceful, reason=reason)
