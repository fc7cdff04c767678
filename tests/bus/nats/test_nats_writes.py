"""The coalescing flusher: what several callbacks publish in one loop turn leaves together."""

from __future__ import annotations

import asyncio

import nats
import pytest

from natsbus.bus.nats.connection import close_connection, open_connection
from natsbus.bus.nats.options import NatsConnectOptions
from natsbus.bus.nats.writes import _coalescing_flusher, coalesce_writes


async def _nothing() -> None:
    return None


async def _quiet(error: Exception) -> None:
    return None


async def test_a_bus_connection_coalesces_and_still_delivers_everything(nats_url: str) -> None:
    client = await open_connection(
        NatsConnectOptions(servers=(nats_url,)), "data", on_reconnected=_nothing, on_error=_quiet
    )
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
