"""Helpers for testing code built on natsbus: a real ``nats-server`` you can start and stop.

Example::

    async with NatsServer() as server:
        nc = await nats.connect(server.url)
"""

from natsbus.testing.nats_server import (
    NatsCluster,
    NatsServer,
    NatsServerNotFoundError,
    NatsServerStartError,
    ServerState,
    find_nats_server_binary,
)

__all__ = [
    "NatsCluster",
    "NatsServer",
    "NatsServerNotFoundError",
    "NatsServerStartError",
    "ServerState",
    "find_nats_server_binary",
]
