"""The coalescing flusher: what several callbacks publish in one loop turn leaves together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsbus.bus.nats.connection import close_connection, open_connection
from natsbus.bus.nats.options import NatsConnectOptions
from natsbus.bus.nats.writes import (
    ACK_DELAY,
    QUIET_GAP,
    _coalescing_flusher,
    acknowledge_soon,
    coalesce_writes,
    publish_soon,
)

from helpers.frames import eventually


async def _nothing() -> None:
    return None


async def _quiet(error: Exception) -> None:
    return None


async def _bus_connection(url: str) -> Client:
    """A data lane's connection, as a NatsBus opens it (coalescing flusher included)."""
    return await open_connection(
        NatsConnectOptions(servers=(url,)), "data", on_reconnected=_nothing, on_error=_quiet
    )


async def test_a_bus_connection_coalesces_and_still_delivers_everything(nats_url: str) -> None:
    client = await _bus_connection(nats_url)
    receiver = await nats.connect(nats_url)
    try:
        assert client._flusher.__func__ is _coalescing_flusher  # type: ignore[attr-defined]
        got: list[bytes] = []
        done = asyncio.Event()

        async def on_msg(msg: object) -> None:
            got.append(msg.data)  # type: ignore[attr-defined]
            if len(got) == 300:
                done.set()

        await receiver.subscribe("coalesce.test", cb=on_msg)
        await receiver.flush()

        async def publish(start: int) -> None:
            for i in range(start, start + 100):
                await client.publish("coalesce.test", str(i).encode())

        # Three publishers interleaved in the same loop turns, then a flush.
        await asyncio.gather(publish(0), publish(100), publish(200))
        await client.flush(timeout=5)
        await asyncio.wait_for(done.wait(), 5)
        numbers = [int(data) for data in got]
        assert sorted(numbers) == list(range(300))  # none lost, none twice
        for block in range(3):  # each publisher's messages in the order it sent them
            mine = [n for n in numbers if n // 100 == block]
            assert mine == sorted(mine)
    finally:
        await receiver.close()
        await close_connection(client)


def test_a_client_without_the_expected_internals_is_left_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Strange:
        pass

    assert coalesce_writes(Strange()) is False  # type: ignore[arg-type]
    assert "writes are not coalesced" in caplog.text


async def test_flushes_queued_while_the_flusher_waits_are_ended_by_its_one_write(
    nats_url: str,
) -> None:
    client = await _bus_connection(nats_url)
    try:
        writes: list[int] = []
        transport = client._transport
        assert transport is not None
        write = transport.writelines

        def counted(payload: list[bytes]) -> None:
            writes.append(len(payload))
            write(payload)

        transport.writelines = counted  # type: ignore[method-assign]
        # Three publishers in one turn each kick the flusher (as nats-py's publish does when
        # no flush is queued); it takes the first, the other two wait behind it.
        queue = client._flush_queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for i in range(3):
            await client._send_command(f"PUB flush.test  1\r\n{i}\r\n".encode())
            futures.append(loop.create_future())
            queue.put_nowait(futures[-1])
        await asyncio.wait_for(futures[0], 5)
        # One write for the three, and the flushes behind the first end with it, not after
        # an empty round each.
        assert writes == [3] and all(future.done() for future in futures)
        assert queue.empty()
    finally:
        await close_connection(client)


async def server_says(read: Callable[[], Awaitable[int]], expected: int) -> None:
    """Wait until the server's figure ``read()`` is ``expected`` (it has no event to wait on)."""
    async with asyncio.timeout(5):
        while await read() != expected:  # noqa: ASYNC110
            await asyncio.sleep(ACK_DELAY)


async def test_an_acknowledgement_leaves_with_the_next_write_or_soon_after(
    nats_url: str,
) -> None:
    client = await nats.connect(nats_url)
    observer = await nats.connect(nats_url)  # asks the server, without writing for `client`
    try:
        js, server = client.jetstream(), observer.jetstream()
        await server.add_stream(name="ACKS", subjects=["acks.>"])
        await server.publish("acks.one", b"job")
        await server.publish("acks.two", b"job")
        pull = await js.pull_subscribe("acks.>", durable="taker")
        first, second = await pull.fetch(2, timeout=5)

        async def pending() -> int:
            return (await server.consumer_info("ACKS", "taker")).num_ack_pending

        before = len(asyncio.all_tasks())
        assert acknowledge_soon(first) is True
        assert len(asyncio.all_tasks()) == before and first.is_acked  # no task for it
        assert acknowledge_soon(first) is False  # acknowledged once only
        assert client._pending_data_size > 0  # held in the buffer, not written yet
        # Nothing else to carry it: written by the timer, within ACK_DELAY.
        await server_says(lambda: pending(), 1)
        assert acknowledge_soon(second) is True
        await client.publish("elsewhere", b"")  # the next write takes it along
        await server_says(lambda: pending(), 0)
        await server.publish("acks.three", b"job")
        [later] = await pull.fetch(1, timeout=5)
        await client.close()
        assert acknowledge_soon(later) is False  # closed: the caller awaits ack() instead
    finally:
        for connection in (client, observer):
            if not connection.is_closed:
                await connection.close()


async def test_a_message_put_straight_in_the_buffer_arrives_as_nats_py_sends_it(
    nats_url: str,
) -> None:
    client = await nats.connect(nats_url)
    receiver = await nats.connect(nats_url)
    try:
        got: list[Msg] = []

        async def on_msg(msg: Msg) -> None:
            got.append(msg)

        await receiver.subscribe("soon.>", cb=on_msg)
        await receiver.flush()
        headers = {"Nats-Msg-Id": "m-1", "traceparent": " 00-ab-cd-01 ", "Multi": "a\r\nb"}
        assert publish_soon(client, "soon.a", b"plain") is True
        assert publish_soon(client, "soon.b", b"", reply="back", headers=headers) is True
        await client.publish("soon.c", b"x", reply="back", headers=headers)  # nats-py's own
        await client.flush()
        await eventually(lambda: len(got) == 3)
        a, b, c = got
        assert (a.subject, a.reply, a.data, a.headers) == ("soon.a", "", b"plain", None)
        assert (b.reply, b.data) == ("back", b"")
        assert (
            b.headers
            == c.headers
            == {
                "Nats-Msg-Id": "m-1",
                "traceparent": "00-ab-cd-01",
                "Multi": "a  b",
            }
        )
        # What nats-py would refuse or must handle itself goes back to it.
        assert publish_soon(client, "soon.d", b"", headers={"bad key": "v"}) is False
        assert publish_soon(client, "soon.e", b"x" * (client.max_payload + 1)) is False
        await client.close()
        assert publish_soon(client, "soon.f", b"") is False
    finally:
        await receiver.close()
        if not client.is_closed:
            await client.close()


async def test_a_quiet_connection_writes_at_once_and_a_burst_leaves_to_the_flusher(
    nats_url: str,
) -> None:
    client = await _bus_connection(nats_url)
    receiver = await nats.connect(nats_url)
    try:
        got: list[bytes] = []
        all_in = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            got.append(msg.data)
            if len(got) == 5:
                all_in.set()

        await receiver.subscribe("quiet.test", cb=on_msg)
        await receiver.flush()
        writer = client._transport._io_writer  # type: ignore[union-attr]
        writes: list[int] = []
        write = writer.writelines

        def counted(payload: list[bytes]) -> None:
            writes.append(len(payload))
            write(payload)

        writer.writelines = counted  # type: ignore[method-assign]
        buffered: list[int] = []

        def burst() -> None:
            # A timer's callback, alone in its loop turn: nothing else could join the write.
            for i in range(5):
                assert publish_soon(client, "quiet.test", str(i).encode()) is True
                buffered.append(client._pending_data_size)

        # Waited on without polling: when the timer fires the connection is quiet, and no
        # other callback shares its turn.
        asyncio.get_running_loop().call_later(4 * QUIET_GAP, burst)
        await asyncio.wait_for(all_in.wait(), 5)
        # The first message left before publish_soon returned; the other four waited for
        # the flusher, which wrote them together.
        assert buffered[0] == 0 and all(size > 0 for size in buffered[1:])
        assert writes == [1, 4] and client._pending_data_size == 0
        assert got == [str(i).encode() for i in range(5)]
    finally:
        await receiver.close()
        await close_connection(client)


async def test_a_fast_copy_leaves_in_the_write_of_its_stored_message(nats_url: str) -> None:
    client = await _bus_connection(nats_url)
    receiver = await nats.connect(nats_url)
    try:
        got: list[Msg] = []

        async def on_msg(msg: Msg) -> None:
            got.append(msg)

        await receiver.subscribe("pair.>", cb=on_msg)
        await receiver.flush()
        sent = client.stats["out_msgs"]
        assert publish_soon(
            client,
            "pair.stored",
            b"body",
            reply="acks",
            headers={"Nats-Msg-Id": "m-1"},
            copy_to="pair.copy",
            copy_headers={"traceparent": "00-ab-cd-01"},
        )
        # One command pair in the buffer (or already written), counted as two messages.
        assert client.stats["out_msgs"] == sent + 2
        await client.flush()
        await eventually(lambda: len(got) == 2)
        stored, copy = got
        assert (stored.subject, stored.reply, stored.data) == ("pair.stored", "acks", b"body")
        assert stored.headers == {"Nats-Msg-Id": "m-1"}
        assert (copy.subject, copy.reply, copy.data) == ("pair.copy", "", b"body")
        assert copy.headers == {"traceparent": "00-ab-cd-01"}
        # A copy nats-py would refuse sends neither: the caller falls back to nats-py.
        before = client._pending_data_size
        assert not publish_soon(
            client, "pair.stored", b"x", copy_to="pair.copy", copy_headers={"bad key": "v"}
        )
        assert client._pending_data_size == before
    finally:
        await receiver.close()
        await close_connection(client)
