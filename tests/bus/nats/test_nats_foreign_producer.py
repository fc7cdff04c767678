"""A producer that is not natsbus: the envelope built from the .proto files, no NATS headers.

Such a request is stored, run once and answered once: its identity is the envelope's (or the
stream sequence), and with no ``reply_to`` the answer goes to the core subject of its
``source``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgpack
import nats
from prometheus_client import CollectorRegistry

from natsbus import BaseWorker, BusJobRequestMessage, NatsBus, job
from natsbus._proto.v1 import envelope_pb2, messages_pb2, value_pb2
from natsbus.messages import Lane
from natsbus.observability import BusMetrics

from helpers.workers import running, within


class Echo(BaseWorker):
    def __init__(self) -> None:
        super().__init__("echo")
        self.runs: list[str] = []

    @job(name="echo")
    async def echo(self, message: BusJobRequestMessage) -> dict[str, Any]:
        self.runs.append(message.job_id)
        return {"echo": message.payload}


def request(job_id: str, envelope_id: str) -> bytes:
    env = envelope_pb2.Envelope(id=envelope_id, source="foreign", target="echo")
    env.job_request.CopyFrom(
        messages_pb2.JobRequest(
            job_id=job_id,
            job_name="echo",
            payload=value_pb2.Values(msgpack=msgpack.packb({"n": job_id})),
        )
    )
    return env.SerializeToString()


async def test_requests_without_natsbus_headers_are_answered_exactly_once(nats_url: str) -> None:
    channel = f"foreign-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    bus = NatsBus(servers=nats_url, channel=channel, metrics=BusMetrics(registry=registry))

    def anomalies(kind: str) -> float | None:
        return registry.get_sample_value(
            "natsbus_job_anomalies_total", {"bus": "nats", "kind": kind}
        )

    echo = Echo()
    async with running(echo, bus=bus):
        assert anomalies("unrouted_reply") == 0  # present before the first one
        client = await nats.connect(nats_url)
        answers: asyncio.Queue[envelope_pb2.Envelope] = asyncio.Queue()

        async def on_answer(msg: Any) -> None:
            await answers.put(envelope_pb2.Envelope.FromString(msg.data))

        await client.subscribe(bus.layout.targeted(Lane.DATA, "foreign"), cb=on_answer)
        js = client.jetstream()
        subject = bus.layout.job_requests("echo", "foreign")
        # No Nats-Msg-Id, no reply-to header; the last two have no envelope id either.
        for job_id, envelope_id in (("f1", "env-1"), ("f2", ""), ("f3", "")):
            await js.publish(subject, request(job_id, envelope_id))
        got = [await within(answers.get(), 10) for _ in range(3)]
        await asyncio.sleep(1.0)  # nothing more arrives, and nothing is run twice
        assert answers.empty()
        by_job = {env.job_response.job_id: env for env in got}
        assert sorted(by_job) == ["f1", "f2", "f3"]
        for job_id, env in by_job.items():
            assert env.source == "echo" and env.target == "foreign"
            assert msgpack.unpackb(env.job_response.response.msgpack) == {"echo": {"n": job_id}}
        assert sorted(echo.runs) == ["f1", "f2", "f3"]
        stats = await bus.consumer_statistics()
        assert all(s.ack_pending == 0 and s.pending == 0 for s in stats if s.worker == "echo")
        # Answered on the requester's core subject, without JetStream: counted and exported.
        assert anomalies("unrouted_reply") == 3 and anomalies("duplicate_job_id") == 0
        await client.close()
