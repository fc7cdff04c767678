"""parse_headers gives what nats-py's own header parsing gives, for what the server sends."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from natsbus.bus.nats.headers import parse_headers

SHAPES = [
    b"NATS/1.0\r\nNats-Msg-Id: ans:abc:1\r\nNats-TTL: 300\r\n\r\n",
    b"NATS/1.0 404 No Messages\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n",
    b"NATS/1.0 409 Consumer Deleted\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0 100 FlowControl Request\r\n\r\n",
    b"NATS/1.0\r\nName:Value\r\nTabbed:\tx\r\nno colon\r\nSp ace: dropped\r\n\r\n",
    b"NATS/1.0\r\nUtf: caf\xc3\xa9\r\nBad: \xff\xfe\r\nN\xc3\xa4me: non-ascii name\r\n\r\n",
    b"NATS/1.0\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
]


def nats_py(raw: bytes) -> dict[str, str] | None:
    return asyncio.run(Client()._process_headers(raw))


@pytest.mark.parametrize("raw", SHAPES)
def test_the_server_s_shapes_parse_as_nats_py_parses_them(raw: bytes) -> None:
    assert parse_headers(raw) == nats_py(raw)


def test_an_empty_block_is_no_headers() -> None:
    assert parse_headers(b"") is None


_NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"))
_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF)).map(str.strip)


@given(st.dictionaries(_NAMES.filter(bool), _VALUES, max_size=6))
def test_any_headers_nats_py_sends_come_back_the_same(headers: dict[str, str]) -> None:
    raw = b"NATS/1.0\r\n" + b"".join(
        f"{name}: {value}\r\n".encode() for name, value in headers.items()
    )
    raw += b"\r\n"
    assert parse_headers(raw) == nats_py(raw) == (headers or None)
