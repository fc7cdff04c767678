"""A pipecat worker app (examples/pipecat_app.py) runs on natsbus, in process and over NATS.

The app is written against pipecat's API; only its imports name natsbus. The same log comes
out of pipecat-ai 1.14.0 when the imports are switched back (checked by hand, see the app).
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from natsbus import AsyncQueueBus, NatsBus

from helpers.tools import ROOT

sys.path.insert(0, str(ROOT / "examples"))
from pipecat_app import run_app


def check(log: list[tuple[Any, ...]]) -> None:
    events = [entry[1:] for entry in log if entry[0] == "event"]
    by_worker = {
        name: [(kind, data) for worker, kind, data in events if worker == name]
        for name in ("researcher", "writer")
    }
    assert by_worker["researcher"] == [("update", {"progress": 50}), ("update", {"progress": 100})]
    assert by_worker["writer"] == [
        ("stream_start", {"content_type": "text"}),
        ("stream_data", {"word": "buses"}),
        ("stream_data", {"word": "carry"}),
        ("stream_data", {"word": "frames"}),
        ("stream_end", {"words": 3}),
    ]
    rest = [entry for entry in log if entry[0] != "event"]
    assert rest == [
        ("responses", {"researcher": {"facts": ["fast", "durable"]}, "writer": {"words": 3}}),
        ("handed over", False),
        ("presenter active", True, "fast durable"),
        ("echo", "FAST DURABLE"),
    ]


async def test_the_pipecat_app_runs_in_process() -> None:
    check(await run_app(AsyncQueueBus(), timeout=30))


async def test_the_pipecat_app_runs_over_nats(nats_url: str) -> None:
    bus = NatsBus(servers=nats_url, channel=f"app-{uuid.uuid4().hex[:8]}")
    check(await run_app(bus, timeout=30))
