"""Start a bus peer in a child process and follow what it prints."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class PeerProcess:
    """One ``tests.peers.bus_peer`` child process."""

    def __init__(self, *args: str) -> None:
        self._args = args
        self._proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.peers.bus_peer",
            *self._args,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("READY", timeout)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            async with self._new_line:
                self.lines.append(raw.decode().rstrip("\n"))
                self._new_line.notify_all()

    async def wait_for(self, prefix: str, timeout: float = 20.0) -> str:
        """Wait for the first printed line starting with ``prefix`` and return it."""

        def found() -> str | None:
            return next((line for line in self.lines if line.startswith(prefix)), None)

        async def waiting() -> str:
            async with self._new_line:
                await self._new_line.wait_for(lambda: found() is not None)
            line = found()
            assert line is not None
            return line

        try:
            return await asyncio.wait_for(waiting(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"peer never printed {prefix!r}; it printed {self.lines}"
            ) from None

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines if line.startswith(prefix))

    async def kill(self) -> None:
        """SIGKILL: the process dies without cleaning anything up."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        await self._proc.wait()

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), timeout)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        assert self._proc.returncode is not None
        return self._proc.returncode
