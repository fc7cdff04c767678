"""A connection's reader: whole protocol frames, direct subscriptions served in place.

nats-py 2.16's parser matches every control line against regular expressions, removes each
frame from the front of a ``bytearray`` (copying what follows it, per message) and awaits a
coroutine per message: of a data message's cost to its subscriber, the largest part. It also
parses all the socket has buffered without yielding: when a flood of data lands (hundreds of
KiB), the data connection's reader holds the loop for tens of milliseconds while a cancel
waits on the system connection.

:func:`read_frames` puts a frame splitter in front of it. It finds whole frames in what the
socket gave (a control line, and for ``MSG`` and ``HMSG`` the payload its sizes announce), and
hands a message of a direct subscription (:mod:`natsbus.bus.nats.direct`) to its handler at
once. Every other frame (``PING``, ``INFO``, ``-ERR``, a message for one of nats-py's own
subscriptions) goes to nats-py's parser whole, which parses it as before. A partial frame
waits for the next read. Between frames, the reader yields to the loop whenever it has held
it longer than a time slice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.errors import ProtocolError

from natsbus.bus.nats.direct import direct_routes

__all__ = ["read_frames"]

logger = logging.getLogger(__name__)

_CRLF: Final = b"\r\n"
_MSG: Final = b"MSG "
_HMSG: Final = b"HMSG"

Parse = Callable[[bytes], Awaitable[None]]


def read_frames(client: Client, time_slice: float) -> bool:
    """Read the client's connection through a frame splitter that yields every ``time_slice``.

    The parser object lives as long as the client (a reconnect resets it, which resets the
    splitter too), so installing it once is enough.

    Args:
        client: A nats-py client, connected or not.
        time_slice: Seconds of reading after which the loop gets a turn.

    Returns:
        False when this nats-py has no parser where expected (the client then reads as
        before: no fast path, no yields).
    """
    parser: Any = getattr(client, "_ps", None)
    parse = getattr(parser, "parse", None)
    reset = getattr(parser, "reset", None)
    if parse is None or reset is None:
        logger.warning("nats-py internals changed: reads are not interleaved with dispatch")
        return False
    if isinstance(getattr(parse, "__self__", None), _FrameReader):
        return True
    reader = _FrameReader(client, parse, reset, time_slice)
    parser.parse = reader.feed
    parser.reset = reader.reset
    return True


class _FrameReader:
    """Splits a connection's bytes into frames; see the module's docstring."""

    __slots__ = ("_deliver", "_generation", "_parse", "_reset", "_rest", "_slice")

    def __init__(
        self, client: Client, parse: Parse, reset: Callable[[], None], time_slice: float
    ) -> None:
        self._deliver = direct_routes(client).deliver
        self._parse = parse
        self._reset = reset
        self._slice = time_slice
        self._rest = b""
        self._generation = 0  # a reset (reconnect) while a read awaits ends that read

    def reset(self) -> None:
        """Forget the partial frame of a connection that is gone, and reset nats-py's parser."""
        self._rest = b""
        self._generation += 1
        self._reset()

    async def feed(self, data: bytes = b"") -> None:  # noqa: PLR0912
        """Take what the socket gave: the frames it completes are handled, the rest kept.

        One loop, frames inline: this is the path of every message the connection reads.

        Raises:
            ProtocolError: A message's sizes or subscription id are not numbers, or its
                arguments are too few or too many (nats-py then reconnects).
        """
        buffer = self._rest + data if self._rest else bytes(data)
        self._rest = b""
        generation = self._generation
        deliver, parse, time_slice = self._deliver, self._parse, self._slice
        end = len(buffer)
        position = 0
        frames = 0
        started = time.perf_counter()
        try:
            while position < end:
                line_end = buffer.find(_CRLF, position)
                if line_end < 0:
                    break  # the control line is not all here yet
                start = line_end + 2
                # MSG <subject> <sid> [reply-to] <#bytes>
                # HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
                with_headers = buffer.startswith(_HMSG, position)
                if with_headers or buffer.startswith(_MSG, position):
                    args = buffer[position + 4 + with_headers : line_end].split()
                    count = len(args) - with_headers  # without the header size
                    if not 3 <= count <= 4:
                        raise ProtocolError
                    stop = start + int(args[-1])
                    if stop + 2 > end:
                        break  # the payload is not all here yet
                    reply = args[2] if count == 4 else b""
                    if with_headers:
                        payload = start + int(args[-2])
                        headers: bytes | None = buffer[start:payload]
                    else:
                        payload, headers = start, None
                    handled = deliver(int(args[1]), args[0], reply, buffer[payload:stop], headers)
                    after = stop + 2
                else:  # PING, PONG, +OK, -ERR, INFO, or what nats-py calls unknown
                    handled = False
                    after = start
                if not handled:
                    await parse(buffer[position:after])
                position = after
                frames += 1
                if not handled or frames % 16 == 0:  # a clock read per message costs
                    if time.perf_counter() - started > time_slice:
                        await asyncio.sleep(0)
                        started = time.perf_counter()
                    if generation != self._generation:
                        return  # the connection was reset meanwhile: these bytes are stale
        except (ValueError, IndexError) as error:  # a size or id not a number, args missing
            raise ProtocolError from error
        if position < end:
            self._rest = buffer[position:]
