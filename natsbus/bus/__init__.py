"""The worker bus: pub/sub between workers and the runner, with per-subscriber priority lanes.

- :class:`WorkerBus` is the abstract base: subscriptions, lifecycle, routing of sent messages.
- :class:`AsyncQueueBus` is the in-process implementation.
- :class:`BusSubscriber` is the mixin for anything that receives messages.
- :mod:`natsbus.bus.dispatch` holds the per-subscriber system/data lanes and the
  :class:`DispatchObserver` seam for metrics and tracing.
"""

from natsbus.bus.base import BusState, BusStatistics, WorkerBus
from natsbus.bus.dispatch import (
    DEFAULT_TIME_SLICE,
    DispatcherStatistics,
    DispatchObserver,
    Lane,
    LaneStatistics,
    NoOpDispatchObserver,
    SubscriberDispatcher,
)
from natsbus.bus.local import AsyncQueueBus
from natsbus.bus.subscriber import BusSubscriber, union_targets

__all__ = [
    "DEFAULT_TIME_SLICE",
    "AsyncQueueBus",
    "BusState",
    "BusStatistics",
    "BusSubscriber",
    "DispatchObserver",
    "DispatcherStatistics",
    "Lane",
    "LaneStatistics",
    "NoOpDispatchObserver",
    "SubscriberDispatcher",
    "WorkerBus",
    "union_targets",
]
