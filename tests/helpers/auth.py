"""nats-server configurations with users (and accounts) whose permissions natsbus generated."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import nats

from natsbus.access import PermissionSet
from natsbus.bus.nats import NatsConnectOptions
from natsbus.testing import NatsServer

PASSWORD = "s3cret-pw"


def user_block(name: str, permissions: PermissionSet | None) -> str:
    """One entry of a ``users`` list; None gives the user every permission."""
    granted = "" if permissions is None else f",\n{permissions.to_server_config('      ')}"
    return f"    {{ user: {json.dumps(name)}, password: {json.dumps(PASSWORD)}{granted} }}"


def server_config(
    users: Mapping[str, PermissionSet | None] | None = None,
    accounts: Mapping[str, Mapping[str, PermissionSet | None]] | None = None,
) -> str:
    """A configuration with ``users`` in the global account, or with JetStream ``accounts``."""
    if accounts is None:
        entries = ",\n".join(user_block(n, p) for n, p in (users or {}).items())
        return f"authorization {{\n  users: [\n{entries}\n  ]\n}}\n"
    blocks = []
    for account, members in accounts.items():
        entries = ",\n".join(user_block(n, p) for n, p in members.items())
        blocks.append(f"  {account}: {{\n  jetstream: enabled\n  users: [\n{entries}\n  ]\n  }}")
    return "accounts {\n" + "\n".join(blocks) + "\n}\n"


def login(server: NatsServer, user: str, **options: object) -> NatsConnectOptions:
    """Connect options for one of the configuration's users."""
    return NatsConnectOptions(
        servers=(server.url,),
        user=user,
        password=PASSWORD,
        connect_attempts=1,
        **options,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def configured_server(tmp_path: Path, config: str) -> AsyncIterator[NatsServer]:
    """A JetStream nats-server started with ``config``."""
    path = tmp_path / "nats.conf"
    path.write_text(config)
    async with NatsServer(store_dir=tmp_path / "store", args=["-c", str(path)]) as server:
        yield server


async def raw_connection(server: NatsServer, user: str, **options: Any) -> tuple[Any, list[str]]:
    """A plain nats-py connection as ``user``, and the errors the server reports to it.

    The errors are kept lowercased, as nats-py words them (``permissions violation ...``).
    """
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error).lower())

    client = await nats.connect(
        server.url, user=user, password=PASSWORD, error_cb=on_error, no_echo=True, **options
    )
    return client, errors
