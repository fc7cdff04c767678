"""PullLoop against a real server: it backs off when pulls keep failing instead of spinning."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from natsbus.bus.nats.pull import PullLoop


async def test_a_pull_that_keeps_failing_is_asked_again_with_backoff(nats_url: str) -> None:
    responder, client = await nats.connect(nats_url), await nats.connect(nats_url)
    asks = 0

    async def no_leader(msg: Msg) -> None:
        # What a cluster answers while the consumer has no leader.
        nonlocal asks
        asks += 1
        await responder.publish(msg.reply, b"", headers={"Status": "503"})

    await responder.subscribe("$JS.API.CONSUMER.MSG.NEXT.S.c", cb=no_leader)
    await responder.flush()
    delivered: list[Msg] = []

    async def ensure() -> None:
        return None

    loop = PullLoop(
        client=client,
        stream="S",
        consumer="c",
        on_message=delivered.append,
        capacity=lambda: 10,
        ensure_consumer=ensure,
    )
    await loop.start()
    try:
        await asyncio.sleep(1.6)
    finally:
        await loop.stop()
        await responder.close()
        await client.close()
    # 0.1 + 0.2 + 0.4 + 0.5 + 0.5 s of backoff fit in 1.6 s: about five asks, not hundreds.
    assert 3 <= asks <= 7, asks
    # It grew (0.1 s doubled on each failure in a row) and stopped at 0.5 s, so that the loop
    # is awake soon after an election ends.
    assert loop.backoff == 0.5
    assert delivered == []


async def test_a_consumer_deleted_on_the_server_is_made_again(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="S", subjects=["s.>"]))
    config = ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT)
    made = 0

    async def ensure() -> None:
        nonlocal made
        made += 1
        await js.add_consumer("S", config)

    await ensure()
    delivered: list[Msg] = []
    arrived = asyncio.Event()

    def on_message(msg: Msg) -> None:
        delivered.append(msg)
        arrived.set()

    loop = PullLoop(
        client=client,
        stream="S",
        consumer="c",
        on_message=on_message,
        capacity=lambda: 10,
        ensure_consumer=ensure,
        expires=1.0,
    )
    await loop.start()
    try:
        await js.delete_consumer("S", "c")
        await js.publish("s.x", b"after the delete")
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await loop.stop()
        await client.close()
    assert [m.data for m in delivered] == [b"after the delete"]
    assert made >= 2
