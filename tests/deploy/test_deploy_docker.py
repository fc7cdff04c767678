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


def global_args() -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults ("" when none)."""
    args: dict[str, str] = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip("\"'")
    return args


def expand(text: str, args: dict[str, str]) -> str:
    """Docker's ${NAME}, ${NAME:-word} and ${NAME:+word} (word may hold ${...} itself)."""
    pattern = re.compile(r"\$\{(\w+)(?::([-+])((?:[^${}]|\$\{\w+\})*))?\}")

    def one(match: re.Match[str]) -> str:
        name, operator, word = match.groups()
        value = args[name]
        if operator == "+":
            return expand(word, args) if value else ""
        if operator == "-":
            return value or expand(word, args)
        return value

    return pattern.sub(one, text)


def base_images(**overrides: str) -> list[str]:
    """The image of every FROM that is not an earlier stage, with the build args given."""
    args = {**global_args(), **overrides}
    return [expand(rest.split()[0], args) for word, rest in instructions() if word == "FROM"]


BASE_IMAGE = re.compile(r"python:(3\.1[1-9])-slim(-\w+)?(@sha256:[0-9a-f]{64})?")
DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_base_image_is_slim_python() -> None:
    for image in base_images():
        assert BASE_IMAGE.fullmatch(image), image


def test_base_image_is_pinned_by_the_digest_build_arg() -> None:
    """PYTHON_DIGEST pins both stages by digest; its default is empty or a real-looking one."""
    default = global_args()["PYTHON_DIGEST"]
    assert default == "" or re.fullmatch(r"sha256:[0-9a-f]{64}", default), default
    pinned = base_images(PYTHON_DIGEST=DIGEST)
    assert len(pinned) == 2
    for image in pinned:
        match = BASE_IMAGE.fullmatch(image)
        assert match and match.group(3) == f"@{DIGEST}", image
    tag = global_args()["PYTHON_IMAGE"]
    assert base_images(PYTHON_DIGEST="") == [tag, tag]


def test_expand_follows_docker() -> None:
    args = {"A": "x", "E": ""}
    assert expand("${A}${E:+@${A}}", args) == "x"
    assert expand("${A}${A:+@${A}}", args) == "x@x"
    assert expand("${E:-d}/${A:-d}", args) == "d/x"


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
        assert source.rstrip("/") in {
            "pyproject.toml",
            "README.md",
            "natsbus",
            "deploy/docker/requirements.lock",
            "deploy/docker/build-requirements.lock",
        }, source


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
        "deploy/docker/Dockerfile",
        "deploy/docker/build-requirements.in",
        "natsbus/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_everything_else_out(path: str) -> None:
    assert dockerignored(path), path


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "natsbus/cli.py",
        "natsbus/bus/nats/layout.py",
        "deploy/docker/requirements.lock",
        "deploy/docker/build-requirements.lock",
    ],
)
def test_dockerignore_lets_the_package_in(path: str) -> None:
    assert not dockerignored(path), path
