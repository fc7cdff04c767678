"""Regenerate the protobuf code in ``natsbus/_proto/`` from ``proto/`` (what ``make proto`` runs).

Usage::

    .venv/bin/python scripts/generate_proto.py [--out DIR]

Steps:

1. Delete the stale output in ``--out`` (default ``natsbus/_proto``): every ``*_pb2.py``,
   ``*_pb2.pyi``, ``__init__.py`` and ``__pycache__``. Any other file there is an error, so that
   hand-written code never lives among generated code (and a wrong ``--out`` deletes nothing
   it should not).
2. Run ``python -m grpc_tools.protoc`` with ``--python_out`` and ``--mypy_out`` (mypy-protobuf)
   into a staging directory.
3. Move ``natsbus/v1/*`` from the staging directory to ``<out>/v1/`` and fix the module paths.
   protoc derives Python module paths from proto paths, so ``proto/natsbus/v1/value.proto``
   becomes module ``natsbus.v1.value_pb2``, while ours is ``natsbus._proto.v1.value_pb2``. The
   script rewrites exactly two kinds of line, and fails if any reference to ``natsbus.v1``
   modules is left:

   - ``from natsbus.v1 import x_pb2 as alias`` (in ``.py`` and ``.pyi``), the cross-file
     imports;
   - ``_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'natsbus.v1.x_pb2', _globals)``
     (in ``.py``), which sets ``__module__`` on the generated classes.

   A two-pattern rewrite, checked, is simpler than adding a dependency for it
   (``protoletariat`` rewrites the imports but not the ``__module__`` name).
4. Write the ``__init__.py`` files.

The output depends only on ``proto/`` and the pinned grpcio-tools and mypy-protobuf versions,
so ``tests/test_generated_code.py`` regenerates into a temporary directory and compares.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "natsbus" / "_proto"
# protoc's module prefix for our protos, and the package they actually live in.
PROTOC_PACKAGE = "natsbus"
TARGET_PACKAGE = "natsbus._proto"

INIT_TEXT = '"""Generated protobuf code; do not edit by hand. Regenerate with `make proto`."""\n'
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")

_IMPORT_LINE = re.compile(
    r"^from natsbus\.(?P<sub>[a-z0-9_.]+) import (?P<mod>\w+_pb2) as (?P<alias>\w+)$",
    re.MULTILINE,
)
_BUILDER_NAME = re.compile(
    r"^(?P<head>_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')"
    r"natsbus\.(?P<name>[a-z0-9_.]+_pb2)(?P<tail>', _globals\))$",
    re.MULTILINE,
)
# After the rewrite, nothing may still name a module under the protoc-derived package.
_LEFTOVER = re.compile(r"\bnatsbus\.v\d+(?:\.\w+_pb2|\s+import)\b")


class GenerationError(RuntimeError):
    """The generated code could not be produced or fixed up as expected."""


def clean_output(out: Path) -> None:
    """Delete generated files in ``out``; refuse if it holds anything else."""
    if not out.exists():
        return
    for path in sorted(out.rglob("__pycache__"), reverse=True):
        shutil.rmtree(path)
    for path in sorted(out.rglob("*")):
        if path.is_file() and (
            path.name == "__init__.py" or path.name.endswith(GENERATED_SUFFIXES)
        ):
            path.unlink()
    leftovers = [p for p in out.rglob("*") if not p.is_dir()]
    if leftovers:
        names = ", ".join(str(p.relative_to(out)) for p in sorted(leftovers))
        raise GenerationError(f"{out} holds files that are not generated code: {names}")
    for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir()


def run_protoc(staging: Path) -> None:
    """Run protoc with the Python and mypy-protobuf generators into ``staging``."""
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise GenerationError(f"no .proto files under {PROTO_ROOT}")
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if plugin is None:
        raise GenerationError("protoc-gen-mypy not found beside the Python interpreter")
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={staging}",
        f"--mypy_out={staging}",
        *(str(p) for p in protos),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerationError(f"protoc failed ({result.returncode}):\n{result.stderr}")


def fix_module_paths(text: str, source: Path) -> str:
    """Point imports and ``__module__`` names at ``natsbus._proto`` instead of ``natsbus``."""
    text = _IMPORT_LINE.sub(rf"from {TARGET_PACKAGE}.\g<sub> import \g<mod> as \g<alias>", text)
    if source.suffix == ".py":
        text, count = _BUILDER_NAME.subn(rf"\g<head>{TARGET_PACKAGE}.\g<name>\g<tail>", text)
        if count != 1:
            raise GenerationError(f"{source}: expected one module-name line, found {count}")
    leftover = _LEFTOVER.search(text)
    if leftover:
        raise GenerationError(f"{source}: unrewritten module reference {leftover.group()!r}")
    return text


def generate(out: Path) -> list[Path]:
    """Regenerate every module into ``out`` and return the files written, sorted."""
    clean_output(out)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="natsbus-proto-") as tmp:
        staging = Path(tmp)
        run_protoc(staging)
        generated_root = staging / PROTOC_PACKAGE
        for source in sorted(generated_root.rglob("*")):
            if not source.is_file():
                continue
            if not source.name.endswith(GENERATED_SUFFIXES):
                raise GenerationError(f"unexpected protoc output {source.relative_to(staging)}")
            target = out / source.relative_to(generated_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(fix_module_paths(source.read_text(encoding="utf-8"), source))
            written.append(target)
    packages = {out} | {p.parent for p in written}
    for package in sorted(packages):
        init = package / "__init__.py"
        init.write_text(INIT_TEXT, encoding="utf-8")
        written.append(init)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory for the generated package (default: natsbus/_proto)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    try:
        written = generate(out)
    except GenerationError as exc:
        print(f"generate_proto: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path.relative_to(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
