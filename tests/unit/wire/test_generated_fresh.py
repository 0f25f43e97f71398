"""The checked-in lkproto/_pb/ is exactly what tools/gen_proto.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "lkproto" / "_pb").iterdir()}
    checked_in = {
        p.name: p.read_bytes()
        for p in (ROOT / "lkproto" / "_pb").iterdir()
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }
    assert sorted(fresh) == sorted(checked_in)
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"stale generated files (run tools/gen_proto.py): {stale}"


def test_every_proto_file_is_generated() -> None:
    protos = sorted(p.stem for p in (ROOT / "proto" / "lkproto" / "_pb").glob("*.proto"))
    modules = sorted(p.name[: -len("_pb2.py")] for p in (ROOT / "lkproto" / "_pb").glob("*_pb2.py"))
    assert protos == modules == ["api", "data", "models", "signal"]
