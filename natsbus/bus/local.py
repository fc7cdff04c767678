"""The in-process :class:`AsyncQueueBus`."""

from __future__ import annotations

from natsbus.bus.base import WorkerBus
from natsbus.messages import BusMessage

__all__ = ["AsyncQueueBus"]


class AsyncQueueBus(WorkerBus):
    """In-process bus that delivers messages through each subscriber's priority lanes.

    Everything stays in the process: :meth:`publish` hands the message straight back to
    its subscribers' lanes. Takes the keyword arguments of :class:`WorkerBus`.
    """

    loops_back = True

    async def publish(self, message: BusMessage) -> None:
        """Deliver a message to all local subscribers' lanes.

        Args:
            message: The bus message to deliver.
        """
        self._deliver(message)
