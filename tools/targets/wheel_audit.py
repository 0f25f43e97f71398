"""Static audit of the wheels a user of an old-glibc or a musl system gets for ``lkproto[rtc]``.

No CentOS 7 / Amazon Linux 2 (glibc 2.17-2.26) or Alpine userland can be had on this machine, so
issue 14 proves those rows statically: let pip resolve the whole closure of ``lkproto[rtc]`` for a
foreign platform (``pip download --only-binary=:all: --platform ...``), then read every shared
object in every resolved wheel and list the ``GLIBC_`` symbol versions it needs (the
``.gnu.version_r`` section) and the libraries it links (``DT_NEEDED``). A manylinux2014 wheel whose
objects need nothing above ``GLIBC_2.17`` loads on glibc 2.17; a musllinux wheel must link no
glibc at all (no ``libc.so.6``, no ``GLIBC_`` version).

The ELF reading is a small standard-library parser (section headers, the dynamic section and the
version-needs section of the ELF specification and the LSB "Symbol Versioning" chapter), so the
audit needs only pip and PyPI.

    python tools/targets/wheel_audit.py --json report.json     # every platform below
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import struct
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_CACHE",
    "PLATFORMS",
    "ElfNeeds",
    "WheelReport",
    "audit_platform",
    "elf_needs",
    "glibc_max",
    "lkproto_requirements",
]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path.home() / ".cache" / "lkproto" / "wheel-audit"
# (platform tag given to pip, glibc ceiling or None for musl)
PLATFORMS: dict[str, tuple[int, int] | None] = {
    "manylinux2014_x86_64": (2, 17),
    "manylinux2014_aarch64": (2, 17),
    "musllinux_1_2_x86_64": None,
    "musllinux_1_2_aarch64": None,
}

_SHT_DYNAMIC = 6
_SHT_GNU_VERNEED = 0x6FFFFFFE
_DT_NEEDED = 1
# The libraries glibc itself ships (a musl system has none of them).
_GLIBC_SONAMES = frozenset(
    {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
     "libresolv.so.2", "libcrypt.so.1", "libmvec.so.1"}
)  # fmt: skip
_GLIBC_RE = re.compile(r"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ElfNeeds:
    """What one shared object asks of the system it loads on."""

    needed: tuple[str, ...]
    """``DT_NEEDED`` entries (sonames), in file order."""
    versions: tuple[tuple[str, str], ...]
    """(soname, version) of every symbol version needed from another object, e.g.
    ``("libc.so.6", "GLIBC_2.17")``."""

    def glibc_versions(self) -> list[str]:
        """The versions needed from glibc's own libraries (not a bundled ``libgcc_s``, which
        also names versions ``GLIBC_2.0`` on some architectures)."""
        return [v for soname, v in self.versions if _is_glibc_soname(soname)]

    def links_glibc(self) -> bool:
        """Whether loading this object needs glibc."""
        return any(_is_glibc_soname(n) for n in self.needed) or bool(self.glibc_versions())


def _is_glibc_soname(soname: str) -> bool:
    return soname in _GLIBC_SONAMES or soname.startswith("ld-linux")


def elf_needs(data: bytes) -> ElfNeeds:
    """Parse ``DT_NEEDED`` and the version-needs (``.gnu.version_r``) of an ELF shared object.

    Args:
        data: the whole file.

    Raises:
        ValueError: not an ELF file, or a section points outside the file.
    """
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        (shoff,) = struct.unpack_from(endian + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x3A)
        section_fmt = endian + "IIQQQQIIQQ"
    else:
        (shoff,) = struct.unpack_from(endian + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x2E)
        section_fmt = endian + "IIIIIIIIII"
    # (type, offset, size, link) of every section
    sections = []
    for index in range(shnum):
        fields = struct.unpack_from(section_fmt, data, shoff + index * shentsize)
        sections.append((fields[1], fields[4], fields[5], fields[6]))

    def string(table: int, offset: int) -> str:
        start = sections[table][1] + offset
        end = data.index(b"\0", start)
        return data[start:end].decode()

    needed: list[str] = []
    versions: list[tuple[str, str]] = []
    for kind, offset, size, link in sections:
        # Only the sections read below must lie inside the file (.bss, for one, does not).
        if kind in (_SHT_DYNAMIC, _SHT_GNU_VERNEED) and offset + size > len(data):
            raise ValueError("section outside the file")
        if kind == _SHT_DYNAMIC:
            entry_fmt = endian + ("qQ" if is64 else "iI")
            step = struct.calcsize(entry_fmt)
            for pos in range(offset, offset + size, step):
                tag, value = struct.unpack_from(entry_fmt, data, pos)
                if tag == _DT_NEEDED:
                    needed.append(string(link, value))
        elif kind == _SHT_GNU_VERNEED:
            # Verneed {half version, half count, word file, word aux, word next} and Vernaux
            # {word hash, half flags, half other, word name, word next}: 16 bytes in both classes.
            pos = offset
            while True:
                _, count, file, aux, next_need = struct.unpack_from(endian + "HHIII", data, pos)
                soname = string(link, file)
                apos = pos + aux
                for _ in range(count):
                    _, _, _, name, next_aux = struct.unpack_from(endian + "IHHII", data, apos)
                    versions.append((soname, string(link, name)))
                    if not next_aux:
                        break
                    apos += next_aux
                if not next_need:
                    break
                pos += next_need
    return ElfNeeds(needed=tuple(needed), versions=tuple(versions))


def glibc_max(versions: tuple[str, ...] | list[str]) -> tuple[int, int] | None:
    """The highest ``GLIBC_x.y`` among ``versions`` (None when there is none)."""
    found = [
        (int(m.group(1)), int(m.group(2)))
        for m in (_GLIBC_RE.match(v) for v in versions)
        if m is not None
    ]
    return max(found) if found else None


@dataclass(slots=True, kw_only=True)
class WheelReport:
    """One resolved wheel and what its shared objects need."""

    wheel: str
    shared_objects: int = 0
    glibc_max: str | None = None
    links_glibc: bool = False
    violations: list[str] = field(default_factory=list)


def lkproto_requirements() -> list[str]:
    """lkproto's own requirements with the ``rtc`` extra, read from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["rtc"]]


def _pip_download(args: list[str], dest: Path) -> subprocess.CompletedProcess[str]:
    dest.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
         "--only-binary=:all:", "--dest", str(dest), *args],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def audit_platform(
    platform: str, *, python_version: str = "3.11", cache: Path = DEFAULT_CACHE
) -> dict[str, object]:
    """Resolve ``lkproto[rtc]`` for ``platform`` and audit every shared object of every wheel.

    Downloads go to ``cache/<platform>-py<version>/`` and are reused (pip skips files it finds).
    When the whole closure cannot be resolved from wheels alone (musllinux: a dependency without
    such a wheel), each distribution the manylinux resolution chose is fetched on its own with
    ``--no-deps`` and the ones that have no wheel are listed under ``no_wheel``.

    Returns:
        ``{"platform", "python", "resolved": bool, "no_wheel": [...], "wheels": [...],
        "violations": [...]}``.
    """
    ceiling = PLATFORMS[platform]
    tag = python_version.replace(".", "")
    dest = cache / f"{platform}-py{tag}"
    common = [
        *("--platform", platform, "--python-version", python_version, "--implementation", "cp"),
        *("--abi", f"cp{tag}", "--abi", "abi3", "--abi", "none"),
    ]
    done = _pip_download([*common, *lkproto_requirements()], dest)
    no_wheel: list[str] = []
    if done.returncode != 0:
        # Fetch the names the glibc resolution picked one by one (same arch).
        arch = "aarch64" if platform.endswith("aarch64") else "x86_64"
        base = audit_closure_names(f"manylinux2014_{arch}", python_version, cache)
        for name, version in base:
            one = _pip_download([*common, "--no-deps", f"{name}=={version}"], dest)
            if one.returncode != 0:
                one = _pip_download([*common, "--no-deps", name], dest)
            if one.returncode != 0:
                no_wheel.append(name)
    wheels = []
    violations: list[str] = []
    for wheel in sorted(dest.glob("*.whl")):
        report = WheelReport(wheel=wheel.name)
        highest: tuple[int, int] | None = None
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if not re.search(r"\.so(\.\d+)*$", member):
                    continue
                needs = elf_needs(archive.read(member))
                report.shared_objects += 1
                top = glibc_max(needs.glibc_versions())
                if top is not None:
                    highest = top if highest is None else max(highest, top)
                glibc_linked = needs.links_glibc()
                report.links_glibc = report.links_glibc or glibc_linked
                if ceiling is None and glibc_linked:
                    report.violations.append(f"{member}: links glibc on a musl platform")
                elif ceiling is not None and top is not None and top > ceiling:
                    report.violations.append(f"{member}: needs GLIBC_{top[0]}.{top[1]}")
        if highest is not None:
            report.glibc_max = f"{highest[0]}.{highest[1]}"
        violations.extend(f"{wheel.name}: {v}" for v in report.violations)
        wheels.append(dataclasses.asdict(report))
    return {
        "platform": platform,
        "python": python_version,
        "resolved": done.returncode == 0,
        "no_wheel": no_wheel,
        "wheels": wheels,
        "violations": violations,
    }


def audit_closure_names(platform: str, python_version: str, cache: Path) -> list[tuple[str, str]]:
    """(name, version) of every wheel the resolution for ``platform`` downloaded."""
    dest = cache / f"{platform}-py{python_version.replace('.', '')}"
    if not any(dest.glob("*.whl")):
        audit_platform(platform, python_version=python_version, cache=cache)
    names = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        names.append((name.replace("_", "-"), version))
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS))
    parser.add_argument("--python-version", default="3.11")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = parser.parse_args()
    reports = [
        audit_platform(p, python_version=args.python_version, cache=args.cache)
        for p in args.platform or list(PLATFORMS)
    ]
    for report in reports:
        wheels = report["wheels"]
        assert isinstance(wheels, list)
        print(f"{report['platform']} (CPython {report['python']}): {len(wheels)} wheels, "
              f"resolved from wheels alone: {report['resolved']}, no wheel: {report['no_wheel']}, "
              f"violations: {len(report['violations'])}")  # type: ignore[arg-type]  # fmt: skip
        for wheel in wheels:
            print(f"  {wheel['wheel']}: {wheel['shared_objects']} .so, "
                  f"max GLIBC_{wheel['glibc_max']}")  # fmt: skip
        for violation in report["violations"]:  # type: ignore[attr-defined]
            print(f"  VIOLATION {violation}")
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 1 if any(r["violations"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
