"""What the child-process programs share: lines for the test, and a runner run to its end."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from natsbus.workers import WorkerRunner


def say(line: str) -> None:
    """Print one line for the test, flushed at once so that it can follow the program."""
    print(line, flush=True)


async def run_runner(runner: WorkerRunner, workers: list[str], ready: str) -> int:
    """Run ``runner`` to its end, saying ``ready`` once ``workers`` are; 130 if it was cancelled."""

    async def announce() -> None:
        await runner.registry.wait_ready(workers)
        say(ready)

    announcing = asyncio.create_task(announce())
    await runner.run()
    announcing.cancel()
    return 130 if runner.cancelled else 0


def exit_after(main: Callable[[], Coroutine[Any, Any, int]]) -> NoReturn:
    """Run ``main``, say ``EXIT <code>`` and exit with that code."""
    code = asyncio.run(main())
    say(f"EXIT {code}")
    sys.exit(code)
