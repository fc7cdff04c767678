"""Direct subscriptions: messages from the connection's reader to a function, no queue between."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsbus.bus.nats.direct import (
    subscribe_direct,
    subscribe_direct_messages,
    unsubscribe_direct,
)
from natsbus.testing import NatsServer

from helpers.frames import eventually


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


async def test_messages_reach_the_handler_in_order_with_their_subject(client: Client) -> None:
    got: list[tuple[str, bytes]] = []
    await subscribe_direct(client, "direct.>", lambda subject, data: got.append((subject, data)))
    for i in range(1_000):
        await client.publish(f"direct.{i % 3}", str(i).encode())
    await client.flush()
    await eventually(lambda: len(got) == 1_000)
    assert got == [(f"direct.{i % 3}", str(i).encode()) for i in range(1_000)]


async def test_a_message_subscription_keeps_the_reply_subject_and_headers(
    client: Client,
) -> None:
    got: list[Msg] = []
    subscription = await subscribe_direct_messages(client, "whole.>", got.append)
    await client.publish("whole.a", b"1", reply="back.here", headers={"Nats-Msg-Id": "m-1"})
    await client.publish("whole.b", b"2")
    # A JetStream status arrives the same way: a pull on a consumer with nothing to give.
    js = client.jetstream()
    await js.add_stream(name="EMPTY", subjects=["empty.>"])
    await js.add_consumer("EMPTY", durable_name="none")
    await client.publish(
        "$JS.API.CONSUMER.MSG.NEXT.EMPTY.none", b'{"batch":1,"no_wait":true}', reply="whole.pull"
    )
    await client.flush()
    await eventually(lambda: len(got) == 3)
    first, second, status = got
    assert (first.subject, first.reply, first.data) == ("whole.a", "back.here", b"1")
    assert first.headers == {"Nats-Msg-Id": "m-1"}
    assert (second.reply, second.headers) == ("", None)
    assert status.headers is not None and status.headers["Status"] == "404"
    await unsubscribe_direct(client, subscription)
    await client.publish("whole.a", b"3")
    await client.flush()
    await asyncio.sleep(0.05)
    assert len(got) == 3


async def test_a_direct_subscription_starts_no_task(client: Client) -> None:
    before = len(asyncio.all_tasks())
    for i in range(100):
        await subscribe_direct(client, f"idle.{i}", lambda subject, data: None)
    assert len(asyncio.all_tasks()) == before  # nats-py's cb subscriptions start one each


async def test_a_failing_handler_is_logged_and_the_reader_goes_on(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(subject: str, data: bytes) -> None:
        raise RuntimeError("handler bug")

    got: list[bytes] = []
    await subscribe_direct(client, "broken", broken)
    await subscribe_direct(client, "fine", lambda subject, data: got.append(data))
    await client.publish("broken", b"1")
    await client.publish("fine", b"2")
    await client.flush()
    await eventually(lambda: got == [b"2"])
    assert any("handling a message on b'broken' failed" in r.getMessage() for r in caplog.records)
    assert client.is_connected


async def test_unsubscribing_stops_delivery_and_other_subscriptions_keep_theirs(
    client: Client,
) -> None:
    first: list[bytes] = []
    second: list[bytes] = []
    subscription = await subscribe_direct(client, "s", lambda subject, data: first.append(data))
    await subscribe_direct(client, "s", lambda subject, data: second.append(data))
    await client.publish("s", b"a")
    await client.flush()
    await eventually(lambda: first == [b"a"] and second == [b"a"])
    await unsubscribe_direct(client, subscription)
    await client.publish("s", b"b")
    await client.flush()
    await eventually(lambda: second == [b"a", b"b"])
    assert first == [b"a"]
    await unsubscribe_direct(client, subscription)  # twice: harmless


async def test_direct_subscriptions_are_back_after_the_server_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with NatsServer(store_dir=tmp_path / "s") as server:
        client = await nats.connect(server.url, reconnect_time_wait=0.1)
        try:
            got: list[bytes] = []
            await subscribe_direct(client, "back", lambda subject, data: got.append(data))
            await server.restart()
            await eventually(lambda: client.is_connected)
            await client.flush()
            await client.publish("back", b"after")
            await client.flush()
            await eventually(lambda: got == [b"after"])
        finally:
            await client.close()
