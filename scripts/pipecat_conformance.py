"""Run pipecat's own tests of the worker-bus API against natsbus, with only the imports mapped.

Usage::

    .venv/bin/python scripts/pipecat_conformance.py PIPECAT_CHECKOUT/tests [--keep DIR]

The pipecat tests are not part of natsbus: point the script at a checkout of pipecat's
repository. It copies the five test files of the bus, workers, job groups, runner and bridge
to a scratch directory, rewrites each ``from pipecat.X import names`` to the natsbus module of
the table in ``docs/pipecat.md`` (nothing else changes; line numbers are kept), and runs pytest
there against this checkout of natsbus. It prints pytest's summary; the tests that fail are
meant to be exactly the differences ``docs/pipecat.md`` lists.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TEST_FILES = (
    "test_bus.py",
    "test_base_worker.py",
    "test_job_group.py",
    "test_runner.py",
    "test_bridge_processor.py",
)

# pipecat module -> natsbus module (the table of docs/pipecat.md); the longest prefix wins.
MODULES = {
    "pipecat.bus": "natsbus",
    "pipecat.workers": "natsbus",
    "pipecat.registry": "natsbus",
    "pipecat.pipeline.job_context": "natsbus",
    "pipecat.pipeline.job_decorator": "natsbus",
    "pipecat.pipeline.runner": "natsbus",
    "pipecat.utils.asyncio.task_manager": "natsbus",
    "pipecat.pipeline": "natsbus.pipeline",
    "pipecat.processors": "natsbus.pipeline",
    "pipecat.frames": "natsbus.frames",
    "pipecat.tests.utils": "natsbus.testing",
}

PYTEST_INI = """[pytest]
asyncio_default_fixture_loop_scope = function
"""


def natsbus_module(pipecat_module: str) -> str:
    """The natsbus module that provides what ``pipecat_module`` does."""
    parts = pipecat_module.split(".")
    while parts:
        found = MODULES.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    raise SystemExit(f"no natsbus module is mapped for {pipecat_module!r}: add it to MODULES")


def map_imports(source: str) -> str:
    """Rewrite every ``from pipecat... import ...`` statement; keep every line where it was."""
    lines = source.splitlines(keepends=True)
    imports = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipecat.")
    ]
    for node in sorted(imports, key=lambda n: n.lineno, reverse=True):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        indent = lines[first][: node.col_offset]
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        statement = f"{indent}from {natsbus_module(node.module or '')} import {names}\n"
        lines[first : last + 1] = [statement] + ["\n"] * (last - first)
    return "".join(lines)


def main() -> int:
    """Map, then run; returns pytest's exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", type=Path, help="the tests/ folder of a pipecat checkout")
    parser.add_argument("--keep", type=Path, help="write the mapped tests here and keep them")
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="pipecat-conformance-"))
    scratch.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        (scratch / name).write_text(map_imports((args.tests / name).read_text()))
    (scratch / "pytest.ini").write_text(PYTEST_INI)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider"]
    command += ["--timeout", "20", *TEST_FILES]
    return subprocess.run(command, cwd=scratch, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
