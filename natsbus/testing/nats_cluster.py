"""A JetStream cluster of ``nats-server`` nodes for tests: kill a node, see what survives."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from natsbus.testing.nats_server import (
    NatsServer,
    NatsServerStartError,
    _free_port,
    find_nats_server_binary,
)

__all__ = ["NatsCluster"]


class NatsCluster:
    """A JetStream cluster of ``nats-server`` nodes on loopback, routed to each other.

    :meth:`start` returns once every node reports healthy on ``/healthz``, which for
    JetStream means the meta group has a leader. After a node is killed, clients must retry
    writes until a new stream leader is elected (seconds).

    Args:
        size: Number of nodes.
        name: Cluster name; node ``i`` is called ``f"{name}-{i}"``.
        host: Address every node listens on.
        binary: The ``nats-server`` executable. ``None`` calls :func:`find_nats_server_binary`.
        ready_timeout: Seconds :meth:`start` waits for the whole cluster.
    """

    def __init__(
        self,
        *,
        size: int = 3,
        name: str = "natsbus",
        host: str = "127.0.0.1",
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got size={size!r}")
        self._binary = find_nats_server_binary() if binary is None else Path(binary)
        self._size, self._name, self._host = size, name, host
        self._ready_timeout = ready_timeout
        self._nodes: tuple[NatsServer, ...] = ()

    @property
    def nodes(self) -> tuple[NatsServer, ...]:
        """The nodes, empty before :meth:`start`; each one can be stopped and restarted."""
        return self._nodes

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, e.g. for ``nats.connect(servers=cluster.urls)``."""
        return [node.url for node in self._nodes]

    async def start(self) -> None:
        """Start every node and wait until JetStream is healthy on each.

        Raises:
            RuntimeError: The cluster is already started.
            NatsServerStartError: A node did not start, or the cluster was not healthy in time.
        """
        if self._nodes:
            raise RuntimeError("NatsCluster is already started")
        route_ports = [_free_port(self._host) for _ in range(self._size)]
        routes = ",".join(f"nats://{self._host}:{port}" for port in route_ports)
        self._nodes = tuple(
            NatsServer(
                host=self._host,
                binary=self._binary,
                monitor_port=0,
                ready_timeout=self._ready_timeout,
                args=(
                    *("-n", f"{self._name}-{index}", "--cluster_name", self._name),
                    *("--cluster", f"nats://{self._host}:{port}", "--routes", routes),
                ),
            )
            for index, port in enumerate(route_ports)
        )
        try:
            async with asyncio.timeout(self._ready_timeout):
                # One at a time: a node is ready in milliseconds, before its routes are up.
                for node in self._nodes:
                    await node.start()
                for node in self._nodes:
                    await _wait_healthy(self._host, node)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, TimeoutError):
                raise NatsServerStartError("NatsCluster was not healthy in time", "") from exc
            raise

    async def stop(self) -> None:
        """Stop every node (see :meth:`NatsServer.stop`). Safe to call more than once."""
        nodes, self._nodes = self._nodes, ()
        # Every node must be stopped even if one of them fails to.
        results = await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _wait_healthy(host: str, node: NatsServer) -> None:
    port = node.monitor_port
    while True:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
            status_line = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
        if status_line.split()[1:2] == [b"200"]:
            return
        await asyncio.sleep(0.05)
