"""Make a nats-py connection share the event loop while it reads a backlog.

nats-py's read loop parses every byte the socket has buffered, in 32 KiB chunks, without ever
yielding: ``StreamReader.read`` returns at once while its buffer holds data. When a flood of
data messages lands (hundreds of KiB), the data connection's reader holds the loop for tens of
milliseconds, and a cancel waiting on the system connection waits with it. The wrapper feeds the
parser smaller pieces (it keeps partial messages between calls, so this changes nothing it
parses) and yields to the loop whenever it has held it for longer than a time slice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from nats.aio.client import Client

__all__ = ["yield_between_reads"]

logger = logging.getLogger(__name__)


_PIECE: Final = 4096


def yield_between_reads(client: Client, time_slice: float) -> bool:
    """Wrap the client's protocol parser so that parsing a backlog yields every ``time_slice``.

    The parser object lives as long as the client (reconnects reset it, they do not replace
    it), so wrapping it once is enough.

    Args:
        client: A nats-py client, connected or not.
        time_slice: Seconds of parsing after which the loop gets a turn.

    Returns:
        False when this nats-py has no parser where expected (the bus then works as before,
        only with less fair reads).
    """
    parser: Any = getattr(client, "_ps", None)
    parse = getattr(parser, "parse", None)
    if parse is None:
        logger.warning("nats-py internals changed: reads are not interleaved with dispatch")
        return False
    if getattr(parse, "_natsbus_yields", False):
        return True

    async def parse_then_yield(data: bytes) -> None:
        started = time.perf_counter()
        for offset in range(0, len(data), _PIECE):
            await parse(data[offset : offset + _PIECE])
            if time.perf_counter() - started > time_slice:
                await asyncio.sleep(0)
                started = time.perf_counter()

    parse_then_yield._natsbus_yields = True  # type: ignore[attr-defined]
    parser.parse = parse_then_yield
    return True
