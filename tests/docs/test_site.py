"""The documentation site builds in strict mode, documents every public name, draws every capture.

One ``mkdocs build --strict`` into a temporary directory (about 20-30 s on the 2-core CI machine)
serves every test here. Strict mode already fails the build on a broken link, a missing anchor or
an unresolved cross-reference (an API name a page or a docstring links to that is not
documented). On top of it:

* every name in the ``__all__`` of every public module of the reference sections (the scope is
  ``docs/_hooks/lkproto_docs.py``'s, the code that writes the pages) is in the built site's
  object inventory or, for generated protobuf classes, on the schema page; and every class,
  function, method and constant among them has a docstring (its own; for a method one it
  inherits; for a constant or type alias a docstring right below it or the comment block right
  above it, which the site shows). There is no allowlist: a new public name without
  documentation fails the build (issue 20, "no undocumented public name");
* every capture in ``docs/captures/`` became an explorer page with all its records, and a protocol
  page embeds it;
* the search index finds ``perform_rpc`` on the API page;
* the links of README.md (outside the site, so not checked by mkdocs) point at files that exist.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 300


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lkproto_docs_hook", ROOT / "docs" / "_hooks" / "lkproto_docs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        # The theme prints a notice about its successor on every build; it is not a warning.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _inventory(site: Path) -> set[str]:
    """Object names in the site's Sphinx-style ``objects.inv`` (written by mkdocstrings)."""
    header, _, body = (site / "objects.inv").read_bytes().partition(b"zlib.\n")
    assert b"Sphinx inventory version 2" in header
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()}


def test_strict_build_writes_every_section(site: Path) -> None:
    hook = _hook()
    for section in hook.SECTIONS:
        assert (site / "api" / section / "index.html").is_file(), section
    for page in ("index.html", "getting-started/index.html", "api/schema/index.html"):
        assert (site / page).is_file(), page


def _has_docstring(obj: Any) -> bool:
    if obj.docstring is not None and obj.docstring.value.strip():
        return True
    if obj.is_function and obj.parent is not None and obj.parent.is_class:
        # A method that overrides a documented one inherits its documentation.
        for base in obj.parent.mro():
            inherited = base.members.get(obj.name)
            if inherited is not None and inherited.docstring is not None:
                return True
    return False


def _undocumented(hook: ModuleType) -> set[str]:
    package = hook._load_griffe()
    missing: set[str] = set()
    for module in hook.reference_modules(package):
        griffe_module = package[module.path.split(".", 1)[1]]
        for name in module.defined:
            obj = griffe_module.members[name]
            obj = obj.final_target if obj.is_alias else obj
            if (obj.is_class or obj.is_function or obj.is_attribute) and not _has_docstring(obj):
                missing.add(obj.path)
            if obj.is_class:
                for member_name, member in obj.members.items():
                    if member_name.startswith("_") or member.is_alias or not member.is_function:
                        continue
                    if not _has_docstring(member):
                        missing.add(member.path)
    return missing


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    hook = _hook()
    inventory = _inventory(site)
    schema_page = (site / "api" / "schema" / "index.html").read_text(encoding="utf-8")
    absent: list[str] = []
    modules = hook.reference_modules()
    assert sum(len(m.defined) for m in modules) > 300  # the scope did not silently shrink
    for module in modules:
        for name in module.defined:
            if f"{module.path}.{name}" not in inventory:
                absent.append(f"{module.path}.{name}")
        for name, target in module.reexported.items():
            if target.startswith(hook.SCHEMA_TARGET):
                anchor = target.removeprefix(hook.SCHEMA_TARGET)
                if f'id="pb-{anchor}"' not in schema_page:
                    absent.append(f"{module.path}.{name} (schema page)")
            elif target in hook.SCHEMA_MODULES:
                if f"<code>{target}</code>" not in schema_page:
                    absent.append(f"{module.path}.{name} (schema page)")
            elif target not in inventory:
                absent.append(f"{module.path}.{name} -> {target}")
    assert not absent, "public names missing from the API reference:\n" + "\n".join(absent)


def test_every_public_name_has_a_docstring() -> None:
    missing = sorted(_undocumented(_hook()))
    assert not missing, (
        "public names without documentation (a docstring; for a constant or type alias a\n"
        "docstring right below it or a comment block right above it also counts):\n"
        + "\n".join(missing)
    )


def test_every_capture_renders_and_is_embedded(site: Path) -> None:
    from lkproto.wire.explorer import build_model
    from lkproto.wire.tap import TapRecord

    captures = sorted((ROOT / "docs" / "captures").glob("*.jsonl"))
    assert captures, "docs/captures/ holds no capture"
    protocol_pages = "".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "protocol").glob("*.md")
    )
    for capture in captures:
        lines = [ln for ln in capture.read_text(encoding="utf-8").splitlines() if ln.strip()]
        records = [TapRecord.from_json(json.loads(line)) for line in lines]
        model = build_model(records)
        assert model.total == len(lines), capture.name
        assert len(model.rows) == len(lines), capture.name
        page = (site / "captures" / f"{capture.stem}.html").read_text(encoding="utf-8")
        assert 'id="lk-data"' in page, capture.name
        assert f"captures/{capture.stem}.html" in protocol_pages, f"no page embeds {capture.name}"


def test_search_index_finds_perform_rpc_on_the_api_page(site: Path) -> None:
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    locations = {doc["location"] for doc in index["docs"]}
    assert "api/rtc/#lkproto.rtc.participant.LocalParticipant.perform_rpc" in locations


def test_readme_links_point_at_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(targets) >= 10
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
