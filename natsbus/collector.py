"""The garbage collector set for a process that moves messages.

A bus allocates a few objects per message and keeps a flood of them queued for a while; with
CPython's default thresholds (700, 10, 10) the collector then runs every few hundred messages
and, now and then, walks every object the process holds, modules and classes included: a
pause of milliseconds that a cancel waiting behind the flood feels in full. Two settings cut
that, for a process whose start-up is over:

* ``gc.freeze()`` moves what start-up made (modules, classes, the bus's own structures) out
  of the collector's reach: they are never collected anyway;
* a first-generation threshold of 10,000 collects young objects 14 times less often; each
  collection then has more to look at, but messages that were handled are freed by their
  reference counts long before, so it finds little.

``natsbus run`` and ``natsbus serve`` call :func:`tune_collector` once the worker or the
sessions are started; a program that hosts buses itself can call it at the same point. It is a
process-wide setting, which is why a bus never makes it on its own.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "tune_collector"]

YOUNG_THRESHOLD: Final = 10_000
"""Allocations, less deallocations, between two collections of the youngest generation."""


def tune_collector(*, young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Freeze what start-up made and collect young objects less often (see the module).

    Call it once start-up is over; calling it again freezes what was made since.

    Args:
        young_threshold: The first generation's threshold; the older ones keep theirs. A
            lower current threshold is raised to it, a higher one is kept.
    """
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, young_threshold), middle, old)
