"""Fewer ``send()`` calls per job: writes coalesced across callbacks, acknowledgements held.

nats-py queues every command in a pending buffer and wakes its flusher task, which writes the
buffer out on the next turn of the event loop. A job pipeline publishes from many callbacks
(a request here, an acknowledgement there, an answer from a handler), each in a turn of its
own, so nearly every message leaves in a ``send()`` of its own: a fifth of the requester's
CPU at 64 jobs in flight, and as much again on the server reading them. The flusher below is
nats-py's own, but lets the loop run one more turn before it writes (when other callbacks are
waiting to run), so that what they publish goes in the same write, and ends every flush
queued meanwhile with that write. It delays a write by one loop turn (microseconds), never
by time.

Measured with and without it in one run (5 interleaved pairs), twice: at 64 jobs in flight
(``bench/jobs_floor.py``'s natsbus side) 1 to 5% more jobs per second and 6 to 9% less server
CPU per job; for a tight loop of data messages (``bench/bus_nats.py``) 2% fewer per second,
within the noise. Waiting only when a single command is pending was tried too: it lost the
gain on jobs.

A message published on a quiet connection, with no other callback ready to run, is written
at once instead (:func:`_write_now`): nothing could join its write, and a loop turn later the
publishing task would have finished its own work first. Measured with and without it in one
run (4 interleaved pairs): at 64 jobs in flight 4,595 against 4,089 jobs per second and 11%
less server CPU per job; a pipecat job round trip in one process 10% shorter.

Acknowledgements go further (:func:`acknowledge_soon`): they wait, up to :data:`ACK_DELAY`,
for the next write on their connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import types
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg

__all__ = ["ACK_DELAY", "QUIET_GAP", "acknowledge_soon", "coalesce_writes", "publish_soon"]

logger = logging.getLogger(__name__)

_NEEDED = ("_flush_queue", "_pending", "_pending_data_size", "_transport", "_flusher")


def coalesce_writes(client: Client) -> bool:
    """Replace the client's flusher, before it connects, by one that coalesces writes.

    nats-py starts the flusher at connect and again at each reconnect, by calling
    ``self._flusher()``: an attribute of the instance takes its place each time.

    Returns:
        False when this nats-py does not look as expected (the client then writes as
        before).
    """
    if not all(hasattr(client, name) for name in _NEEDED):
        logger.warning("nats-py internals changed: writes are not coalesced")
        return False
    client._flusher = types.MethodType(_coalescing_flusher, client)  # type: ignore[method-assign]
    setattr(client, _LAST_WRITE, 0.0)  # publish_soon may write at once (_write_now)
    return True


def publish_soon(
    client: Client,
    subject: str,
    payload: bytes,
    *,
    reply: str = "",
    headers: dict[str, str] | None = None,
    copy_to: str | None = None,
    copy_headers: dict[str, str] | None = None,
) -> bool:
    """Put a message in the client's pending buffer and see it written, without a coroutine.

    What nats-py's ``publish`` does for a connected client, in one function instead of four
    coroutines: about a third of a data message's cost to its sender. The subject is not
    checked (natsbus builds its subjects from encoded tokens). The buffer is written at once
    when nothing else could join it (:func:`_write_now`), else by the flusher.

    Args:
        client: The connection.
        subject: Where to publish.
        payload: The message.
        reply: Its reply subject, if any.
        headers: Its NATS headers, if any.
        copy_to: Also publish ``payload`` on this subject, right after and in the same write:
            a stored message's fast copy (:mod:`natsbus.bus.nats.copies`) leaves with it.
        copy_headers: The copy's headers, if any.

    Returns:
        False when nats-py's own ``publish`` must do it (not connected, draining, the payload
        over the server's limit, the pending buffer over its own, a header nats-py would
        refuse, or nats-py is not as expected): the caller then awaits ``client.publish``
        (nothing was buffered, the copy neither).
    """
    any_client: Any = client
    queue = getattr(any_client, "_flush_queue", None)
    if queue is None or not any_client.is_connected or any_client.is_draining_pubs:
        return False
    if len(payload) > any_client._max_payload:
        return False
    command = _command(subject, reply, payload, headers)
    if command is None:
        return False
    count = 1
    if copy_to is not None:
        copy = _command(copy_to, "", payload, copy_headers)
        if copy is None:
            return False
        command += copy
        count = 2
    if not _append(any_client, command, count):
        return False
    any_client.stats["out_bytes"] += count * len(payload)
    if queue.empty() and not _write_now(any_client):
        queue.put_nowait(asyncio.get_running_loop().create_future())
    return True


def _command(
    subject: str, reply: str, payload: bytes, headers: dict[str, str] | None
) -> bytes | None:
    """The PUB (or HPUB) command nats-py would write, or None where it would refuse it."""
    if not headers:
        return b"".join((f"PUB {subject} {reply} {len(payload)}\r\n".encode(), payload, b"\r\n"))
    block = _header_block(headers)
    if block is None:
        return None
    size = len(block)
    return b"".join(
        (
            f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode(),
            block,
            payload,
            b"\r\n",
        )
    )


_HEADER_KEY: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES: Final = str.maketrans({"\r": " ", "\n": " "})


def _header_block(headers: dict[str, str]) -> bytes | None:
    """The header block nats-py would write, or None where it would refuse a header."""
    lines = ["NATS/1.0\r\n"]
    for name, value in headers.items():
        key = name.strip()
        if not key:
            continue  # nats-py skips an empty name
        if not _HEADER_KEY.fullmatch(key) or not isinstance(value, str):
            return None  # nats-py raises BadHeaderError (or fails): let it
        lines.append(f"{key}: {value.strip().translate(_NEWLINES)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


def _append(client: Any, command: bytes, count: int = 1) -> bool:
    """Add ``count`` commands to the pending buffer, unless that takes it over its limit."""
    limit = client._max_pending_size
    if limit > 0 and client._pending_data_size + len(command) > limit:
        return False
    client._pending.append(command)
    client._pending_data_size += len(command)
    client.stats["out_msgs"] += count
    return True


_LAST_WRITE: Final = "_natsbus_last_write"

QUIET_GAP: Final = 0.0005
"""Seconds without a write after which a connection counts as quiet, and a message published
on it is written at once (:func:`_write_now`). A stream of messages writes more often than
this (a flood every few microseconds, 64 jobs in flight every hundred or so), so it keeps
leaving in the flusher's coalesced writes; a job's request or answer, or an audio frame every
20 ms, leaves at once."""


def _write_now(client: Any) -> bool:
    """Write the pending buffer at once: the connection is quiet and nothing could join it.

    The flusher would write this buffer a loop turn later, after whatever the publishing task
    still does (a handler's remaining work, say: 50 to 100 us here), and alone, since no
    other callback is ready to run. Written now, the server works on it meanwhile: a job's
    round trip between two pipecat workers in one process, 10% shorter (``bench/pipecat.py``).
    Only on a quiet connection (:data:`QUIET_GAP`), and only if the socket took the last
    write whole: a task that publishes in a loop leaves its messages to the flusher, which
    writes many at once.

    Returns:
        False when the flusher must write it (other callbacks are ready, the connection wrote
        recently, or the transport holds unsent bytes).
    """
    loop = asyncio.get_running_loop()
    now = loop.time()
    if getattr(loop, "_ready", True) or now - getattr(client, _LAST_WRITE, now) < QUIET_GAP:
        return False
    writer = getattr(client._transport, "_io_writer", None)
    if writer is None or writer.transport.get_write_buffer_size():
        return False
    writer.writelines(client._pending)
    client._pending = []
    client._pending_data_size = 0
    setattr(client, _LAST_WRITE, now)
    return True


def acknowledge_soon(msg: Msg) -> bool:
    """Acknowledge a JetStream delivery with the connection's next write, or within 5 ms.

    An acknowledgement is a few bytes no one waits for, but written on its own it costs a
    ``send()`` here and a wake-up on the server: on a job's round trip, two of its four
    writes (the request's acknowledgement and the instance consumer's), and on this
    machine a ``send()`` on loopback takes 40 to 250 us. So it goes into the client's
    pending buffer without waking the flusher: the next publish on that connection carries
    it, and a timer writes it if none comes within :data:`ACK_DELAY`. No task is needed
    either (``Msg.ack()`` is a coroutine: a task for each, from a reader's callback).

    Returns:
        False when it cannot be done so (not connected, the pending buffer is over its
        limit, or nats-py is not as expected): acknowledge with ``await msg.ack()``.
    """
    if not isinstance(msg, Msg) or not msg.reply or msg._ackd:
        return False
    client: Any = msg._client
    if getattr(client, "_flush_queue", None) is None or not client.is_connected:
        return False
    reply = msg.reply
    if not _append(client, f"PUB {reply}  0\r\n\r\n".encode()):
        return False
    msg._ackd = True
    if getattr(client, _ACK_TIMER, None) is None:
        timer = asyncio.get_running_loop().call_later(ACK_DELAY, _write_held, client)
        setattr(client, _ACK_TIMER, timer)
    return True


ACK_DELAY: Final = 0.005
"""Seconds an acknowledgement waits at most for another write to leave with: longer than a
job's round trip, so that one job after another acknowledges each with the next answer, and
far below any ``ack_wait``. A process that dies within it leaves answered requests
unacknowledged, which their redelivery finds answered (:mod:`natsbus.bus.nats.answers`)."""

_ACK_TIMER: Final = "_natsbus_ack_timer"


def _write_held(client: Any) -> None:
    """Wake the flusher for what acknowledgements left in the buffer (if still there)."""
    setattr(client, _ACK_TIMER, None)
    queue = client._flush_queue
    # A flush already queued takes them with it; nothing is sent while disconnected (nats-py
    # writes its buffer after the reconnect).
    if client._pending_data_size > 0 and client.is_connected and queue.empty():
        queue.put_nowait(asyncio.get_running_loop().create_future())


async def _coalescing_flusher(self: Any) -> None:
    """nats-py 2.16's ``Client._flusher``, with one more loop turn before each write."""
    loop = asyncio.get_running_loop()
    while True:
        if not self.is_connected or self.is_connecting:
            break
        futures: list[asyncio.Future[None]] = [await self._flush_queue.get()]
        try:
            # The other callbacks of this turn publish into the same write. Inside the try:
            # cancelled here, the flush still ends (a flush() waiting on it never hangs).
            # With none waiting to run, nothing can publish before the next write: no wait.
            ready = getattr(loop, "_ready", None)
            if ready is None or ready:
                await asyncio.sleep(0)
            # What was published meanwhile queued flushes of its own: this write is theirs
            # too (without this, each costs the flusher an empty round of two loop turns).
            queue = self._flush_queue
            while not queue.empty():
                futures.append(queue.get_nowait())
            if self._pending_data_size > 0:
                self._transport.writelines(self._pending[:])
                self._pending = []
                self._pending_data_size = 0
                setattr(self, _LAST_WRITE, loop.time())
                await self._transport.drain()
        except OSError as error:
            await self._error_cb(error)
            await self._process_op_err(error)
            break
        except (asyncio.CancelledError, RuntimeError, AttributeError):
            break  # RuntimeError: the event loop is closed
        finally:
            for future in futures:
                if not future.done():  # it may have been cancelled (nats-py issue #624)
                    future.set_result(None)
