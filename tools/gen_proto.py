"""Regenerate lkproto/_pb/ from proto/ (protobuf Python code + mypy stubs).

Usage: python tools/gen_proto.py [--out DIR]

Generator versions are pinned in pyproject.toml (dependency group "codegen"); the test
tests/unit/wire/test_generated_fresh.py runs this into a temporary folder and fails when the
checked-in files differ.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE_DIR = Path("lkproto") / "_pb"
INIT_TEXT = '"""Generated protobuf modules (do not edit; run tools/gen_proto.py)."""\n'


def generate(out_root: Path) -> list[Path]:
    """Run protoc over proto/lkproto/_pb/*.proto, writing into out_root/lkproto/_pb/."""
    import grpc_tools  # codegen dependency group only
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"

    sources = sorted((PROTO_DIR / PACKAGE_DIR).glob("*.proto"))
    if not sources:
        raise SystemExit(f"no .proto files under {PROTO_DIR / PACKAGE_DIR}")
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if plugin is None:
        raise SystemExit("protoc-gen-mypy not found next to this Python (install group 'codegen')")
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        *(str(s.relative_to(PROTO_DIR)) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)
    return sorted((out_root / PACKAGE_DIR).iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output root (default: the repo)")
    ns = parser.parse_args()
    if ns.out is not None:
        generate(ns.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        target = ROOT / PACKAGE_DIR
        for old in target.glob("*_pb2.py*"):
            old.unlink()
        for f in files:
            shutil.copy2(f, target / f.name)
    print(f"regenerated {target}")


if __name__ == "__main__":
    main()
