"""Signal handling for a runner process: SIGTERM drains, SIGINT cancels."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

__all__ = ["SignalHandlers"]

logger = logging.getLogger(__name__)


class SignalHandlers:
    """Install SIGTERM and SIGINT handlers on the running loop for as long as a runner runs.

    The first SIGTERM calls ``on_term`` (drain: finish running jobs, then end); SIGINT, or a
    second SIGTERM, calls ``on_int`` (cancel). Where signals cannot be handled (not the main
    thread, or Windows), nothing is installed and a debug line says so.

    Args:
        on_term: Called on the first SIGTERM.
        on_int: Called on SIGINT and on any later SIGTERM.
    """

    def __init__(self, *, on_term: Callable[[], None], on_int: Callable[[], None]) -> None:
        self._on_term = on_term
        self._on_int = on_int
        self._terms = 0
        self._installed: list[signal.Signals] = []

    def install(self, *, sigterm: bool = True, sigint: bool = True) -> None:
        """Install the handlers on the running loop (for the signals asked for)."""
        loop = asyncio.get_running_loop()
        wanted = ((signal.SIGTERM, self._term, sigterm), (signal.SIGINT, self._int, sigint))
        for signum, callback in ((s, c) for s, c, on in wanted if on):
            try:
                loop.add_signal_handler(signum, callback)
            except (NotImplementedError, RuntimeError, ValueError):
                logger.debug("cannot handle %s here; left alone", signum.name)
                continue
            self._installed.append(signum)

    def remove(self) -> None:
        """Remove the handlers (the default dispositions come back)."""
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()

    def _term(self) -> None:
        self._terms += 1
        if self._terms == 1:
            logger.info("SIGTERM: draining (running jobs finish, then the workers end)")
            self._on_term()
        else:
            logger.warning("SIGTERM again: cancelling")
            self._on_int()

    def _int(self) -> None:
        logger.warning("SIGINT: cancelling")
        self._on_int()
