"""Where the tests find the command-line tools they run, and the repository they check."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def find_tool(name: str) -> str | None:
    """A tool installed next to the venv's Python (by ``make tools``), or else on PATH.

    ``scripts/install_test_tools.py`` puts helm, promtool and kubernetes-validate in .venv/bin.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)
