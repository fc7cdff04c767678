"""NatsBus connection options against real servers that demand them: auth, TLS, given clients."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from natsbus import BusTTSSpeakMessage, BusUnavailableError, NatsBus, NatsConnectOptions
from natsbus.testing import NatsServer

from helpers.recorders import Inbox


async def exchange(bus_a: NatsBus, bus_b: NatsBus) -> None:
    """One message from a to b: proves both buses are connected and subscribed."""
    inbox = Inbox("b")
    await bus_b.subscribe(inbox)
    async with bus_a, bus_b:
        await bus_a.send(BusTTSSpeakMessage("hello", source="a", target="b"))
        await inbox.wait_until(lambda: len(inbox.received) == 1)


@pytest.fixture
async def password_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "s", args=("--user", "alice", "--pass", "s3cret"))
    async with server:
        yield server


async def test_user_and_password(password_server: NatsServer) -> None:
    options = NatsConnectOptions(servers=[password_server.url], user="alice", password="s3cret")
    await exchange(NatsBus(connect_options=options), NatsBus(connect_options=options))


async def test_wrong_password_fails_at_start(password_server: NatsServer) -> None:
    options = NatsConnectOptions(servers=[password_server.url], user="alice", password="nope")
    bus = NatsBus(connect_options=options)
    with pytest.raises(BusUnavailableError, match="Authorization Violation"):
        await bus.start()


async def test_token(tmp_path: Path) -> None:
    async with NatsServer(store_dir=tmp_path / "s", args=("--auth", "t0ken")) as server:
        options = NatsConnectOptions(servers=[server.url], token="t0ken")
        await exchange(NatsBus(connect_options=options), NatsBus(connect_options=options))


async def test_existing_clients_are_used_and_left_open(nats_url: str) -> None:
    system, data = await nats.connect(nats_url), await nats.connect(nats_url)
    try:
        await exchange(NatsBus(clients=(system, data)), NatsBus(servers=nats_url))
        assert system.is_connected and data.is_connected  # the bus did not close them
    finally:
        await system.close()
        await data.close()


async def test_unreachable_server_fails_at_start_with_the_reason() -> None:
    options = NatsConnectOptions(servers=["nats://127.0.0.1:9"], connect_attempts=2)
    with pytest.raises(BusUnavailableError, match=r"127\.0\.0\.1:9"):
        await NatsBus(connect_options=options).start()


def test_options_refuse_half_credentials() -> None:
    with pytest.raises(ValueError, match="user and password"):
        NatsConnectOptions(user="alice")
    with pytest.raises(ValueError, match="tls_key_file"):
        NatsConnectOptions(tls_cert_file="client.pem")
    with pytest.raises(ValueError, match="at least one"):
        NatsConnectOptions(servers=[])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "1", "-extfile", "san.ext",
                 "-out", f"{name}.pem", cwd=folder)  # fmt: skip


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_mutual_tls(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    args = (
        "--tlscert", str(certs / "server.pem"), "--tlskey", str(certs / "server.key"),
        "--tlscacert", str(certs / "ca.pem"), "--tlsverify",
    )  # fmt: skip
    async with NatsServer(store_dir=tmp_path / "s", args=args) as server:
        url = server.url.replace("nats://", "tls://")
        options = NatsConnectOptions(
            servers=[url],
            tls_ca_file=str(certs / "ca.pem"),
            tls_cert_file=str(certs / "client.pem"),
            tls_key_file=str(certs / "client.key"),
        )
        await exchange(NatsBus(connect_options=options), NatsBus(connect_options=options))
        # Without a client certificate the server refuses the connection.
        refused = NatsConnectOptions(
            servers=[url], tls_ca_file=str(certs / "ca.pem"), max_reconnect_attempts=0
        )
        with pytest.raises(Exception):  # noqa: B017 (nats-py raises several kinds here)
            await NatsBus(connect_options=refused).start()
