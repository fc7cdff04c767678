"""The worker bus: pub/sub between workers and the runner, with per-subscriber priority lanes.

- :class:`WorkerBus` is the abstract base: subscriptions, lifecycle, routing of sent messages.
- :class:`AsyncQueueBus` is the in-process implementation.
- :class:`BusSubscriber` is the mixin for anything that receives messages.
- :mod:`natsbus.bus.dispatch` runs the per-subscriber system/data lanes
  (:mod:`natsbus.bus.lanes`, bounded by :class:`QueueLimits`) and holds the
  :class:`DispatchObserver` seam for metrics and tracing.
- :mod:`natsbus.bus.statistics` holds what :meth:`WorkerBus.statistics` reports.
"""

from natsbus.bus.base import WorkerBus
from natsbus.bus.dispatch import (
    DEFAULT_TIME_SLICE,
    DispatcherStatistics,
    DispatchObserver,
    Lane,
    LaneStatistics,
    NoOpDispatchObserver,
    SubscriberDispatcher,
)
from natsbus.bus.limits import QueueLimits
from natsbus.bus.local import AsyncQueueBus
from natsbus.bus.statistics import (
    BusState,
    BusStatistics,
    ConsumerStatistics,
    NetworkCounts,
    NetworkStatistics,
)
from natsbus.bus.subscriber import BusSubscriber, union_targets

__all__ = [
    "DEFAULT_TIME_SLICE",
    "AsyncQueueBus",
    "BusState",
    "BusStatistics",
    "BusSubscriber",
    "ConsumerStatistics",
    "DispatchObserver",
    "DispatcherStatistics",
    "Lane",
    "LaneStatistics",
    "NetworkCounts",
    "NetworkStatistics",
    "NoOpDispatchObserver",
    "QueueLimits",
    "SubscriberDispatcher",
    "WorkerBus",
    "union_targets",
]
