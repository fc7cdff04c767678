"""NatsBus on a 3-node JetStream cluster: replicated job stream, a node dying mid-run."""

from __future__ import annotations

import nats

from natsbus import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    JetStreamOptions,
    JobStatus,
    NatsBus,
    NatsConnectOptions,
)
from natsbus.testing import NatsCluster

from helpers.recorders import Inbox


async def test_jobs_keep_flowing_when_a_cluster_node_dies() -> None:
    async with NatsCluster(size=3) as cluster:
        options = JetStreamOptions(replicas=3, publish_retry_interval=0.1)

        def bus() -> NatsBus:
            return NatsBus(
                connect_options=NatsConnectOptions(servers=cluster.urls),
                jetstream_options=options,
                channel="cluster",
            )

        worker_bus, client_bus = bus(), bus()

        async def answer(message: BusMessage) -> None:
            if isinstance(message, BusJobRequestMessage):
                await worker_bus.send(
                    BusJobResponseMessage(
                        message.job_id, JobStatus.COMPLETED, source="w", target=message.source
                    )
                )

        client = Inbox("client")
        await worker_bus.subscribe(Inbox("w", behaviour=answer))
        await client_bus.subscribe(client)
        async with worker_bus, client_bus:
            probe = await nats.connect(cluster.urls[1])
            try:
                layout = worker_bus.layout
                for stream in (layout.stream, layout.request_stream):
                    info = await probe.jetstream().stream_info(stream)
                    assert info.config.num_replicas == 3, stream
            finally:
                await probe.close()
            for i in range(10):
                await client_bus.send(BusJobRequestMessage(f"a{i}", source="client", target="w"))
            await client.wait_until(lambda: len(client.received) == 10)
            await cluster.nodes[0].kill()
            for i in range(10):
                await client_bus.send(BusJobRequestMessage(f"b{i}", source="client", target="w"))
            await client.wait_until(lambda: len(client.received) == 20, timeout=60)
        answered = sorted(m.job_id for m in client.received)
        assert answered == sorted([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)])
