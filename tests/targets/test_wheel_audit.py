"""Static old-glibc and musl audit of the ``lkproto[rtc]`` closure (issue 14), run in CI.

pip resolves the whole closure for manylinux2014 (glibc 2.17: CentOS 7, Amazon Linux 2) and
musllinux_1_2 (Alpine) on x86_64 and aarch64 from PyPI wheels only, and every shared object in
every resolved wheel is read (tools/targets/wheel_audit.py). Downloads are cached under
~/.cache/lkproto/wheel-audit/, so only the first run on a machine fetches ~200 MB.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, cast

import pytest

from tools.targets.wheel_audit import PLATFORMS, audit_platform, elf_needs, glibc_max

# No musllinux wheel on PyPI: pip builds it from its sdist, which falls back to its pure-Python
# implementation when the C extension cannot be built (the README's musl row measures the cost).
KNOWN_WITHOUT_MUSL_WHEEL = {"google-crc32c"}
# The distributions with compiled code in the closure: the audit must have read their objects.
COMPILED = ("av", "cffi", "cryptography", "pylibsrtp", "websockets")


def test_elf_reader_on_a_real_object() -> None:
    spec = importlib.util.find_spec("google_crc32c._crc32c")
    assert spec is not None
    assert spec.origin is not None
    needs = elf_needs(Path(spec.origin).read_bytes())
    assert "libc.so.6" in needs.needed
    assert needs.links_glibc()
    top = glibc_max(needs.glibc_versions())
    assert top is not None
    assert (2, 2) <= top < (3, 0)


def test_elf_reader_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="not an ELF"):
        elf_needs(b"#!/bin/sh\n")


def test_glibc_max_ignores_other_versions() -> None:
    assert glibc_max(["GLIBC_2.2.5", "GLIBC_2.17", "GLIBCXX_3.4.30", "OPENSSL_3.0.0"]) == (2, 17)
    assert glibc_max(["GCC_3.0"]) is None


def _shared_objects_by_name(report: dict[str, object]) -> dict[str, int]:
    # audit_platform's "wheels" holds dataclasses.asdict(WheelReport) of each wheel; the name of
    # the distribution is the wheel file name's first part.
    wheels = cast(list[dict[str, Any]], report["wheels"])
    return {w["wheel"].split("-")[0].lower(): w["shared_objects"] for w in wheels}


@pytest.mark.parametrize("platform", [p for p, ceiling in PLATFORMS.items() if ceiling])
def test_old_glibc_closure_needs_at_most_glibc_2_17(platform: str) -> None:
    report = audit_platform(platform)
    assert report["resolved"], "pip could not resolve lkproto[rtc] from manylinux2014 wheels"
    assert report["violations"] == []
    scanned = _shared_objects_by_name(report)
    for name in COMPILED:
        assert scanned.get(name, 0) > 0, f"no shared object of {name} was audited"


@pytest.mark.parametrize("platform", [p for p, ceiling in PLATFORMS.items() if not ceiling])
def test_musllinux_closure_links_no_glibc(platform: str) -> None:
    report = audit_platform(platform)
    assert report["violations"] == []
    assert set(cast(list[str], report["no_wheel"])) <= KNOWN_WITHOUT_MUSL_WHEEL, report["no_wheel"]
    scanned = _shared_objects_by_name(report)
    for name in COMPILED:
        assert scanned.get(name, 0) > 0, f"no shared object of {name} was audited"
