"""A request delivered again after its answer was stored is acknowledged, never run again.

On a real nats-server: the answer stream's de-duplication is what tells (see
``natsbus/bus/nats/answers.py``), and a replica that is not natsbus plays the one that
answered and lost its acknowledgement.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from functools import partial

import nats
import pytest
from nats.js.client import JetStreamContext

from natsbus import Codec
from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.bus.nats.answers import AnsweredCheck, answer_id
from natsbus.bus.nats.jetstream import ensure_consumer, job_consumer_config
from natsbus.bus.nats.outbox import MSG_ID_HEADER
from natsbus.messages import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    JobStatus,
    Lane,
    Payload,
)
from natsbus.workers import BaseWorker, JobParams, job

from helpers.workers import Client, running, within

OPTIONS = JetStreamOptions(ack_wait=1.0)


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[tuple[JetStreamContext, NatsBus]]:
    """Raw JetStream beside a started bus (which made the streams)."""
    bus = NatsBus(servers=nats_url, channel=f"ans-{uuid.uuid4().hex[:8]}")
    client = await nats.connect(nats_url)
    async with bus:
        yield client.jetstream(), bus
    await client.close()


def check_for(js: JetStreamContext, bus: NatsBus) -> AnsweredCheck:
    layout = bus.layout
    return AnsweredCheck(
        js, stream=layout.stream, claim_subject=partial(layout.job_claims, "prober"), timeout=2.0
    )


async def store_answer(js: JetStreamContext, bus: NatsBus, request_id: str, attempt: int) -> bool:
    """Store an answer as a bus does; returns whether the stream called it a duplicate."""
    ack = await js.publish(
        bus.layout.job_replies("someone", Lane.DATA, "w"),
        b"answer",
        headers={MSG_ID_HEADER: answer_id(request_id, attempt)},
    )
    return ack.duplicate is True


async def test_an_answer_stored_by_an_earlier_delivery_is_found(
    jetstream: tuple[JetStreamContext, NatsBus],
) -> None:
    js, bus = jetstream
    assert not await store_answer(js, bus, "r1", 1)
    assert await check_for(js, bus).answered("r1", 2, "w")


async def test_an_unanswered_delivery_is_claimed_so_that_its_late_answer_is_refused(
    jetstream: tuple[JetStreamContext, NatsBus],
) -> None:
    js, bus = jetstream
    assert not await check_for(js, bus).answered("r2", 2, "w")
    # The bus that had delivery 1 answers late: the stream keeps the claim, not its answer.
    assert await store_answer(js, bus, "r2", 1)


async def test_a_claim_is_not_mistaken_for_an_answer(
    jetstream: tuple[JetStreamContext, NatsBus],
) -> None:
    js, bus = jetstream
    check = check_for(js, bus)
    assert not await check.answered("r3", 2, "w")  # delivery 2 claims delivery 1
    assert not await check.answered("r3", 3, "w")  # delivery 3 finds that claim, and claims 2
    assert not await store_answer(js, bus, "r3", 3)  # its own answer is stored
    assert await check.answered("r3", 4, "w")


class Counted(BaseWorker):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.runs = 0

    @job(name="charge")
    async def charge(self, message: BusJobRequestMessage) -> Payload:
        self.runs += 1
        return {"charged_by": "natsbus"}


async def test_a_replica_whose_ack_was_lost_has_its_job_acknowledged_not_run_again(
    nats_url: str,
) -> None:
    channel = f"ans-{uuid.uuid4().hex[:8]}"
    codec = Codec()
    raw = await nats.connect(nats_url)
    js = raw.jetstream()
    client = Client()
    try:
        async with running(client, bus=NatsBus(servers=nats_url, channel=channel)) as runner:
            layout = runner.bus.layout  # type: ignore[attr-defined]
            config = job_consumer_config(layout, "payments", OPTIONS)
            await ensure_consumer(js, layout.request_stream, config)
            params = JobParams(wait_ready=False, timeout=30)

            async def ask() -> BusJobResponseMessage | None:
                async with client.job("payments", name="charge", params=params) as handle:
                    pass
                return handle.response  # type: ignore[return-value]

            asking = asyncio.create_task(ask())
            # Replica A (not natsbus) takes delivery 1, stores its answer, and dies before it
            # acknowledges the request.
            pull = await js.pull_subscribe_bind(config.name, stream=layout.request_stream)
            (delivery,) = await pull.fetch(1, timeout=10)
            request = codec.decode(delivery.data)
            assert isinstance(request, BusJobRequestMessage)
            answer = BusJobResponseMessage(
                request.job_id,
                JobStatus.COMPLETED,
                {"charged_by": "replica A"},
                source="payments",
                target=request.source,
            )
            await js.publish(
                layout.job_replies(request.reply_to, Lane.DATA, "payments"),
                codec.encode(answer),
                headers={MSG_ID_HEADER: answer_id(request.id, 1)},
            )
            await pull.unsubscribe()
            # Replica B gets the request again after ack_wait: it must not charge again.
            worker = Counted("payments")
            bus = NatsBus(servers=nats_url, channel=channel, jetstream_options=OPTIONS)
            async with running(worker, bus=bus) as replica:
                response = await within(asking, 20)
                for _ in range(100):
                    network = replica.bus.statistics().network
                    assert network is not None
                    if network.counts.answered_elsewhere:
                        break
                    await asyncio.sleep(0.05)
                assert network.counts.answered_elsewhere == 1
                assert worker.runs == 0
            assert response == {"charged_by": "replica A"}
            # Acknowledged: the work queue holds nothing any more.
            info = await js.stream_info(layout.request_stream)
            assert info.state.messages == 0
    finally:
        await raw.close()
