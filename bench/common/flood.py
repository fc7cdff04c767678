"""Figures shared by the bench scripts: verdicts, percentiles, and a system message's run
through a flood of data messages (its latency, and how much of the flood it overtook)."""

from __future__ import annotations

import bisect
import time


def verdict(met: bool) -> str:
    return "OK" if met else "MISSED"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def burn(seconds: float) -> None:
    """Hold the CPU, as a data handler doing real work would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class FloodTally:
    """When each data message of a flood was handled, and each system message's fate.

    For each system message it counts the data messages still queued when it was sent (all
    sent, minus those already handled by then) and how many of those were handled before it:
    the rest it overtook.
    """

    def __init__(self, flood: int) -> None:
        self.flood = flood
        self.data_done_at: list[float] = []
        self.system_latencies: list[float] = []
        self.overtaken: list[tuple[int, int]] = []  # (overtaken, queued when sent)

    def data_handled(self) -> bool:
        """Note a data message handled now; True once the whole flood was."""
        self.data_done_at.append(time.time())
        return len(self.data_done_at) == self.flood

    def system_handled(self, sent_at: float) -> None:
        """Note a system message sent at ``sent_at`` (Unix time) and handled now."""
        self.system_latencies.append(time.time() - sent_at)
        handled_before_send = bisect.bisect_left(self.data_done_at, sent_at)
        queued = self.flood - handled_before_send
        handled_meanwhile = len(self.data_done_at) - handled_before_send
        self.overtaken.append((queued - handled_meanwhile, queued))

    def share_overtaken(self) -> float:
        """Of the data queued ahead of the system messages, the share they overtook."""
        queued = sum(q for _, q in self.overtaken)
        return sum(o for o, _ in self.overtaken) / queued if queued else 0.0
