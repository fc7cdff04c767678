"""The :class:`WorkerRunner`: hosts workers on one bus and runs them until they end."""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import warnings
from typing import Any

from natsbus._events import EventHandlers
from natsbus.bus import AsyncQueueBus, BusState, BusSubscriber, WorkerBus
from natsbus.errors import UnknownChannelError
from natsbus.messages import (
    BusAddWorkerMessage,
    BusCancelMessage,
    BusCancelWorkerLocalMessage,
    BusEndMessage,
    BusEndWorkerLocalMessage,
    BusMessage,
    BusWorkerErrorMessage,
    BusWorkerReadyMessage,
    BusWorkerRegistryMessage,
    WorkerRegistryEntry,
)
from natsbus.tasks import TaskManager, cancel_and_wait
from natsbus.workers.channels import ChannelClient
from natsbus.workers.lifecycle import WorkerHandle, WorkerState
from natsbus.workers.registry import WorkerRegistry
from natsbus.workers.signals import SignalHandlers
from natsbus.workers.types import WorkerReadyData
from natsbus.workers.worker import BaseWorker

__all__ = ["PipelineRunner", "RunnerState", "WorkerRunner"]

logger = logging.getLogger(__name__)


class RunnerState(enum.Enum):
    """Where a runner is in its life: CREATED, RUNNING, then FINISHED (it runs once)."""

    CREATED = "created"
    RUNNING = "running"
    FINISHED = "finished"


class WorkerRunner(EventHandlers, BusSubscriber):
    """Hosts a set of workers on one bus and runs them until every one has ended.

    It starts each worker, announces it ready (``BusWorkerReadyMessage``) and publishes a
    ``BusWorkerRegistryMessage`` snapshot of its workers at start, whenever one becomes ready,
    and whenever it hears from a runner it did not know, so that runners discover each
    other's workers. A ``BusEndMessage`` ends every worker gracefully, a ``BusCancelMessage``
    cancels them. SIGTERM drains (running jobs finish within ``grace_period``), SIGINT cancels.

    Example::

        runner = WorkerRunner(bus=NatsBus(servers="nats://nats:4222"))
        await runner.add_workers(Translator(), Summarizer())
        await runner.run()  # returns when every worker has ended

    The end or cancel of this runner's workers goes through ``bus.send`` (a bus subscriber
    sees it) as a local-only message, so the same worker hosted by other runners (replicas
    share a name) goes on.

    Events (``@runner.event_handler(...)``): ``on_ready(runner)`` once the bus is started and
    the workers added so far are starting; ``on_error(runner, worker, error)`` when a worker's
    run fails.

    Args:
        name: Unique among the runners of a channel; defaults to ``runner-<random>``.
        bus: The bus to host the workers on; defaults to a new in-process bus. The runner
            starts it if it is not started, and then also stops it at the end.
        handle_sigint: Cancel the workers on SIGINT while running.
        handle_sigterm: Drain on SIGTERM while running: running jobs finish within
            ``grace_period``, then the workers end (a second SIGTERM cancels). On by default,
            unlike pipecat: SIGTERM is how Kubernetes stops a pod.
        grace_period: Seconds running jobs get to finish on a graceful end (SIGTERM included).
        cancel_timeout: Seconds workers get to end after a cancel before their tasks are
            cancelled outright.
        handle_signals: Sets both ``handle_sigint`` and ``handle_sigterm`` (natsbus's older
            spelling).
        task_manager: The task manager for the runner's, bus's and workers' tasks.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        bus: WorkerBus | None = None,
        handle_sigint: bool = True,
        handle_sigterm: bool = True,
        grace_period: float = 30.0,
        cancel_timeout: float = 10.0,
        handle_signals: bool | None = None,
        task_manager: TaskManager | None = None,
    ) -> None:
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0, got {grace_period!r}")
        if handle_signals is not None:
            handle_sigint = handle_sigterm = handle_signals
        self._name = name or f"runner-{secrets.token_hex(4)}"
        self._bus = bus if bus is not None else AsyncQueueBus()
        self._registry = WorkerRegistry(self._name)
        self._grace_period = grace_period
        self._handle_sigint = handle_sigint
        self._handle_sigterm = handle_sigterm
        self._task_manager = task_manager or TaskManager()
        self._register_event_handler("on_ready")
        self._register_event_handler("on_error")
        self._cancel_timeout = cancel_timeout
        self._workers: dict[str, BaseWorker] = {}
        self._handles: dict[str, WorkerHandle] = {}
        self._hosts: dict[str, asyncio.Task[None]] = {}
        self._known_runners: set[str] = set()
        self._state = RunnerState.CREATED
        self._ending = False
        self._cancelled = False
        self._all_ended = False
        # While run() waits for the end: resolved once cancelled, and once every worker ended.
        # Futures rather than two events and two tasks waiting on them: an idle session's
        # runner waits all its life (issue #17).
        self._cancel_waiter: asyncio.Future[None] | None = None
        self._end_waiter: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._channels: dict[str, ChannelClient] = {}

    def __repr__(self) -> str:
        return f"<WorkerRunner {self._name!r} {self._state.value}>"

    def __str__(self) -> str:
        return self._name

    @property
    def name(self) -> str:
        """The runner's name."""
        return self._name

    @property
    def bus_targets(self) -> frozenset[str]:
        """None targeted: what a runner handles (end, cancel, registry, ready) is broadcast.

        So a network bus never subscribes to a runner's name, which is per process (a pod's
        name) and so cannot be in a NATS user's permissions written in advance.
        """
        return frozenset()

    @property
    def bus(self) -> WorkerBus:
        """The bus the workers are hosted on."""
        return self._bus

    @property
    def registry(self) -> WorkerRegistry:
        """The registry of ready workers, this runner's and the others'."""
        return self._registry

    @property
    def task_manager(self) -> TaskManager:
        """The task manager shared with the bus and the workers."""
        return self._task_manager

    @property
    def state(self) -> RunnerState:
        """Where the runner is in its life."""
        return self._state

    @property
    def draining(self) -> bool:
        """Whether the runner is ending or cancelling its workers (not ready for new work)."""
        return self._ending

    @property
    def cancelled(self) -> bool:
        """Whether the runner was cancelled (SIGINT, ``BusCancelMessage``, :meth:`cancel`)."""
        return self._cancelled

    @property
    def grace_period(self) -> float:
        """Seconds running jobs get to finish on a graceful end."""
        return self._grace_period

    def add_channel(self, channel: str, client: ChannelClient) -> None:
        """Let the workers ask jobs on another channel: ``self.job(w, ..., channel=channel)``.

        The answers come back to ``client`` (its bus instance), which hands them to the
        worker that asked; the runner does not own the client (its owner closes it).

        Args:
            channel: The name workers give as ``channel=``.
            client: The client on that channel.
        """
        self._channels[channel] = client

    def channel(self, channel: str) -> ChannelClient:
        """The client workers ask ``channel`` through.

        Raises:
            UnknownChannelError: No client was added for it (:meth:`add_channel`).
        """
        client = self._channels.get(channel)
        if client is None:
            raise UnknownChannelError(channel, sorted(self._channels))
        return client

    def admits_end(self, message: BusMessage) -> bool:
        """Whether an end or cancel message may stop this runner's workers (all may, here).

        A service runner (:class:`natsbus.sessions.ServiceRunner`) admits only its own
        deployment's.
        """
        return True

    def get_worker(self, name: str) -> BaseWorker | None:
        """Return the worker of that name hosted here, or None."""
        return self._workers.get(name)

    async def add_workers(self, *workers: BaseWorker) -> None:
        """Host workers: attach them to the bus, and start them if the runner is running.

        As in pipecat, a worker whose name is already hosted here is logged and skipped, and
        so is every worker once the runner has finished.

        Args:
            *workers: The workers.
        """
        if self._state is RunnerState.FINISHED:
            logger.error("%r has finished; %s not added", self, [w.name for w in workers])
            return
        for worker in workers:
            if worker.name in self._workers:
                logger.error("%r already hosts a worker named %r; skipped", self, worker.name)
                continue
            if worker.state not in (WorkerState.CREATED, WorkerState.ATTACHED):
                logger.error("%r has started on another runner; skipped", worker)
                continue
            handle = await worker.attach(
                registry=self._registry,
                bus=self._bus,
                worker_runner=self,
                grace_period=self._grace_period,
            )
            if handle is None:
                continue
            self._workers[worker.name] = worker
            self._handles[worker.name] = handle
            if self._state is RunnerState.RUNNING:
                self._start(worker)

    def release(self, worker: BaseWorker) -> None:
        """Forget a worker that was added here but moved to another runner before it started."""
        if self._workers.get(worker.name) is worker and worker.name not in self._hosts:
            del self._workers[worker.name]
            del self._handles[worker.name]

    async def run(self) -> None:
        """Run every worker until all have ended, then stop the bus if the runner started it.

        Raises:
            RuntimeError: The runner already ran.
        """
        if self._state is not RunnerState.CREATED:
            raise RuntimeError(f"{self!r} runs only once")
        self._state = RunnerState.RUNNING
        owns_bus = self._bus.state is BusState.CREATED
        signals = SignalHandlers(
            on_term=lambda: self._spawn(self.end("SIGTERM")),
            on_int=lambda: self._spawn(self.cancel("SIGINT")),
        )
        if self._handle_sigint or self._handle_sigterm:
            signals.install(sigint=self._handle_sigint, sigterm=self._handle_sigterm)
        try:
            await self._bus.setup(self._task_manager)
            await self._bus.subscribe(self)
            if owns_bus:
                await self._bus.start()
            await self._send_registry()
            for worker in list(self._workers.values()):
                self._start(worker)
            self._check_all_ended()
            await self._call_event_handler("on_ready")
            await self._wait_all_ended()
        finally:
            signals.remove()
            await cancel_and_wait(list(self._hosts.values()))
            await cancel_and_wait(list(self._background))
            # What the workers spawned and left running ends with the run.
            await self._task_manager.cancel_all()
            await self._close_bus(owns_bus)
            self._state = RunnerState.FINISHED

    async def end(self, reason: str | None = None) -> None:
        """End every worker gracefully; idempotent.

        No new jobs are taken, running jobs finish within the grace period, then the workers
        end.

        Args:
            reason: Why, for the logs and the workers.
        """
        if self._ending:
            return
        self._ending = True
        logger.info("%s: ending (%s)", self, reason)
        # A network bus stops taking job requests here (another replica takes them); cancels
        # and replies keep flowing to the jobs still running.
        await self._bus.pause_jobs()
        for worker in self._roots():
            self._handles[worker.name].drain()  # at once: a queued request must not start
            # Local: replicas of this worker on other runners go on.
            await self._bus.send(
                BusEndWorkerLocalMessage(reason, source=self._name, target=worker.name)
            )

    async def cancel(self, reason: str | None = None) -> None:
        """Cancel every worker: running jobs are cancelled and answered ``cancelled``.

        Args:
            reason: Why, for the logs and the workers.
        """
        if self._cancelled:
            return
        self._ending = True
        self._cancelled = True
        _resolve(self._cancel_waiter)
        logger.info("%s: cancelling (%s)", self, reason)
        for worker in self._roots():
            await self._bus.send(
                BusCancelWorkerLocalMessage(reason, source=self._name, target=worker.name)
            )

    async def on_bus_message(self, message: BusMessage) -> None:
        """Handle the runner's messages: end, cancel, add-worker, ready and registry."""
        if isinstance(message, (BusEndMessage, BusCancelMessage)) and not self.admits_end(message):
            return
        if isinstance(message, BusEndMessage):
            await self.end(message.reason)
        elif isinstance(message, BusCancelMessage):
            await self.cancel(message.reason)
        elif isinstance(message, BusWorkerRegistryMessage):
            await self._on_registry(message)
        elif isinstance(message, BusWorkerReadyMessage):
            if message.runner != self._name:
                await self._registry.register(_remote(message.source, message))
        elif isinstance(message, BusAddWorkerMessage):
            # Every runner of an in-process bus sees it: only the parent's runner hosts.
            if message.source in self._workers and isinstance(message.worker, BaseWorker):
                await self.add_workers(message.worker)
        elif isinstance(message, BusWorkerErrorMessage):
            logger.warning("worker %r reported an error: %s", message.source, message.error)

    # --- internals --------------------------------------------------------------------------

    def _roots(self) -> list[BaseWorker]:
        return [w for w in self._workers.values() if w.parent is None]

    def _start(self, worker: BaseWorker) -> None:
        if worker.name in self._hosts:
            return
        self._all_ended = False
        self._hosts[worker.name] = asyncio.create_task(
            self._host(worker), name=f"natsbus-worker[{worker.name}]"
        )
        if self._ending:
            # Added while ending (a child, say): it ends with the rest.
            if self._cancelled:
                self._handles[worker.name].begin_stop(graceful=False, reason="runner cancelled")
            else:
                self._handles[worker.name].begin_stop(graceful=True, reason="runner ending")

    async def _host(self, worker: BaseWorker) -> None:
        try:
            await self._handles[worker.name].run(lambda: self._announce(worker))
        except Exception as error:
            logger.exception("%s: worker %r failed", self, worker.name)
            await self._call_event_handler("on_error", worker, error)
        finally:
            self._registry.forget(worker.name)
            try:
                await self._bus.unsubscribe(worker)
            except Exception:
                logger.exception("%s: could not unsubscribe %r", self, worker.name)
            self._hosts.pop(worker.name, None)
            self._workers.pop(worker.name, None)
            self._handles.pop(worker.name, None)
            self._check_all_ended()

    async def _announce(self, worker: BaseWorker) -> None:
        active = self._handles[worker.name].will_be_active
        await self._bus.send(
            BusWorkerReadyMessage(
                self._name,
                worker.parent,
                active,
                worker.bridged,
                worker.started_at,
                source=worker.name,
            )
        )
        await self._registry.register(
            WorkerReadyData(
                worker.name,
                self._name,
                worker.parent,
                active,
                worker.bridged,
                worker.started_at,
                local=True,
            )
        )
        await self._send_registry()

    async def _send_registry(self) -> None:
        entries = [
            WorkerRegistryEntry(w.name, w.parent, w.active, w.bridged, w.started_at)
            for w in self._workers.values()
            if w.started_at is not None
        ]
        if entries:  # as pipecat: an empty snapshot tells nobody anything
            await self._bus.send(BusWorkerRegistryMessage(self._name, entries, source=self._name))

    async def _on_registry(self, message: BusWorkerRegistryMessage) -> None:
        if message.runner == self._name:
            return
        for entry in message.workers:
            await self._registry.register(
                WorkerReadyData(
                    entry.name,
                    message.runner,
                    entry.parent,
                    entry.active,
                    entry.bridged,
                    entry.started_at,
                )
            )
        if message.runner not in self._known_runners:
            # A runner we did not know: it does not know our workers either.
            self._known_runners.add(message.runner)
            await self._send_registry()

    def _check_all_ended(self) -> None:
        if self._state is RunnerState.RUNNING and not self._hosts:
            self._all_ended = True
            _resolve(self._end_waiter)

    async def _wait_all_ended(self) -> None:
        loop = asyncio.get_running_loop()
        # Once resolved they stay so: a worker started after the end does not undo it.
        ended = self._end_waiter = loop.create_future()
        cancelled = self._cancel_waiter = loop.create_future()
        if self._all_ended:
            ended.set_result(None)
        if self._cancelled:
            cancelled.set_result(None)
        try:
            await asyncio.wait((ended, cancelled), return_when=asyncio.FIRST_COMPLETED)
            if not ended.done():
                try:
                    await asyncio.wait_for(asyncio.shield(ended), self._cancel_timeout)
                except TimeoutError:
                    logger.error(
                        "%s: workers %s did not end within %.1f s of the cancel; cancelling them",
                        self,
                        list(self._hosts),
                        self._cancel_timeout,
                    )
        finally:
            self._end_waiter = self._cancel_waiter = None
            ended.cancel()
            cancelled.cancel()

    async def _close_bus(self, owns_bus: bool) -> None:
        try:
            if self._bus.state is BusState.STARTED:
                await self._bus.unsubscribe(self)
            if owns_bus:
                # stop() stores the final answers before it releases unanswered jobs.
                await self._bus.stop()
        except Exception:
            logger.exception("%s: stopping the bus failed", self)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _remote(name: str, message: BusWorkerReadyMessage) -> WorkerReadyData:
    return WorkerReadyData(
        name,
        message.runner,
        message.parent,
        message.active,
        message.bridged,
        message.started_at,
    )


class PipelineRunner(WorkerRunner):
    """Deprecated: pipecat's former name of :class:`WorkerRunner` (it warns when made)."""

    def __init__(self, **kwargs: Any) -> None:
        warnings.warn(
            "PipelineRunner is deprecated; use WorkerRunner",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(**kwargs)


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a waiter of :meth:`WorkerRunner._wait_all_ended`, if it is waiting."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
