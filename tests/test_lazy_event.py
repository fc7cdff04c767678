"""LazyEvent behaves as asyncio.Event does, and holds no waiter list while nobody waits."""

from __future__ import annotations

import asyncio

from natsbus._lazy_event import LazyEvent


async def test_set_wakes_every_waiter_even_if_cleared_before_they_run() -> None:
    event = LazyEvent()
    assert not event.is_set()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    event.set()
    event.clear()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True, True, True]
    assert event._waiters is None


async def test_a_set_event_returns_at_once_and_a_cancelled_waiter_leaves() -> None:
    assert await LazyEvent(True).wait() is True
    event = LazyEvent()
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    assert event._waiters is not None
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert event._waiters is None
    later = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(later, 5) is True
