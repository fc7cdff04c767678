"""Passwords, tokens, NKEY seeds and credentials never appear in logs or errors, however given."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

import nkeys
import pytest

from natsbus import BusUnavailableError, NatsBus, NatsConnectOptions
from natsbus._redact import redact_url
from natsbus.cli import main
from natsbus.testing import NatsServer

from helpers.auth import configured_server


def everything_said(error: BaseException | None, caplog: pytest.LogCaptureFixture) -> str:
    """Every log line of the test and the whole traceback of ``error``, causes included."""
    said = [record.getMessage() for record in caplog.records]
    said += [record.exc_text or "" for record in caplog.records]
    if error is not None:
        said += traceback.format_exception(error)
    return "\n".join(said)


def test_urls_are_shown_without_their_secret() -> None:
    assert redact_url("nats://alice:s3cret@host:4222") == "nats://alice:***@host:4222"
    assert redact_url("tls://t0ken@host:4222") == "tls://***@host:4222"
    assert redact_url("nats://host:4222") == "nats://host:4222"
    options = NatsConnectOptions(
        servers=("nats://alice:pw1@a:1",), user="bob", password="pw2", token="tok3"
    )
    assert "pw2" not in repr(options) and "tok3" not in repr(options)
    assert options.redact("pw1 pw2 tok3 alice") == "*** *** *** alice"


@pytest.mark.parametrize(
    ("server_args", "url_auth", "options", "secret"),
    [
        pytest.param(("--user", "alice", "--pass", "right"), "alice:s3cret-pw@", {}, "s3cret-pw"),
        pytest.param(("--auth", "right-token"), "s3cret-token@", {}, "s3cret-token"),
        pytest.param(
            ("--user", "alice", "--pass", "right"),
            "",
            {"user": "alice", "password": "s3cret-pw2"},
            "s3cret-pw2",
        ),
        pytest.param(("--auth", "right-token"), "", {"token": "s3cret-tok2"}, "s3cret-tok2"),
    ],
    ids=["url-password", "url-token", "option-password", "option-token"],
)
async def test_a_refused_secret_appears_nowhere(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    server_args: tuple[str, ...],
    url_auth: str,
    options: dict[str, str],
    secret: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with NatsServer(store_dir=tmp_path / "s", args=server_args) as server:
        url = server.url.replace("nats://", f"nats://{url_auth}")
        connect = NatsConnectOptions(servers=(url,), connect_attempts=1, **options)  # type: ignore[arg-type]
        bus = NatsBus(channel="c", connect_options=connect)
        with pytest.raises(BusUnavailableError) as caught:
            await bus.start()
    said = everything_said(caught.value, caplog)
    assert "could not connect" in said  # the error is there, only the secret is not
    assert secret not in said


async def test_a_working_password_appears_nowhere_through_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    args = ("--user", "alice", "--pass", "right-pw-123")
    async with NatsServer(store_dir=tmp_path / "s", args=args) as server:
        url = server.url.replace("nats://", "nats://alice:right-pw-123@")
        bus = NatsBus(servers=url, channel="c")
        async with bus:
            await server.restart()  # reconnects, and the errors nats-py reports meanwhile
            statistics = bus.statistics()
    assert "right-pw-123" not in everything_said(None, caplog)
    assert "right-pw-123" not in repr(statistics)


def test_the_command_line_shows_no_password(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = main(
        [
            "run",
            "tests.peers.cli_workers:Idle",
            "--nats-url",
            "nats://alice:cli-s3cret@127.0.0.1:1",
            "--log-level=DEBUG",
        ]
    )
    assert code != 0
    out, err = capsys.readouterr()
    said = out + err + everything_said(None, caplog)
    assert "alice" in said or "127.0.0.1" in said  # it did say where it tried
    assert "cli-s3cret" not in said


def user_seed() -> bytes:
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)


async def test_an_nkey_seed_connects_and_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed, stranger = user_seed(), user_seed()
    public = nkeys.from_seed(seed).public_key.decode()
    (tmp_path / "user.nk").write_bytes(seed)
    (tmp_path / "stranger.nk").write_bytes(stranger)
    config = f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n'
    async with configured_server(tmp_path, config) as server:

        def bus_with(seed_file: str) -> NatsBus:
            options = NatsConnectOptions(
                servers=(server.url,), nkeys_seed=str(tmp_path / seed_file), connect_attempts=1
            )
            return NatsBus(channel="c", connect_options=options)

        async with bus_with("user.nk") as bus:
            assert bus.connections() == {"system": True, "data": True}
        with pytest.raises(BusUnavailableError) as caught:
            await bus_with("stranger.nk").start()
    said = everything_said(caught.value, caplog)
    assert "could not connect" in said
    assert seed.decode() not in said and stranger.decode() not in said


async def test_a_credentials_file_without_a_jwt_is_refused_and_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = user_seed().decode()
    creds = tmp_path / "user.creds"
    # A seed, but no JWT: nats-py 2.16 would loop for ever looking for it; the bus refuses
    # the file first, naming it without quoting it.
    creds.write_text(f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
    public = nkeys.from_seed(user_seed()).public_key.decode()
    config = f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n'
    async with configured_server(tmp_path, config) as server:  # asks for a signed nonce
        options = NatsConnectOptions(
            servers=(server.url,), user_credentials=str(creds), connect_attempts=1
        )
        bus = NatsBus(channel="c", connect_options=options)
        with pytest.raises(BusUnavailableError) as caught:
            await bus.start()
        await bus.stop()
    said = everything_said(caught.value, caplog)
    assert "not a NATS .creds file" in said and str(creds) in said
    assert seed not in said
