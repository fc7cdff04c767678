"""Opening and closing one of a NatsBus's two connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from nats.aio.client import Client

from natsbus.bus.nats.options import NatsConnectOptions
from natsbus.bus.nats.writes import coalesce_writes
from natsbus.errors import BusUnavailableError

__all__ = ["close_connection", "open_connection"]

logger = logging.getLogger(__name__)


async def open_connection(
    options: NatsConnectOptions,
    lane: str,
    *,
    on_reconnected: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], Awaitable[None]],
) -> Client:
    """Connect one lane, giving up after ``options.connect_attempts`` per server.

    nats-py applies one attempt limit to the first connection and to reconnects; with
    "forever" a wrong password would hang the bus's start. This connects with a bounded number
    of attempts, then switches the live client to the reconnect policy asked for.

    Args:
        options: Servers, credentials, TLS and retry settings.
        lane: ``"system"`` or ``"data"``, for the connection name and the error.
        on_reconnected: Called after every reconnect.
        on_error: Called with every error the client reports.

    Returns:
        The connected client.

    Raises:
        BusUnavailableError: No server could be reached, or every one refused the connection
            (bad credentials, TLS); the last error is in the message.
    """
    if options.user_credentials is not None:
        check_credentials_file(options.user_credentials)
    kwargs = options.connect_kwargs(lane=lane)
    kwargs["max_reconnect_attempts"] = options.connect_attempts
    last_error: list[BaseException] = []

    async def remember(error: Exception) -> None:
        # A refusal from the server (bad credentials) says more than the connection reset
        # that follows it: keep the last error that is not a plain socket error, if any.
        if not last_error or not isinstance(error, OSError):
            last_error[:] = [error]
        await on_error(error)

    client = Client()
    coalesce_writes(client)  # before connect: the flusher starts there
    try:
        await client.connect(**kwargs, reconnected_cb=on_reconnected, error_cb=remember)
    except Exception as error:
        cause = last_error[0] if last_error else error
        raise BusUnavailableError(
            f"could not connect the {lane} lane to {options.redacted_servers()}:"
            f" {options.redact(str(cause))}"
        ) from error
    client.options["max_reconnect_attempts"] = options.max_reconnect_attempts
    return client


_CREDENTIALS_PARTS: Final = (b"BEGIN NATS USER JWT", b"BEGIN USER NKEY SEED")


def check_credentials_file(path: str) -> None:
    """Refuse a ``.creds`` file nats-py could not use, before nats-py reads it.

    nats-py 2.16 looks for the JWT line by line with no end-of-file check: a file without one
    (a bare seed, a wrong file) would block the event loop for ever at connect.

    Raises:
        BusUnavailableError: The file cannot be read or lacks the user JWT or the seed (the
            message names the file, never its contents).
    """
    try:
        contents = Path(path).read_bytes()
    except OSError as error:
        raise BusUnavailableError(
            f"cannot read the credentials file {path!r}: {error.strerror}"
        ) from None
    missing = [part.decode() for part in _CREDENTIALS_PARTS if part not in contents]
    if missing:
        raise BusUnavailableError(
            f"the credentials file {path!r} is not a NATS .creds file: it has no"
            f" {' and no '.join(missing)} section"
        )


async def close_connection(client: Client) -> None:
    """Close a connection, whatever state it is in; never raises.

    nats-py 2.16 flushes what it still buffers before it closes, and when the server has just
    gone that flush raises half-way through ``close()``: the subscriptions' delivery tasks
    (the request multiplexer's among them) are then never cancelled and the socket is never
    closed. This finishes that work, so that a bus that failed to start, or stopped while
    the server was away, leaves no task and no socket behind.
    """
    try:
        await client.close()
    except Exception:
        logger.debug("closing a NATS connection failed; finishing the close", exc_info=True)
    else:
        return
    # The rest of nats-py's own close, which the failed flush skipped.
    tasks: list[asyncio.Task[Any]] = []
    for subscription in list(client._subs.values()):
        task: asyncio.Task[Any] | None = subscription._wait_for_msgs_task
        if task is not None and not task.done():
            task.cancel()
            tasks.append(task)
    client._subs.clear()
    await asyncio.gather(*tasks, return_exceptions=True)
    transport = client._transport
    if transport is not None:
        transport.close()  # type: ignore[no-untyped-call]
