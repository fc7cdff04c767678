"""``natsbus run``'s NATS options: secrets from the environment, files and TLS by path."""

from __future__ import annotations

import argparse
import json

import pytest

import natsbus
from natsbus._cli_nats import add_nats_arguments, nats_options
from natsbus.bus.nats.options import JetStreamOptions
from natsbus.cli import main


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats-url", action="append", default=[])
    add_nats_arguments(parser)
    return parser.parse_args(list(argv))


def test_secrets_come_from_the_environment() -> None:
    args = parse("--nats-url", "nats://a:4222", "--nats-url", "nats://b:4222")
    environ = {"NATSBUS_NATS_USER": "alice", "NATSBUS_NATS_PASSWORD": "s3cret"}
    connect, jetstream = nats_options(args, name="w", environ=environ)
    assert connect.servers == ("nats://a:4222", "nats://b:4222")
    assert (connect.user, connect.password, connect.token) == ("alice", "s3cret", None)
    assert connect.name == "w"
    assert jetstream.replicas == 1
    assert jetstream.max_consumers is None


def test_files_tls_and_replicas() -> None:
    args = parse(
        "--nats-url", "tls://n:4222", "--nats-creds", "/s/u.creds", "--tls-ca", "/t/ca.pem",
        "--tls-cert", "/t/c.pem", "--tls-key", "/t/c.key", "--tls-hostname", "nats",
        "--stream-replicas", "3", "--stream-max-consumers", "5000",
    )  # fmt: skip
    connect, jetstream = nats_options(args, name="w", environ={"NATSBUS_NATS_TOKEN": "t"})
    assert connect.user_credentials == "/s/u.creds"
    assert (connect.tls_ca_file, connect.tls_cert_file, connect.tls_key_file) == (
        "/t/ca.pem", "/t/c.pem", "/t/c.key",
    )  # fmt: skip
    assert connect.tls_hostname == "nats"
    assert connect.token == "t"
    assert jetstream.replicas == 3
    assert jetstream.max_consumers == 5000


def test_a_user_without_a_password_is_refused() -> None:
    args = parse("--nats-url", "nats://a:4222")
    with pytest.raises(ValueError, match="user and password"):
        nats_options(args, name="w", environ={"NATSBUS_NATS_USER": "alice"})


def test_bad_replicas_are_refused() -> None:
    with pytest.raises(ValueError, match="replicas"):
        nats_options(parse("--nats-url", "n", "--stream-replicas", "0"), name="w", environ={})
    with pytest.raises(ValueError, match="max_consumers"):
        args = parse("--nats-url", "n", "--stream-max-consumers", "0")
        nats_options(args, name="w", environ={})


def test_job_settings_come_from_the_command_line() -> None:
    args = parse(
        "--nats-url", "n", "--ack-wait", "7.5", "--max-attempts", "3", "--max-jobs-in-flight", "8"
    )
    _, jetstream = nats_options(args, name="w", environ={})
    assert (jetstream.ack_wait, jetstream.max_attempts, jetstream.max_jobs_in_flight) == (7.5, 3, 8)
    _, defaults = nats_options(parse("--nats-url", "n"), name="w", environ={})
    assert defaults == JetStreamOptions()


def test_version_and_plain_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"natsbus {natsbus.__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "``" not in help_text and ":class:" not in help_text


def test_permissions_prints_the_generated_set(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["permissions", "--channel", "shop", "--name", "pay ments", "--role", "runner"]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = natsbus.permissions(channel="shop", names=["pay ments"], role="runner")
    assert printed == expected.as_dict()
    assert main(argv) == 0
    block = capsys.readouterr().out
    assert expected.to_server_config() in block
    assert "inbox prefix _INBOX.natsbus.shop" in block


def test_permissions_without_a_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["permissions", "--channel", "shop", "--role", "worker"]) == 2
    assert "--name" in capsys.readouterr().err
