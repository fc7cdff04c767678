"""Start a worker-test program in a child process and follow what it prints."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Peer:
    """A child process running ``python -m <module> <args>``, its output collected by line."""

    def __init__(self, module: str, *args: str) -> None:
        self._argv = ("-m", module, *args)
        self._proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @property
    def returncode(self) -> int | None:
        assert self._proc is not None
        return self._proc.returncode

    async def start(self, ready: str | None = "READY", timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *self._argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
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
        return [line for line in self.lines if line.startswith(prefix)]

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

    async def wait(self, timeout: float) -> int:
        """Wait for the process to exit; returns its exit code."""
        assert self._proc is not None
        await asyncio.wait_for(self._proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        assert self._proc.returncode is not None
        return self._proc.returncode

    async def close(self) -> None:
        """Kill the process if it still runs (test clean-up)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
