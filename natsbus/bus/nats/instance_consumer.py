"""One instance consumer and the pull loop that reads it, made again after a server restart.

Both owners of instance consumers use it: a bus with connections of its own
(:mod:`natsbus.bus.nats.consumer_set`) and a shared connection pair
(:mod:`natsbus.bus.nats.routed`). An instance consumer keeps its state in memory
(:func:`~natsbus.bus.nats.jetstream.instance_consumer_config`), so a server that restarts
forgets it; the pull loop then notices and this makes it again from the stream sequence after
the last message read, so that nothing stored meanwhile is missed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats.js.client import JetStreamContext

from natsbus.bus.nats.jetstream import resume_consumer
from natsbus.bus.nats.pull import PullLoop

__all__ = ["InstanceConsumer"]

_CREDIT: Final = 256
"""Messages asked for at once: they are handled (or dropped) as they come, never held."""


def _credit() -> int:
    return _CREDIT


class InstanceConsumer:
    """An instance consumer of one lane, read by a :class:`PullLoop` of its own.

    Args:
        client: The lane's connection (the loop's messages arrive on it).
        jetstream: Its JetStream context.
        stream: The job stream.
        config: The consumer (an :func:`instance_consumer_config`).
        on_message: Called, in order, with every delivery.
    """

    def __init__(
        self,
        *,
        client: Client,
        jetstream: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        on_message: Callable[[Msg], None],
    ) -> None:
        assert config.name is not None
        self._jetstream = jetstream
        self._stream = stream
        self._config = config
        self._name = config.name
        # The stream sequence the consumer started after: made again before it has read
        # anything, it starts there again.
        self._started_after: int | None = None
        self._loop = PullLoop(
            client=client,
            stream=stream,
            consumer=config.name,
            on_message=on_message,
            capacity=_credit,
            ensure_consumer=self._resume,
        )

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self._name

    @property
    def config(self) -> ConsumerConfig:
        """The config the consumer has now (made again after a restart, it keeps its start)."""
        return self._config

    async def start(self) -> None:
        """Make the consumer and start reading it.

        Raises:
            nats.errors.Error: The server refused or did not answer.
        """
        info = await self._jetstream.add_consumer(self._stream, self._config)
        if info.delivered is not None:
            self._started_after = info.delivered.stream_seq
        await self._loop.start()

    async def update(self, config: ConsumerConfig) -> None:
        """Give the consumer these settings (its subjects, say), keeping where it starts.

        ``add_consumer`` on an existing name updates it in place; what it already delivered
        stays delivered. The start cannot change, and one made again after a restart has its
        own.

        Raises:
            nats.errors.Error: The server refused or did not answer.
        """
        config = dataclasses.replace(
            config,
            deliver_policy=self._config.deliver_policy,
            opt_start_seq=self._config.opt_start_seq,
        )
        await self._jetstream.add_consumer(self._stream, config)
        self._config = config

    def renew(self) -> None:
        """Ask again at once (the connection came back)."""
        self._loop.renew()

    async def stop(self) -> None:
        """Stop reading; what was delivered and not acknowledged is redelivered."""
        await self._loop.stop()

    async def _resume(self) -> None:
        """Make the consumer again if the server lost it, after the last message read."""
        after = self._loop.last_stream_sequence
        if after is None:
            after = self._started_after
        self._config = await resume_consumer(self._jetstream, self._stream, self._config, after)
