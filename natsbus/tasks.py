"""Background tasks with an owner: :class:`TaskManager` and :func:`cancel_and_wait`.

pipecat hands a task manager to its bus, runner and workers (``bus.setup(task_manager)``); natsbus
keeps the same spelling. A task manager keeps a strong reference to every task it made until the
task ends (a bare ``create_task`` result may otherwise be collected mid-flight), names them, logs
a task that dies of an exception nobody will read, and cancels tasks without swallowing a
cancellation aimed at the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from contextvars import Context
from typing import Any, TypeVar

__all__ = ["TaskManager", "cancel_and_wait"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_RECANCEL_INTERVAL = 0.5
"""Seconds before a task that has not ended after its cancel is cancelled again."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float | None = None) -> None:
    """Cancel tasks and wait for each to end, without swallowing the caller's cancellation.

    Awaiting a cancelled task raises :class:`asyncio.CancelledError`, which looks just like a
    cancel aimed at the caller; the caller's ``cancelling()`` count tells them apart. The
    current task is skipped (a task cannot await itself).

    Args:
        tasks: Tasks owned by the caller.
        timeout: Seconds to wait in all; a task that ignores its cancel longer is logged and
            left behind (None waits for ever).

    Raises:
        asyncio.CancelledError: The caller itself was cancelled while waiting.
    """
    current = asyncio.current_task()
    others = [task for task in tasks if task is not current and not task.done()]
    for task in others:
        task.cancel()
    if not others:
        return
    # asyncio.wait neither cancels what it waits for nor loses the caller's cancellation. A
    # task still running after a while is cancelled again: CPython 3.11's wait_for can swallow
    # a cancel that lands as its inner future completes, and a loop around it then runs on.
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending = set(others)
    while pending:
        wait = (
            _RECANCEL_INTERVAL
            if deadline is None
            else min(_RECANCEL_INTERVAL, deadline - loop.time())
        )
        if wait <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=wait)
        for task in pending:
            task.cancel()
    for task in pending:
        logger.error("task %r ignored its cancel for %.1f s", task.get_name(), timeout or 0.0)
    others = [task for task in others if task.done()]
    before = current.cancelling() if current is not None else 0
    for task in others:
        try:
            await task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > before:
                raise
        except Exception:
            # Loops catch their handlers' errors, so this is a bug in natsbus: say so loudly.
            logger.exception("task %r failed", task.get_name())


class TaskManager:
    """Creates, tracks and cancels the background tasks of a bus, runner or worker.

    Example::

        tasks = TaskManager()
        task = tasks.create_task(poll(), "poller")
        ...
        await tasks.cancel_task(task)
        await tasks.cancel_all()
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def create_task(
        self,
        coroutine: Coroutine[Any, Any, _T],
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[_T]:
        """Run a coroutine in a task this manager keeps until it ends.

        Args:
            coroutine: The coroutine.
            name: The task's name (for logs and :meth:`current_tasks`).
            context: The contextvars context to run it in (default: a copy of the current one).

        Returns:
            The task.
        """
        task = asyncio.get_running_loop().create_task(coroutine, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def cancel_task(self, task: asyncio.Task[Any], timeout: float | None = 1.0) -> None:
        """Cancel a task and wait for it to end (at most ``timeout`` seconds).

        Args:
            task: The task (made here or elsewhere).
            timeout: Seconds to wait; a task that ignores its cancel longer is logged and left.
        """
        await cancel_and_wait((task,), timeout)

    async def cancel_all(self, timeout: float | None = 5.0) -> None:
        """Cancel every task still running (except the caller's own) and wait for them."""
        current = asyncio.current_task()
        await cancel_and_wait([t for t in self._tasks if t is not current], timeout)

    def current_tasks(self) -> Sequence[asyncio.Task[Any]]:
        """The tasks made here that have not ended."""
        return [task for task in self._tasks if not task.done()]

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nobody may ever await it: say so rather than lose the error.
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())
