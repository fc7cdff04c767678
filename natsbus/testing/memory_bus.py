"""TestBus: unit-test workers in one process with the semantics they will meet on NATS.

Several :class:`TestBus` on one :class:`TestNetwork` behave like several processes on one
nats-server with JetStream, with no server:

* every message goes through the real codec, so what NatsBus refuses (a set or a datetime in a
  payload, an unregistered type, an oversized message) raises at ``send`` here too, and each
  bus gets its own decoded copy;
* a job request for worker ``W`` is taken by exactly **one** of the buses hosting ``W`` and
  taking jobs (round robin), or waits until one is;
* a bus that :meth:`~TestBus.crash` es takes no answer with it: the jobs it took and did not
  answer are delivered again, to another bus hosting the worker (``attempt`` counts), and
  after ``max_attempts`` deliveries the requester gets an ``error`` answer, as from NatsBus;
* everything else reaches every bus (each worker filters by target, as on any bus).

Example::

    network = TestNetwork(max_attempts=3)
    replica_a, replica_b, client_bus = (TestBus(network) for _ in range(3))
    ...
    await replica_a.crash()  # its unanswered job goes to replica_b
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

from natsbus._job_messages import dead_letter_reason, error_answer
from natsbus.bus.base import WorkerBus
from natsbus.bus.subscriber import BusSubscriber
from natsbus.codec import Codec
from natsbus.messages import (
    BusJobMessage,
    BusJobRequestMessage,
    BusLocalMessage,
    BusMessage,
    JobRole,
)

__all__ = ["TestBus", "TestNetwork"]


@dataclass
class _Taken:
    bus: TestBus
    request: bytes
    attempt: int


class TestNetwork:
    """What a nats-server with JetStream does for the :class:`TestBus` es attached to it.

    Args:
        max_attempts: Deliveries of a job request before it is answered ``error``
            (``JetStreamOptions.max_attempts``).
        codec: The codec every message goes through (its size limit applies).
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    def __init__(self, *, max_attempts: int = 5, codec: Codec | None = None) -> None:
        self.max_attempts = max_attempts
        self.codec = codec or Codec()
        self._buses: list[TestBus] = []
        self._taken: dict[tuple[str, str], _Taken] = {}
        self._waiting: list[tuple[bytes, int]] = []
        self._turn = itertools.count()

    @property
    def waiting(self) -> int:
        """Job requests no bus could take yet."""
        return len(self._waiting)

    @property
    def taken(self) -> int:
        """Job requests taken and not answered."""
        return len(self._taken)

    def attach(self, bus: TestBus) -> None:
        """Connect a bus (its constructor does)."""
        self._buses.append(bus)

    def publish(self, sender: TestBus, message: BusMessage) -> None:
        """Carry one message, as the server would (it was checked by the codec)."""
        data = self.codec.encode(message)
        role = message.job_role
        if role is JobRole.REQUEST:
            self._offer(data, attempt=1)
            return
        if role is JobRole.ANSWER:
            assert isinstance(message, BusJobMessage)
            key = (message.source, message.job_id)
            taken = self._taken.get(key)
            if taken is not None and taken.bus is sender:
                del self._taken[key]  # acknowledged
        self._broadcast(data)

    def rescan(self) -> None:
        """Offer the waiting requests again (a bus's workers may take jobs now)."""
        waiting, self._waiting = self._waiting, []
        for data, attempt in waiting:
            self._offer(data, attempt)

    def gone(self, bus: TestBus) -> None:
        """``bus`` stopped or died: what it took and did not answer is delivered again at once.

        (A NatsBus that stops releases its jobs at once too; one that dies, after
        ``ack_wait``: here there is no clock to wait for.)
        """
        if bus in self._buses:
            self._buses.remove(bus)
        lost = [(key, taken) for key, taken in self._taken.items() if taken.bus is bus]
        for key, taken in lost:
            del self._taken[key]
            self._offer(taken.request, taken.attempt + 1)

    def _offer(self, data: bytes, attempt: int) -> None:
        request = self.codec.decode(data)
        assert isinstance(request, BusJobRequestMessage) and request.target is not None
        if attempt > self.max_attempts:
            self._dead_letter(request, attempt - 1)
            return
        hosts = [bus for bus in self._buses if bus.takes_jobs_of(request.target)]
        if not hosts:
            self._waiting.append((data, attempt))
            return
        bus = hosts[next(self._turn) % len(hosts)]
        self._taken[(request.target, request.job_id)] = _Taken(bus, data, attempt)
        request.attempt = attempt
        bus.on_message_received(request)

    def _dead_letter(self, request: BusJobRequestMessage, deliveries: int) -> None:
        self._broadcast(self.codec.encode(error_answer(request, dead_letter_reason(deliveries))))

    def _broadcast(self, data: bytes) -> None:
        for bus in list(self._buses):
            bus.on_message_received(self.codec.decode(data))


class TestBus(WorkerBus):
    """An in-process bus with the wire and job semantics of NatsBus (see the module).

    Args:
        network: The network it is attached to; one of its own by default (a single
            process).
        **kwargs: The keyword arguments of :class:`~natsbus.bus.WorkerBus`.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class
    kind: ClassVar[str] = "test"

    def __init__(self, network: TestNetwork | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network = network if network is not None else TestNetwork()
        self.network.attach(self)

    @property
    def redelivers_jobs(self) -> bool:
        """True: a job taken and not answered goes to another bus when this one stops."""
        return True

    def takes_jobs_of(self, worker: str) -> bool:
        """Whether a subscriber here takes ``worker``'s job requests now."""
        if self._stopped:
            return False
        return any(
            worker in subscriber.bus_job_targets and subscriber.bus_taking_jobs
            for subscriber in self.subscribers
        )

    async def publish(self, message: BusMessage) -> None:
        """Carry a message to the network (local-only messages stay here).

        Raises:
            EncodeError: The message cannot travel on a network bus.
            MessageTooLargeError: It is over the codec's size limit.
        """
        if isinstance(message, BusLocalMessage):
            self.on_message_received(message)
            return
        self.network.publish(self, message)

    async def subscribe(self, subscriber: BusSubscriber) -> None:
        """Register a subscriber; requests waiting for its worker are offered again."""
        await super().subscribe(subscriber)
        self.network.rescan()

    async def refresh_interest(self) -> None:
        """A subscriber now takes jobs (or stopped): offer the waiting requests again."""
        self.network.rescan()

    async def stop(self) -> None:
        """Stop; the jobs taken here and not answered go to another bus at once."""
        self.network.gone(self)
        await super().stop()

    async def crash(self) -> None:
        """Die as a killed process would.

        Nothing more is sent or received, and the jobs taken here and not answered are
        delivered again elsewhere.
        """
        await self.stop()  # here a death and a stop look alike: neither answers its jobs
