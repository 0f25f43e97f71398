"""Layer law: wire, core and api load none of the I/O stacks (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ["aiortc", "av", "websockets", "aioice", "lkproto.asyncio", "lkproto.rtc"]


@pytest.mark.parametrize("module", ["lkproto", "lkproto.wire", "lkproto.core", "lkproto.api"])
def test_import_loads_no_io_stack(module: str) -> None:
    code = (
        f"import sys, json, {module}\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_only_wire_imports_generated_code() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "lkproto"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.parts[-2] not in {"wire", "_pb"} and "lkproto._pb" in p.read_text()
    ]
    assert offenders == []
