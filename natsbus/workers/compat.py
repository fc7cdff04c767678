"""pipecat's spellings of a worker's private state, which its apps and tests read and set.

pipecat code reaches into ``worker._active``, ``worker._pending_activation``,
``worker._finished_event`` and ``worker._job_groups``; here they are views of the state's one
owner (the worker's lifecycle and job tracker), never copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natsbus._lazy_event import LazyEvent
    from natsbus.workers.lifecycle import Lifecycle
    from natsbus.workers.requests import JobGroup, JobTracker

__all__ = ["PipecatState"]


class PipecatState:
    """Mixin of :class:`~natsbus.workers.BaseWorker`: pipecat's private attribute names."""

    if TYPE_CHECKING:  # provided by BaseWorker
        _lifecycle: Lifecycle
        _tracker: JobTracker

    @property
    def _active(self) -> bool:
        return self._lifecycle.active

    @_active.setter
    def _active(self, value: bool) -> None:
        self._lifecycle.active = value

    @property
    def _pending_activation(self) -> bool:
        return self._lifecycle.pending_activation

    @_pending_activation.setter
    def _pending_activation(self, value: bool) -> None:
        self._lifecycle.pending_activation = value

    @property
    def _finished_event(self) -> LazyEvent:
        return self._lifecycle.ended_event

    @property
    def _job_groups(self) -> dict[str, JobGroup]:
        return self._tracker.groups
