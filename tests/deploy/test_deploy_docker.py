"""The container image, checked statically: there is no Docker engine where the tests run."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from helpers.tools import ROOT

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAME = re.compile(r"(secret|password|passwd|token|api_?key|credential|private_?key)", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_base_image_is_slim_python() -> None:
    args = dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )
    for word, rest in instructions():
        if word == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", image), image


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, "numeric, so runAsNonRoot can verify it"
    assert not group or (group.isdigit() and int(group) != 0)
    steps = final_stage()
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    assert not [w for w, _ in steps[last_user:] if w == "RUN"], "no RUN after dropping root"


def test_entrypoint_is_natsbus_run_and_sigterm_stops_it() -> None:
    steps = dict(final_stage())
    assert json.loads(steps["ENTRYPOINT"]) == ["natsbus", "run"]  # exec form: natsbus is PID 1
    assert steps["STOPSIGNAL"] == "SIGTERM"
    assert "8080" in steps["EXPOSE"].split()


def test_only_the_package_sources_are_copied() -> None:
    copied = []
    for word, rest in instructions():
        if word in {"COPY", "ADD"}:
            assert word == "COPY", "ADD fetches and unpacks: use COPY"
            parts = [p for p in rest.split() if not p.startswith("--")]
            if "--from=" in rest:
                continue
            copied += parts[:-1]
    assert copied, "nothing copied?"
    for source in copied:
        assert source.rstrip("/") in {"pyproject.toml", "README.md", "natsbus"}, source


def test_no_secret_in_env_or_args() -> None:
    for word, rest in instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
            for name in names:
                assert not SECRET_NAME.search(name), f"{word} {name}: secrets do not go in images"
        if word == "RUN":
            assert "--mount=type=secret" not in rest or "cat " not in rest


def dockerignored(path: str) -> bool:
    """Whether Docker's .dockerignore rules exclude ``path`` (last match wins; ``!`` keeps)."""
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        keep = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        parts = path.split("/")
        # a pattern matches the path itself or any of its parent directories
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*")
        regex = regex.replace("[^/]*[^/]*/", "(.*/)?").replace("[^/]*[^/]*", ".*")
        if any(re.match(regex, candidate) for candidate in candidates):
            excluded = not keep
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tests/test_codec.py",
        "secrets/user.creds",
        "tls.key",
        "deploy/helm/natsbus/ci/all-options-values.yaml",
        "natsbus/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_everything_else_out(path: str) -> None:
    assert dockerignored(path), path


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "README.md", "natsbus/cli.py", "natsbus/bus/nats/layout.py"]
)
def test_dockerignore_lets_the_package_in(path: str) -> None:
    assert not dockerignored(path), path
