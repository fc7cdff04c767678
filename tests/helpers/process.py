"""Start a test program in a child process and follow what it prints."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from helpers.tools import ROOT

BUS_PEER = "tests.peers.bus_peer"


class Peer:
    """A child process running ``python -m <module> <args>``, its output collected by line.

    It runs from the repository root, with the root on ``PYTHONPATH``, so ``module`` may be one
    of ``tests.peers``. Its stderr is collected with its stdout, unless ``merge_stderr`` is
    false: then it goes to the test's own stderr (captured by pytest, shown on a failure).
    """

    def __init__(self, module: str, *args: str, merge_stderr: bool = True) -> None:
        self._argv = ("-m", module, *args)
        self._merge_stderr = merge_stderr
        self._proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        assert self._proc is not None
        return self._proc.returncode

    async def start(self, ready: str | None = "READY", timeout: float = 20.0) -> None:
        """Start the process; then wait for a line starting with ``ready`` (unless None)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self._argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if self._merge_stderr else None,
            cwd=ROOT,
            env=env,
        )
        self._reader = asyncio.create_task(self._read())
        if ready is not None:
            await self.wait_for(ready, timeout)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            async with self._new_line:
                self.lines.append(raw.decode().rstrip("\n"))
                self._new_line.notify_all()

    def found(self, prefix: str) -> list[str]:
        """Every printed line so far that starts with ``prefix``."""
        return [line for line in self.lines if line.startswith(prefix)]

    def count(self, prefix: str) -> int:
        return len(self.found(prefix))

    async def wait_for(self, prefix: str, timeout: float = 20.0) -> str:
        """Wait for the first printed line starting with ``prefix`` and return it."""

        async def waiting() -> str:
            async with self._new_line:
                await self._new_line.wait_for(lambda: bool(self.found(prefix)))
            return self.found(prefix)[0]

        try:
            return await asyncio.wait_for(waiting(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"peer never printed {prefix!r}; it printed {self.lines}"
            ) from None

    def signal(self, signum: signal.Signals) -> None:
        assert self._proc is not None
        self._proc.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL: the process dies without cleaning anything up."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        await self._proc.wait()

    async def wait(self, timeout: float) -> int:
        """Wait for the process to exit; returns its exit code."""
        assert self._proc is not None
        await asyncio.wait_for(self._proc.wait(), timeout)
        await self._end_reader()
        assert self._proc.returncode is not None
        return self._proc.returncode

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait (SIGKILL if it does not end in time); returns the exit code."""
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), timeout)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        await self._end_reader()
        assert self._proc.returncode is not None
        return self._proc.returncode

    async def close(self) -> None:
        """Kill the process if it still runs (test clean-up)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        await self._end_reader()

    async def _end_reader(self) -> None:
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def bus_peer(*args: str) -> Peer:
    """A ``tests.peers.bus_peer`` process (a bare NatsBus); its stderr stays the test's."""
    return Peer(BUS_PEER, *args, merge_stderr=False)
