"""The image's lock files, checked against pyproject.toml, and the Dockerfile's use of them.

deploy/docker/requirements.lock pins natsbus's runtime dependencies with the otel extra, and
build-requirements.lock the build backends of build-requirements.in; both are written by
`make lock` (uv pip compile --generate-hashes), and the Dockerfile installs from them with
`pip --require-hashes`. The checks here read the files only (no index, no Docker engine):
every requirement of pyproject.toml is pinned to a release it allows, every entry is pinned
with == and has hashes, nothing is locked that no requirement leads to (uv's `# via` notes),
and the lock is for the Python of the base image.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from test_deploy_docker import base_images, instructions

from helpers.tools import ROOT

DOCKER = ROOT / "deploy" / "docker"
LOCK = DOCKER / "requirements.lock"
BUILD_LOCK = DOCKER / "build-requirements.lock"
BUILD_IN = DOCKER / "build-requirements.in"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCKED_EXTRAS = ("otel",)  # the extras the image carries: `natsbus run --otel` needs the SDK
# The root a `# via` note names for a requirement of pyproject.toml or of an input file.
PROJECT_ROOTS = {"natsbus (pyproject.toml)"}
# The platforms the image is built for: a locked entry must apply on them.
IMAGE_MARKERS: list[dict[str, str]] = [
    {
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
    }
    for machine in ("x86_64", "aarch64")
]


@dataclass
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(path: Path) -> tuple[str, dict[str, Pin]]:
    """(the header comment, {canonical name: Pin}) of a `uv pip compile --generate-hashes` file."""
    text = path.read_text(encoding="utf-8")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#   "))
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and current is None):
            continue
        if not raw.startswith(" "):
            requirement = line.rstrip("\\").strip()
            spec, _, marker = requirement.partition(";")
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s]+)", spec.strip())
            assert match, f"{path.name}: not pinned with ==: {requirement!r}"
            name = canonicalize_name(match.group(1))
            assert name not in pins, f"{path.name}: {name} twice"
            current = pins[name] = Pin(
                name, Version(match.group(2)), Marker(marker) if marker.strip() else None
            )
            in_via = False
        elif line.startswith("--hash="):
            assert current is not None
            current.hashes.append(line.removeprefix("--hash=").rstrip("\\").strip())
        elif line.startswith("# via"):
            assert current is not None
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.append(rest)
        elif in_via and line.startswith("#"):
            assert current is not None
            current.via.append(line.lstrip("#").strip())
    return header, pins


def project_requirements() -> list[Requirement]:
    """natsbus's runtime requirements plus those of the extras the image carries."""
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        listed += project["optional-dependencies"][extra]
    return [Requirement(item) for item in listed]


def check_lock(pins: dict[str, Pin], requirements: list[Requirement], roots: set[str]) -> None:
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not locked"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{name}=={pins[name].version} is not allowed by {requirement}: run `make lock`"
        )
        assert roots & set(pins[name].via), f"{name}: locked, but not as a requirement of ours"
    wanted = {canonicalize_name(r.name) for r in requirements}
    for pin in pins.values():
        assert pin.hashes, f"{pin.name}: no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), pin.name
        assert len(set(pin.hashes)) == len(pin.hashes), f"{pin.name}: a hash twice"
        assert pin.via, f"{pin.name}: no `# via` note: was the lock written by `make lock`?"
        # every entry is wanted by us or by another locked entry: nothing stray
        for reason in pin.via:
            if reason in roots:
                assert pin.name in wanted, f"{pin.name}: a root, but not in pyproject.toml"
            else:
                assert canonicalize_name(reason) in pins, f"{pin.name}: via {reason}, unlocked"
        if pin.marker is not None:
            for environment in IMAGE_MARKERS:
                assert pin.marker.evaluate(environment), f"{pin.name}: not for the image"


# ---------------------------------------------------------------------------------------------
# the runtime lock
# ---------------------------------------------------------------------------------------------


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    _, pins = parse_lock(LOCK)
    requirements = project_requirements()
    names = {canonicalize_name(r.name) for r in requirements}
    # what the issue names, so that a dependency dropped from pyproject.toml is noticed here too
    assert names >= {
        "nats-py",
        "protobuf",
        "opentelemetry-api",
        "prometheus-client",
        "msgpack",
        "opentelemetry-sdk",
    }
    check_lock(pins, requirements, PROJECT_ROOTS)
    assert "natsbus" not in pins, "natsbus itself is installed from the source, --no-deps"
    assert "pytest" not in pins, "the dev extra stays out of the image"


def test_lock_carries_the_extras_of_the_requirements() -> None:
    """nats-py[nkeys]: what the nkeys extra adds (read from the installed nats-py) is locked."""
    _, pins = parse_lock(LOCK)
    for requirement in project_requirements():
        declared = [
            Requirement(item) for item in importlib.metadata.requires(requirement.name) or []
        ]
        for extra in requirement.extras:
            added = [
                item
                for item in declared
                if item.marker is not None
                and item.marker.evaluate({"extra": extra})
                and not item.marker.evaluate({"extra": ""})
            ]
            assert added, f"{requirement.name}[{extra}] adds nothing?"
            for item in added:
                name = canonicalize_name(item.name)
                assert name in pins, f"{item.name} ({requirement.name}[{extra}]) is not locked"
                assert canonicalize_name(requirement.name) in map(canonicalize_name, pins[name].via)


def test_lock_is_for_the_python_of_the_base_image() -> None:
    header, _ = parse_lock(LOCK)
    assert "--generate-hashes" in header and "--universal" in header, header
    locked = re.search(r"--python-version (3\.\d+)", header)
    assert locked, header
    for image in base_images():
        assert image.startswith(f"python:{locked.group(1)}-"), (image, locked.group(1))


# ---------------------------------------------------------------------------------------------
# the build lock
# ---------------------------------------------------------------------------------------------


def test_build_lock_pins_the_build_backends() -> None:
    header, pins = parse_lock(BUILD_LOCK)
    assert "--generate-hashes" in header, header
    inputs = [
        Requirement(line.strip())
        for line in BUILD_IN.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    check_lock(pins, inputs, {"-r deploy/docker/build-requirements.in"})
    given = {canonicalize_name(r.name): r for r in inputs}
    for item in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(item)
        name = canonicalize_name(requirement.name)
        assert name in given, f"{item} (pyproject.toml [build-system]) is not in {BUILD_IN.name}"
        assert requirement.specifier.contains(pins[name].version), (item, pins[name].version)
    assert "setuptools" in given, "nkeys is published as source only: it builds with setuptools"


# ---------------------------------------------------------------------------------------------
# the Dockerfile installs from the locks
# ---------------------------------------------------------------------------------------------


def pip_runs() -> list[str]:
    """Every pip command of the build, one string each."""
    commands = []
    for word, rest in instructions():
        if word == "RUN":
            commands += [part.strip() for part in rest.split("&&") if "/bin/pip " in part]
    return commands


def test_dockerfile_installs_dependencies_from_the_lock_with_hashes() -> None:
    runs = pip_runs()
    readers = {
        name: [run for run in runs if re.search(rf"-r\s+\S*{re.escape(name)}\b", run)]
        for name in (LOCK.name, BUILD_LOCK.name)
    }
    for name, found in readers.items():
        assert found, f"no pip command reads {name}"
        for run in found:
            assert "--require-hashes" in run.split(), run
            assert "--no-deps" in run.split(), run  # the lock is complete: no resolving
    # nothing else fetches from an index: the other pip commands install local wheels only,
    # and build without isolation (an isolated build would fetch unlocked build tools)
    for run in runs:
        if "-r" in run.split():
            continue
        if " wheel " in f" {run} ":
            assert "--no-build-isolation" in run.split() and "--no-deps" in run.split(), run
        elif " install " in f" {run} ":
            assert "--no-index" in run.split() and "--no-deps" in run.split(), run
    wheel_builds = [run for run in runs if " wheel " in f" {run} "]
    assert all("--no-build-isolation" in run.split() for run in wheel_builds), wheel_builds
    natsbus = [run for run in runs if run.rstrip().endswith((" .", "natsbus/*.whl"))]
    assert natsbus and all("--no-deps" in run.split() for run in natsbus), natsbus


def test_dockerfile_copies_the_locks_it_reads() -> None:
    copied = " ".join(rest for word, rest in instructions() if word == "COPY")
    for path in (LOCK, BUILD_LOCK):
        assert str(path.relative_to(ROOT)) in copied, path.name


# ---------------------------------------------------------------------------------------------
# the parser itself
# ---------------------------------------------------------------------------------------------


def test_parse_lock_reads_uv_output(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.write_text(
        "# This file was autogenerated by uv via the following command:\n"
        "#    make lock (uv pip compile --generate-hashes --universal --python-version 3.12)\n"
        "cffi==2.1.1 ; platform_python_implementation != 'PyPy' \\\n"
        f"    --hash=sha256:{'a' * 64} \\\n"
        f"    --hash=sha256:{'b' * 64}\n"
        "    # via pynacl\n"
        "pynacl==1.6.2 \\\n"
        f"    --hash=sha256:{'c' * 64}\n"
        "    # via\n"
        "    #   natsbus (pyproject.toml)\n"
        "    #   nkeys\n",
        encoding="utf-8",
    )
    header, pins = parse_lock(lock)
    assert "--python-version 3.12" in header
    assert pins["cffi"].version == Version("2.1.1")
    assert str(pins["cffi"].marker) == 'platform_python_implementation != "PyPy"'
    assert len(pins["cffi"].hashes) == 2 and pins["cffi"].via == ["pynacl"]
    assert pins["pynacl"].via == ["natsbus (pyproject.toml)", "nkeys"]
    with pytest.raises(AssertionError, match="is not allowed by pynacl>=2"):
        check_lock(pins, [Requirement("pynacl>=2")], PROJECT_ROOTS)
    with pytest.raises(AssertionError, match="not locked"):
        check_lock(pins, [Requirement("msgpack")], PROJECT_ROOTS)
    lock.write_text("msgpack>=1\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="not pinned"):
        parse_lock(lock)
