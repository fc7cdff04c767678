"""Named event handlers, as pipecat's objects have them: ``@obj.event_handler("on_ready")``.

A class declares its events once (:meth:`EventHandlers._register_event_handler`); users attach
handlers with :meth:`~EventHandlers.event_handler` or :meth:`~EventHandlers.add_event_handler`;
the class fires them with :meth:`~EventHandlers._call_event_handler`. Each handler is called
with the object first, then the event's arguments (``handler(worker, args)``).

By default every handler runs in a task of its own, so a slow handler never holds up the bus
lane that fired it; an event registered with ``sync=True`` awaits its handlers in place.
A handler that raises is logged and the others still run.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["EventHandlers"]

logger = logging.getLogger(__name__)

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


_NO_EVENTS: Final[dict[str, bool]] = {}
"""The declared events of an object that declared none (shared, never mutated)."""
_NO_HANDLERS: Final[dict[str, list[Callable[..., Any]]]] = {}
"""The handlers of an object none were attached to (shared, never mutated)."""
_DECLARED: dict[tuple[int, str, bool], dict[str, bool]] = {}
"""Declared-event dicts, interned: ``(id(before), name, sync)`` -> before plus that event.

Objects of one class declare the same events in the same order, so they end up sharing one
dict instead of holding a copy each (a worker declares 15). Every dict here is kept alive by
this cache, so an ``id`` in a key is never reused.
"""
_DECLARED_MAX: Final = 4096
"""Interned dicts kept at most: events named per object are copied, not cached for ever."""


class EventHandlers:
    """Mixin: named events that handlers can be attached to.

    The state lives in class attributes until it is first changed, so a subclass needs no
    ``__init__`` call for it, and an object with no handlers attached holds none of its own.
    """

    # Event name -> sync; shared with the objects that declared the same events (never
    # mutated: declaring an event replaces it, see _DECLARED).
    _event_sync: dict[str, bool] = _NO_EVENTS
    # Event name -> handlers, for the events a handler was ever attached to.
    _event_handlers: dict[str, list[Callable[..., Any]]] = _NO_HANDLERS
    _event_tasks: set[asyncio.Task[None]] | None = None

    def _register_event_handler(self, event_name: str, *, sync: bool = False) -> None:
        """Declare an event (once per instance); ``sync`` awaits its handlers in place."""
        declared = self._event_sync
        if event_name in declared:
            return  # the first declaration stands
        key = (id(declared), event_name, sync)
        extended = _DECLARED.get(key)
        if extended is None:
            extended = {**declared, event_name: sync}
            if len(_DECLARED) < _DECLARED_MAX:
                _DECLARED[key] = extended
        self._event_sync = extended

    @property
    def event_names(self) -> tuple[str, ...]:
        """The events handlers can be attached to."""
        return tuple(self._event_sync)

    def add_event_handler(self, event_name: str, handler: Callable[..., Any]) -> None:
        """Call ``handler(self, *args)`` whenever ``event_name`` fires.

        Args:
            event_name: One of :attr:`event_names`.
            handler: A coroutine function or a plain function.

        An unknown event name is logged and ignored, as pipecat does: an app written for
        pipecat may attach handlers for events natsbus never fires.
        """
        if event_name not in self._event_sync:
            logger.warning(
                "%r has no event %r; its events are %s", self, event_name, sorted(self._event_sync)
            )
            return
        handlers = self._event_handlers
        if handlers is _NO_HANDLERS:
            handlers = self._event_handlers = {}
        handlers.setdefault(event_name, []).append(handler)

    def remove_event_handler(self, event_name: str, handler: Callable[..., Any]) -> None:
        """Detach a handler (a no-op if it is not attached)."""
        handlers = self._event_handlers.get(event_name)
        if handlers is not None and handler in handlers:
            handlers.remove(handler)

    def event_handler(self, event_name: str) -> Callable[[_Handler], _Handler]:
        """Attach the decorated function to an event (as :meth:`add_event_handler` does).

        Example::

            @worker.event_handler("on_activated")
            async def activated(worker, args): ...
        """

        def decorator(handler: _Handler) -> _Handler:
            self.add_event_handler(event_name, handler)
            return handler

        return decorator

    async def _call_event_handler(self, event_name: str, *args: Any) -> None:
        """Fire an event: run each attached handler (in its own task unless ``sync``)."""
        handlers = self._event_handlers.get(event_name)
        if not handlers:
            return
        sync = self._event_sync[event_name]
        for handler in list(handlers):
            if sync:
                await self._run_event_handler(event_name, handler, args)
            else:
                task = asyncio.get_running_loop().create_task(
                    self._run_event_handler(event_name, handler, args),
                    name=f"natsbus-event[{event_name}]",
                )
                tasks = self._event_tasks
                if tasks is None:
                    tasks = self._event_tasks = set()
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def _run_event_handler(
        self, event_name: str, handler: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        try:
            result = handler(self, *args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # One handler's bug must not stop the others, nor the lane that fired the event.
            logger.exception("%r: event handler for %r raised", self, event_name)

    async def _wait_event_handlers(self, timeout: float = 5.0) -> None:
        """Wait for the handlers still running (not the caller's own task), then cancel them.

        Args:
            timeout: Seconds they get to finish; one still running then is cancelled (a
                handler waiting for its object's end would otherwise wait for ever).
        """
        current = asyncio.current_task()
        tasks = [t for t in self._event_tasks or () if t is not current]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            logger.warning("%r: event handler %s still running; cancelled", self, task.get_name())
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=timeout)
