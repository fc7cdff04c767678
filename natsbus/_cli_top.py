"""``natsbus top``: a live view of one or more natsbus processes, from their ``/metrics``.

Every second it scrapes each endpoint (``natsbus run --http-port``; a port-forward to a pod
will do), adds them up, and shows per lane the messages received per second, the dispatch
latency (p50 and p99 over the last second, from the histogram's buckets) and the messages
queued, and per worker the jobs answered by status. In a terminal it redraws in place.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["add_top_command", "run_top"]

_LANES = ("system", "data")
_CLEAR = "\x1b[H\x1b[2J"


@dataclass
class _Sample:
    """What the endpoints said at one moment, added up."""

    received: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    latency: dict[str, defaultdict[float, float]] = field(default_factory=dict)
    queued: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    jobs: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    failed: list[str] = field(default_factory=list)


def add_top_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``top`` to the ``natsbus`` command."""
    top = commands.add_parser("top", help="a live view of processes' lanes and jobs")
    top.add_argument("url", nargs="+", help="a /metrics URL (natsbus run --http-port)")
    top.add_argument(
        "--interval", type=float, default=1.0, help="seconds between two views (default: 1)"
    )
    top.add_argument("--count", type=int, default=0, help="views to show, 0 for ever")


async def run_top(args: argparse.Namespace) -> int:
    """Show the view until interrupted (or ``--count`` views); the exit status."""
    redraw = sys.stdout.isatty()
    previous = await _sample(args.url)
    shown = 0
    while args.count == 0 or shown < args.count:
        await asyncio.sleep(args.interval)
        current = await _sample(args.url)
        view = _render(previous, current, args.interval)
        print((_CLEAR if redraw else "") + view, flush=True)
        previous = current
        shown += 1
    return 0


async def _sample(urls: Sequence[str]) -> _Sample:
    sample = _Sample()
    texts = await asyncio.gather(*(asyncio.to_thread(_fetch, url) for url in urls))
    for url, text in zip(urls, texts, strict=True):
        if text is None:
            sample.failed.append(url)
            continue
        for family in text_string_to_metric_families(text):
            for metric in family.samples:
                labels = metric.labels
                if metric.name == "natsbus_messages_received_total":
                    sample.received[labels["lane"]] += metric.value
                elif metric.name == "natsbus_dispatch_latency_seconds_bucket":
                    bound = float(labels["le"])
                    sample.latency.setdefault(labels["lane"], defaultdict(float))[bound] += (
                        metric.value
                    )
                elif metric.name == "natsbus_subscriber_queue_depth":
                    sample.queued[labels["lane"]] += metric.value
                elif metric.name == "natsbus_jobs_total":
                    sample.jobs[(labels["worker"], labels["status"])] += metric.value
    return sample


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text: str = response.read().decode()
            return text
    except OSError:
        return None


def _quantile(
    before: Mapping[float, float], after: Mapping[float, float], q: float
) -> float | None:
    """The bucket bound below which ``q`` of the dispatches between two samples fell."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]  # cumulative, per bucket bound
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return bound
    return bounds[-1]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 60 s" if seconds == float("inf") else f"<= {seconds * 1000:g} ms"


def _render(before: _Sample, after: _Sample, interval: float) -> str:
    lines = ["lane     received/s  dispatch p50   dispatch p99   queued"]
    for lane in _LANES:
        rate = (after.received[lane] - before.received[lane]) / interval
        none: dict[float, float] = {}
        old, new = before.latency.get(lane, none), after.latency.get(lane, none)
        p50, p99 = _quantile(old, new, 0.5), _quantile(old, new, 0.99)
        queued = int(after.queued[lane])
        lines.append(f"{lane:<8} {rate:>10.0f}  {_ms(p50):<13}  {_ms(p99):<13}  {queued:>6}")
    lines.append("")
    lines.append("worker               status       answered  per second")
    for worker, status in sorted(after.jobs):
        total = after.jobs[(worker, status)]
        rate = (total - before.jobs.get((worker, status), 0.0)) / interval
        lines.append(f"{worker:<20} {status:<12} {total:>8.0f}  {rate:>10.1f}")
    if len(lines) == len(_LANES) + 3:
        lines.append("(no job answered yet)")
    lines.extend(f"could not scrape {url}" for url in after.failed)
    return "\n".join(lines)
