"""Helpers for testing code built on natsbus.

- :class:`NatsServer` (and :class:`NatsCluster`): a real ``nats-server`` you can start and
  stop.
- :func:`run_test`: run one frame processor in a pipeline worker and see what comes out.
- :class:`TestBus` (on a :class:`TestNetwork`): unit-test workers in one process with NatsBus's
  wire and job semantics (the codec's refusals, one replica per job, redelivery after a crash,
  ``max_attempts``), no server needed.

Example::

    async with NatsServer() as server:
        nc = await nats.connect(server.url)
"""

from natsbus.testing.memory_bus import TestBus, TestNetwork
from natsbus.testing.nats_cluster import NatsCluster
from natsbus.testing.nats_server import (
    NatsServer,
    NatsServerNotFoundError,
    NatsServerStartError,
    ServerState,
    find_nats_server_binary,
)
from natsbus.testing.pipeline import run_test

__all__ = [
    "NatsCluster",
    "NatsServer",
    "NatsServerNotFoundError",
    "NatsServerStartError",
    "ServerState",
    "TestBus",
    "TestNetwork",
    "find_nats_server_binary",
    "run_test",
]
