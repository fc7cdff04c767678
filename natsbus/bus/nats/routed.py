"""The instance consumers of a connection pair: one per lane for every bus on the pair.

A bus with connections of its own reads its replies, its workers' controls and its targets'
lifecycle messages through two consumers of its own (``consumer_set.py``). On a shared
:class:`~natsbus.bus.nats.shared.NatsConnections` pair that would be two consumers per
session, and a server holds a limited number per stream; so the pair reads them for all its
buses, through two consumers whatever the number of buses:

* every bus on the pair uses the pair's instance id ``<I>``, and a pair has one bus per
  channel, so (channel, ``<I>``) still names one bus: replies are read with
  ``<prefix>.*.job.rsp.<I>.<lane>.*``;
* the controls and lifecycle messages of every channel are read with
  ``<prefix>.*.job.ctl.*.*`` and ``<prefix>.*.life.<lane>.>``, and each delivery goes to the
  bus of its channel (the subject's second token), which keeps it only if it hosts the
  worker (a control) or listens for the target (a lifecycle message), exactly what its own
  consumer's filter subjects would have let through. What no bus here wants is acknowledged
  and dropped.

Why not one filter subject per bus on the pair's consumers: nats-server checks every pair of
filter subjects when a consumer is made or updated, so an update costs O(filters²) (measured
on nats-server 2.15: 1,000 filters 0.1 s, 3,000 0.9 s, 6,000 3.5 s, 15,000 20 s per update),
and every session start would be one. The price of reading every channel instead is that a
pair receives the controls and lifecycle messages of the whole deployment (a few per session
life, never frames nor jobs), acknowledged and dropped when not its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from functools import partial
from typing import Any, Final, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from natsbus.bus.nats.instance_consumer import InstanceConsumer
from natsbus.bus.nats.intake import BurstAcks
from natsbus.bus.nats.jetstream import delete_consumer_quietly, instance_consumer_config
from natsbus.bus.nats.layout import SubjectLayout
from natsbus.bus.nats.options import JetStreamOptions
from natsbus.messages import Lane

__all__ = ["RoutedBus", "SharedInstanceConsumers"]

logger = logging.getLogger(__name__)

_LANES: Final[tuple[Lane, Lane]] = (Lane.SYSTEM, Lane.DATA)


class RoutedBus(Protocol):
    """What the pair's consumers need of a bus: whether it wants a delivery, and its intake."""

    def wants_routed(self, subject: str) -> bool:
        """Whether the bus reads this control, reply or lifecycle subject (of its channel)."""
        ...

    def on_routed_message(self, acks: BurstAcks, msg: Msg) -> None:
        """Take a delivery the bus wants (it acknowledges it, through ``acks``)."""
        ...


class SharedInstanceConsumers:
    """The two instance consumers of one pair for one job stream, and their pull loops.

    Args:
        clients: The pair's connections by lane.
        jetstream: Their JetStream contexts.
        layout: Any of the pair's layouts for this stream (its prefix and stream are used).
        options: The JetStream options of the first bus (its ack wait and inactive
            threshold).
        instance: The pair's instance id.
    """

    def __init__(
        self,
        *,
        clients: Mapping[Lane, Client],
        jetstream: Mapping[Lane, JetStreamContext],
        layout: SubjectLayout,
        options: JetStreamOptions,
        instance: str,
    ) -> None:
        self._clients = clients
        self._jetstream = jetstream
        self._stream = layout.stream
        self._skip = len(layout.prefix) + 1  # "<prefix>." before the channel token
        self._configs = {
            lane: instance_consumer_config(
                layout.instance_consumer(instance, lane),
                SubjectLayout.pair_instance_subjects(layout.prefix, instance, lane),
                options,
            )
            for lane in _LANES
        }
        self._consumers: dict[Lane, InstanceConsumer] = {}
        self._buses: dict[str, RoutedBus] = {}
        self._dropped = 0

    @property
    def consumers(self) -> dict[Lane, str]:
        """The consumers' names by lane."""
        return {lane: config.name or "" for lane, config in self._configs.items()}

    @property
    def stream(self) -> str:
        """The stream the consumers read."""
        return self._stream

    @property
    def dropped(self) -> int:
        """Deliveries no bus on the pair wanted (another process's channels, say)."""
        return self._dropped

    async def start(self) -> None:
        """Make both consumers and start reading them.

        Raises:
            nats.errors.Error: The server refused or did not answer.
        """
        try:
            for lane in _LANES:
                consumer = InstanceConsumer(
                    client=self._clients[lane],
                    jetstream=self._jetstream[lane],
                    stream=self._stream,
                    config=self._configs[lane],
                    on_message=partial(self._route, BurstAcks(_spawn)),
                )
                await consumer.start()
                self._consumers[lane] = consumer
        except BaseException:
            await self.close()
            raise

    def join(self, root: str, bus: RoutedBus) -> None:
        """Route the deliveries of the channel whose subjects start with ``root`` to ``bus``."""
        self._buses[root[self._skip :]] = bus

    def leave(self, root: str, bus: RoutedBus) -> None:
        """Stop routing to ``bus``: what still comes for its channel is dropped."""
        if self._buses.get(root[self._skip :]) is bus:
            del self._buses[root[self._skip :]]

    def renew(self) -> None:
        """Ask again at once (the connection came back)."""
        for consumer in self._consumers.values():
            consumer.renew()

    async def close(self) -> None:
        """Stop reading and delete the consumers (the server would after their threshold)."""
        consumers, self._consumers = self._consumers, {}
        for consumer in consumers.values():
            await consumer.stop()
        for lane, consumer in consumers.items():
            await delete_consumer_quietly(self._jetstream[lane], self._stream, consumer.name)

    def _route(self, acks: BurstAcks, msg: Msg) -> None:
        subject = msg.subject
        channel = subject[self._skip : subject.find(".", self._skip)]
        bus = self._buses.get(channel)
        if bus is not None and bus.wants_routed(subject):
            bus.on_routed_message(acks, msg)
            return
        self._dropped += 1
        acks.ack(msg)  # the consumers acknowledge all before (AckPolicy.ALL): in order


_background: set[asyncio.Task[Any]] = set()


def _spawn(coroutine: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
