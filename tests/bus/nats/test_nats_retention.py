"""What the job stream keeps: a job's replies and controls for as long as redelivery and an
outage need them (their ``Nats-TTL``); lifecycle messages and dead letters for ``max_age``."""

from __future__ import annotations

import asyncio
import uuid

import nats
import pytest
from nats.js.errors import NotFoundError

from natsbus.bus.nats import JetStreamOptions, NatsBus
from natsbus.bus.nats.jetstream import TTL_HEADER
from natsbus.messages import (
    BusCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    JobStatus,
    Lane,
)

from helpers.nats import running_bus
from helpers.recorders import Inbox


def test_the_ttl_covers_the_deduplication_window_and_an_instance_s_absence() -> None:
    options = JetStreamOptions()
    assert options.message_ttl == max(
        options.deduplication_window, options.instance_inactive_threshold
    )
    assert options.message_ttl < options.max_age
    assert JetStreamOptions(max_age=60, duplicate_window=60).message_ttl == 60


async def test_a_job_s_reply_carries_its_ttl_and_expires_with_it(nats_url: str) -> None:
    channel = f"ttl-{uuid.uuid4().hex[:8]}"
    options = {"duplicate_window": 1.0, "instance_inactive_threshold": 1.0}
    buses: list[NatsBus] = []

    async def answer(message: BusMessage) -> None:
        if isinstance(message, BusJobRequestMessage):
            await buses[0].send(
                BusJobResponseMessage(
                    message.job_id, JobStatus.COMPLETED, None, source="w", target="client"
                )
            )

    worker, client = Inbox("w", behaviour=answer), Inbox("client")
    async with (
        running_bus(nats_url, worker, channel=channel, **options) as worker_bus,
        running_bus(nats_url, client, channel=channel, **options) as client_bus,
    ):
        buses.append(worker_bus)
        await client_bus.send(BusCancelMessage("stop", source="client", target="w"))
        await client_bus.send(BusJobRequestMessage("j1", source="client", target="w"))
        await client.wait_until(lambda: len(client.received) == 1)
        await client_bus.send(BusJobRequestMessage("j2", source="client", target="nobody"))
        await client_bus.flush()
        layout = client_bus.layout
        reply = layout.job_replies(client_bus.instance_id, Lane.DATA, "w")
        lifecycle = layout.lifecycle(Lane.SYSTEM, "w", "client")
        raw = await nats.connect(nats_url)
        try:
            jetstream = raw.jetstream()
            info = await jetstream.stream_info(layout.stream)
            assert info.config.allow_msg_ttl
            stored = await jetstream.get_last_msg(layout.stream, reply)
            assert (stored.headers or {}).get(TTL_HEADER) == "1s"
            announced = await jetstream.get_last_msg(layout.stream, lifecycle)
            assert TTL_HEADER not in (announced.headers or {})  # natsbus status reads them
            # The request stream keeps requests until they are answered: no TTL there.
            waiting = await jetstream.get_last_msg(
                layout.request_stream, layout.job_requests("nobody", "client")
            )
            assert TTL_HEADER not in (waiting.headers or {})
            await asyncio.sleep(2.5)  # the server expires messages about once a second
            with pytest.raises(NotFoundError):
                await jetstream.get_last_msg(layout.stream, reply)
            await jetstream.get_last_msg(layout.stream, lifecycle)  # still there
        finally:
            await raw.close()
