"""The README's example runs as written and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers.tools import ROOT


def test_the_readme_example_runs_and_prints_what_it_says() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A worker in a few lines") :]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[:1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["update {'progress': 0.5}", "{'text': 'HI'}"]
