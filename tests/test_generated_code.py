"""natsbus/_proto/ is exactly what scripts/generate_proto.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.tools import ROOT

SCRIPT = ROOT / "scripts" / "generate_proto.py"
COMMITTED = ROOT / "natsbus" / "_proto"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _generate(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_committed_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    result = _generate(out)
    assert result.returncode == 0, result.stderr
    fresh, committed = _files(out), _files(COMMITTED)
    assert sorted(fresh) == sorted(committed), "run `make proto`: the generated file set differs"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make proto`: these generated files are stale: {stale}"


def test_generated_modules_live_in_natsbus_proto() -> None:
    from natsbus._proto.v1 import envelope_pb2, messages_pb2, value_pb2

    for module in (envelope_pb2, messages_pb2, value_pb2):
        text = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert "from natsbus.v1 import" not in text
    assert envelope_pb2.Envelope.__module__ == "natsbus._proto.v1.envelope_pb2"
    assert envelope_pb2.Envelope.DESCRIPTOR.full_name == "natsbus.v1.Envelope"
    assert messages_pb2.JobRequest.DESCRIPTOR.fields_by_name["payload"].message_type is (
        value_pb2.Values.DESCRIPTOR
    )


def test_regeneration_replaces_stale_output(tmp_path: Path) -> None:
    out = tmp_path / "_proto"
    assert _generate(out).returncode == 0
    stale = out / "v1" / "removed_pb2.py"
    stale.write_text("# from a .proto file deleted since\n")
    (out / "v1" / "__pycache__").mkdir()
    (out / "v1" / "__pycache__" / "x.pyc").write_bytes(b"")
    assert _generate(out).returncode == 0
    assert not stale.exists()
    assert _files(out) == _files(COMMITTED)


@pytest.mark.parametrize("name", ["notes.txt", "hand_written.py"])
def test_regeneration_refuses_a_directory_with_other_files(tmp_path: Path, name: str) -> None:
    out = tmp_path / "_proto"
    out.mkdir()
    (out / name).write_text("not generated\n")
    result = _generate(out)
    assert result.returncode == 1
    assert "not generated code" in result.stderr
    assert (out / name).exists()
