"""The garbage collector set for a process that moves messages.

A bus allocates a few objects per message and keeps a flood of them queued for a while. Every
so often CPython's collector walks every object the process holds, modules, classes and the
libraries it imported included: in a pipecat process, a pause of tens of milliseconds that a
cancel waiting behind the flood feels in full. ``gc.freeze()`` once start-up is over moves
what start-up made out of the collector's reach (it is never collected anyway), so those walks
cover only what was made since.

The thresholds are left as they are, on purpose: raising the youngest generation's (10,000
instead of 700, tried here) collects less often but makes each collection walk the young
messages queued behind a flood: pauses of 2 to 11 ms, where 700 keeps them under 0.4 ms
(``bench/pipecat.py``, section 3, measured with ``gc.callbacks``).

``natsbus run`` and ``natsbus serve`` call :func:`tune_collector` once the worker or the
sessions are set up; a program that hosts buses itself can call it at the same point. It is a
process-wide setting, which is why a bus never makes it on its own.
"""

from __future__ import annotations

import gc

__all__ = ["tune_collector"]


def tune_collector() -> None:
    """Freeze what start-up made, out of the collector's reach (see the module).

    Call it once start-up is over; calling it again freezes what was made since.
    """
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
