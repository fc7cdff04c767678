"""The in-process :class:`AsyncQueueBus`."""

from __future__ import annotations

from typing import Any

from natsbus.bus.base import WorkerBus
from natsbus.codec import Codec
from natsbus.messages import BusLocalMessage, BusMessage

__all__ = ["AsyncQueueBus"]


class AsyncQueueBus(WorkerBus):
    """In-process bus that delivers messages through each subscriber's priority lanes.

    Everything stays in the process: :meth:`publish` hands the message straight back to
    its subscribers' lanes.

    Args:
        check_wire: Send every message that a network bus would send through the codec, as
            a network bus does: what NatsBus refuses (a set or a datetime in a payload, an
            unregistered type, a message over the size limit) raises here too, at ``send``,
            and the subscribers get a decoded copy, never the sender's object. Off by
            default, as in pipecat; on, it is how a unit test learns what would break on
            NATS (``natsbus.testing.TestBus`` turns it on). ``BusLocalMessage`` s never
            leave the process and are delivered as they are.
        codec: The codec to check with (its size limit applies).
        **kwargs: The keyword arguments of :class:`WorkerBus`.
    """

    loops_back = True

    def __init__(
        self, *, check_wire: bool = False, codec: Codec | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._wire = (codec or Codec()) if check_wire else None

    @property
    def checks_wire(self) -> bool:
        """Whether messages go through the codec (``check_wire``)."""
        return self._wire is not None

    async def publish(self, message: BusMessage) -> None:
        """Deliver a message to all local subscribers' lanes.

        Args:
            message: The bus message to deliver.

        Raises:
            EncodeError: With ``check_wire``, the message cannot travel on a network bus.
            MessageTooLargeError: With ``check_wire``, it is over the codec's size limit.
        """
        codec = self._wire
        if codec is not None and not isinstance(message, BusLocalMessage):
            message = codec.decode(codec.encode(message))
        self._deliver(message)
