"""Layer law (STYLE.md): lkproto.wire and lkproto.core import with only ``protobuf`` installed.

Every module of both packages is imported (found by walking them with :mod:`pkgutil`, so a new
module is covered without editing this file) in a fresh interpreter whose import system refuses
everything but the standard library, ``google.protobuf`` and lkproto's own ``wire``, ``core``,
``_pb`` and ``errors``: an ``import aiortc`` (or ``av``, ``websockets``, ``cryptography``,
``numpy``, ``lkproto.asyncio``, ``lkproto.rtc`` ...) anywhere in them fails the test, even one
whose ImportError is caught. A planted violation in a throw-away copy of the package proves the
check bites.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYERED = ("lkproto.wire", "lkproto.core")

# Runs in the child interpreter: argv[1] is the directory holding the lkproto package to check.
_CHILD = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    ALLOWED_LKPROTO = ("lkproto.errors", "lkproto.wire", "lkproto._pb", "lkproto.core")
    blocked = []

    def allowed(name):
        top = name.partition(".")[0]
        if top == "lkproto":
            return name == "lkproto" or any(
                name == p or name.startswith(p + ".") for p in ALLOWED_LKPROTO
            )
        if top == "google":
            return name in ("google", "google.protobuf", "google._upb") or name.startswith(
                ("google.protobuf.", "google._upb.")
            )
        return top in sys.stdlib_module_names

    def importer():
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back
        return frame.f_globals.get("__name__", "?") if frame is not None else "?"

    class OnlyProtobuf:
        def find_spec(self, name, path=None, target=None):
            if allowed(name):
                return None
            # The stdlib probes for optional modules too (pickle tries org.python.core):
            # only what lkproto's own modules reach for is reported.
            if importer().partition(".")[0] == "lkproto":
                blocked.append(name)
            raise ModuleNotFoundError(f"layer law: {name} is not protobuf or stdlib", name=name)

    # Nothing third-party may come from what the interpreter already loaded either.
    for name in list(sys.modules):
        if not allowed(name):
            del sys.modules[name]
    sys.meta_path.insert(0, OnlyProtobuf())
    sys.path.insert(0, sys.argv[1])

    imported, failed = [], {}
    for package_name in ("lkproto.wire", "lkproto.core"):
        try:
            package = importlib.import_module(package_name)
        except Exception as exc:
            failed[package_name] = repr(exc)
            continue
        imported.append(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed[info.name] = repr(exc)
            else:
                imported.append(info.name)
    print(json.dumps({"imported": imported, "failed": failed, "blocked": sorted(set(blocked))}))
    """
)


def _check(root: pathlib.Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, str(root)],
        check=True,
        capture_output=True,
        text=True,
        cwd=root,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _modules_on_disk(root: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for package in LAYERED:
        base = root.joinpath(*package.split("."))
        for path in base.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_wire_and_core_module_imports_with_only_protobuf() -> None:
    result = _check(ROOT)
    assert result["failed"] == {}
    assert result["blocked"] == []
    assert set(result["imported"]) == _modules_on_disk(ROOT)
    assert len(result["imported"]) > 10  # the walk really found the modules


def _copy_package(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(
        ROOT / "lkproto",
        tmp_path / "lkproto",
        ignore=shutil.ignore_patterns("__pycache__", "*.wav", "node_modules"),
    )
    return tmp_path


@pytest.mark.parametrize(
    ("planted", "blocked", "import_fails"),
    [
        ("import aiortc\n", "aiortc", True),
        ("import numpy\n", "numpy", True),
        ("from lkproto.asyncio import peer\n", "lkproto.asyncio", True),
        ("import lkproto.rtc\n", "lkproto.rtc", True),
        ("def later():\n    import cryptography\n\nlater()\n", "cryptography", True),
        # A guarded import still counts: the law is about what the layer reaches for.
        (
            "try:\n    import websockets\nexcept ImportError:\n    websockets = None\n",
            "websockets",
            False,
        ),
    ],
)
def test_a_planted_violation_fails_the_check(
    tmp_path: pathlib.Path, planted: str, blocked: str, import_fails: bool
) -> None:
    root = _copy_package(tmp_path)
    (root / "lkproto" / "core" / "_planted.py").write_text(planted)
    result = _check(root)
    assert result["blocked"] == [blocked]
    assert ("lkproto.core._planted" in result["failed"]) is import_fails
    # ...and the unmodified copy passes, so it is the planted line that fails it.
    (root / "lkproto" / "core" / "_planted.py").unlink()
    clean = _check(root)
    assert (clean["failed"], clean["blocked"]) == ({}, [])


def test_a_violation_deep_in_a_subpackage_is_found(tmp_path: pathlib.Path) -> None:
    root = _copy_package(tmp_path)
    sub = root / "lkproto" / "wire" / "_deep"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "inner.py").write_text("import av\n")
    result = _check(root)
    assert "lkproto.wire._deep.inner" in result["failed"]
    assert result["blocked"] == ["av"]


@pytest.mark.parametrize("module", ["lkproto", "lkproto.wire", "lkproto.core", "lkproto.api"])
def test_import_loads_no_io_stack(module: str) -> None:
    forbidden = ["aiortc", "av", "websockets", "aioice", "lkproto.asyncio", "lkproto.rtc"]
    code = (
        f"import sys, json, {module}\n"
        f"print(json.dumps(sorted(m for m in {forbidden!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_only_wire_imports_generated_code() -> None:
    root = ROOT / "lkproto"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.parts[-2] not in {"wire", "_pb"} and "lkproto._pb" in p.read_text()
    ]
    assert offenders == []
