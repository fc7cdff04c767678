"""Readiness of a process: its buses connected and subscribed, its runners not draining.

Liveness needs no check of its own: the HTTP endpoint answers ``/healthz`` from the event loop,
so an answer proves the loop is running, and a loop blocked for good lets the probe time out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from natsbus.bus.base import WorkerBus

if TYPE_CHECKING:
    from natsbus.workers.runner import WorkerRunner

__all__ = ["Health"]


class Health:
    """The checks behind ``/readyz``: each says why the process is not ready, or nothing.

    Example::

        health = Health()
        health.add_runner(runner)  # the runner, and its bus
        reasons = health.not_ready_reasons()  # [] when ready
    """

    def __init__(self) -> None:
        self._checks: list[Callable[[], list[str]]] = []

    def add_bus(self, bus: WorkerBus) -> None:
        """Ready only while ``bus`` is started, connected and has its consumers in place."""
        self._checks.append(bus.not_ready_reasons)

    def add_runner(self, runner: WorkerRunner) -> None:
        """Ready only while ``runner`` runs, is not draining, and its bus is ready."""

        def check() -> list[str]:
            reasons = []
            if runner.state.value != "running":
                reasons.append(f"runner {runner.name!r} is {runner.state.value}")
            elif runner.draining:
                reasons.append(f"runner {runner.name!r} is draining")
            return reasons + runner.bus.not_ready_reasons()

        self._checks.append(check)

    def add_check(self, check: Callable[[], list[str]]) -> None:
        """Add a check of your own: it returns why the process is not ready (empty if it is)."""
        self._checks.append(check)

    def not_ready_reasons(self) -> list[str]:
        """Run every check; an empty list means ready. A check that raises counts as not ready."""
        reasons: list[str] = []
        for check in self._checks:
            try:
                reasons.extend(check())
            except Exception as error:  # a broken check must not pass for a ready process
                reasons.append(f"check {check!r} failed: {error!r}")
        return reasons

    @property
    def ready(self) -> bool:
        """Whether every check passes."""
        return not self.not_ready_reasons()
