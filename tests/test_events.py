"""Named event handlers: what one object declares or attaches never shows on another."""

from __future__ import annotations

from typing import Any

from natsbus._events import EventHandlers


class Thing(EventHandlers):
    def __init__(self, *events: tuple[str, bool]) -> None:
        for name, sync in events:
            self._register_event_handler(name, sync=sync)


async def test_objects_declaring_the_same_events_share_them_and_not_their_handlers() -> None:
    first, second = Thing(("on_a", False), ("on_b", True)), Thing(("on_a", False), ("on_b", True))
    assert first._event_sync is second._event_sync  # one dict for both: what they save
    seen: list[Any] = []
    first.add_event_handler("on_b", lambda thing, value: seen.append((thing, value)))
    await second._call_event_handler("on_b", 1)
    await first._call_event_handler("on_b", 2)  # sync: run in place
    assert seen == [(first, 2)]
    assert second._event_handlers == {}


async def test_declaring_more_events_leaves_the_others_as_they_were() -> None:
    plain, extended = Thing(("on_a", False)), Thing(("on_a", False))
    extended._register_event_handler("on_c", sync=True)
    extended._register_event_handler("on_a", sync=True)  # the first declaration stands
    assert plain.event_names == ("on_a",)
    assert extended.event_names == ("on_a", "on_c")
    assert extended._event_sync == {"on_a": False, "on_c": True}
    assert Thing(("on_a", True))._event_sync == {"on_a": True}
    assert Thing().event_names == ()
