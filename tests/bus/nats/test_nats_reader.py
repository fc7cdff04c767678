"""The frame reader: direct subscriptions served in place, every other frame to nats-py whole."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ProtocolError

from natsbus.bus.nats.direct import direct_routes, subscribe_direct, subscribe_direct_messages
from natsbus.bus.nats.reader import read_frames

from helpers.frames import eventually

PAYLOADS = [b"", b"a", b"\r\n", b"MSG x 1 2\r\n", bytes(range(256)) * 4]


def frames() -> bytes:
    """Messages for sid 1 (payload route), 2 (message route) and 3 (nats-py's), a PING."""
    out = bytearray()
    for i, payload in enumerate(PAYLOADS):
        out += b"MSG s.%d 1 %d\r\n%s\r\n" % (i, len(payload), payload)
        headers = b"NATS/1.0\r\nNats-Msg-Id: m-%d\r\n\r\n" % i
        size = len(headers) + len(payload)
        out += b"HMSG h.%d 2 r.%d %d %d\r\n%s%s\r\n" % (i, i, len(headers), size, headers, payload)
        out += b"MSG q.%d 3 reply.%d %d\r\n%s\r\n" % (i, i, len(payload), payload)
    out += b"PING\r\n"
    return bytes(out)


class Recorded:
    def __init__(self, client: Client) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self.messages: list[tuple[str, str, bytes, dict[str, str] | None]] = []
        self.passed: list[tuple[int, bytes, bytes, bytes]] = []
        self.pings = 0
        routes = direct_routes(client)
        routes.payloads[1] = lambda subject, data: self.payloads.append((subject, data))
        routes.messages[2] = lambda msg: self.messages.append(
            (msg.subject, msg.reply, msg.data, msg.headers)
        )

        async def nats_py_message(  # what nats-py's parser hands on for its own sid
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            self.passed.append((sid, subject, reply, data))

        async def ping() -> None:
            self.pings += 1

        client._ps.nc = _Shim(nats_py_message, ping)  # type: ignore[assignment]


class _Shim:
    """Stands in for the client behind nats-py's parser: records what reaches it."""

    def __init__(self, on_msg: object, on_ping: object) -> None:
        self._process_msg = on_msg
        self._process_ping = on_ping


async def read_in_pieces(data: bytes, cut: list[int]) -> Recorded:
    client = Client()
    recorded = Recorded(client)
    assert read_frames(client, 1.0)
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cut)})
    for start, stop in itertools.pairwise(edges):
        await client._ps.parse(data[start:stop])
    return recorded


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0), max_size=12))
def test_frames_cut_anywhere_are_read_as_whole_frames(cut: list[int]) -> None:
    recorded = asyncio.run(read_in_pieces(frames(), cut))
    assert recorded.payloads == [(f"s.{i}", p) for i, p in enumerate(PAYLOADS)]
    assert recorded.messages == [
        (f"h.{i}", f"r.{i}", p, {"Nats-Msg-Id": f"m-{i}"}) for i, p in enumerate(PAYLOADS)
    ]
    assert recorded.passed == [
        (3, f"q.{i}".encode(), f"reply.{i}".encode(), p) for i, p in enumerate(PAYLOADS)
    ]
    assert recorded.pings == 1


@pytest.mark.parametrize(
    "frame",
    [b"MSG s 1 x\r\nab\r\n", b"MSG s\r\n", b"MSG s 1 2 3 4\r\nab\r\n", b"HMSG s 2 x 2\r\nab\r\n"],
)
async def test_a_malformed_message_line_is_a_protocol_error(frame: bytes) -> None:
    client = Client()
    Recorded(client)
    read_frames(client, 1.0)
    with pytest.raises(ProtocolError):
        await client._ps.parse(frame)


async def test_a_reset_forgets_the_partial_frame_of_the_old_connection() -> None:
    client = Client()
    recorded = Recorded(client)
    read_frames(client, 1.0)
    await client._ps.parse(b"MSG s.old 1 5\r\nab")  # cut mid-payload, then the connection drops
    client._ps.reset()
    await client._ps.parse(b"MSG s.new 1 2\r\nok\r\n")
    assert recorded.payloads == [("s.new", b"ok")]


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Client]:
    connection = await nats.connect(nats_url)
    assert read_frames(connection, 0.002)
    yield connection
    await connection.close()


async def test_a_connection_read_through_it_serves_every_kind_of_subscription(
    client: Client,
) -> None:
    direct: list[bytes] = []
    whole: list[Msg] = []
    queued: list[bytes] = []
    await subscribe_direct(client, "d.>", lambda subject, data: direct.append(data))
    await subscribe_direct_messages(client, "w.>", whole.append)

    async def on_msg(msg: Msg) -> None:
        queued.append(msg.data)

    await client.subscribe("q.>", cb=on_msg)
    for i in range(2_000):  # several reads' worth, cut wherever the socket cuts them
        await client.publish(f"d.{i % 7}", str(i).encode())
        await client.publish(f"w.{i % 5}", str(i).encode(), headers={"N": str(i)})
        await client.publish(f"q.{i % 3}", str(i).encode())
    await client.flush()  # its PONG comes back through the reader too
    await eventually(lambda: len(direct) == len(whole) == len(queued) == 2_000)
    expected = [str(i).encode() for i in range(2_000)]
    assert direct == expected and queued == expected
    assert [m.data for m in whole] == expected
    assert [m.headers for m in whole[:2]] == [{"N": "0"}, {"N": "1"}]
    reply = await client.request("$JS.API.INFO", b"", timeout=5)  # nats-py's own inbox
    assert b"memory" in reply.data or b"error" in reply.data
