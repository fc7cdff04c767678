"""An :class:`asyncio.Event` that allocates nothing until someone waits on it.

An ``asyncio.Event`` holds a deque from the start (about 380 bytes traced), though most of
the events an idle session holds (an outbox's room, a worker's end) are never waited on, or
only for a moment. Issue #17 counts every byte of an idle session.
"""

from __future__ import annotations

import asyncio
from typing import Literal

__all__ = ["LazyEvent"]


class LazyEvent:
    """What :class:`asyncio.Event` does, with a list of waiters made by the first ``wait()``.

    The list goes again once its last waiter has returned. As with ``asyncio.Event``, a waiter
    woken by :meth:`set` returns even if :meth:`clear` is called before it runs.

    Args:
        value: Whether the event starts set.
    """

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        waiters = len(self._waiters or ())
        return f"<LazyEvent {'set' if self._value else 'unset'}, waiters:{waiters}>"

    def is_set(self) -> bool:
        """Return whether the event is set."""
        return self._value

    def set(self) -> None:
        """Set the event and wake every waiter."""
        if self._value:
            return
        self._value = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Unset the event: later waiters wait for the next :meth:`set`."""
        self._value = False

    async def wait(self) -> Literal[True]:
        """Wait until the event is set (at once if it is).

        Returns:
            True, as ``asyncio.Event.wait`` does.
        """
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            # The list is only ever replaced here, once empty, so it is still ``waiters``.
            waiters.remove(waiter)
            if not waiters:
                self._waiters = None
