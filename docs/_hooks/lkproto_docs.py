"""mkdocs hook: the pages of the site that are generated from the code at build time.

Three kinds, all added to the file collection in ``on_files`` so that mkdocs validates every link
to and from them like any written page (``mkdocs build --strict`` fails on a broken one):

* ``api/<section>.md``: one API reference page per public package, listing every public module
  (no leading underscore in its dotted path, an ``__all__``) with a mkdocstrings directive whose
  ``members`` are the names of that ``__all__`` defined in the module. A name a module re-exports
  from another documented module is listed in a table that links to where it is documented, so
  each object is documented once and every public name leads to it. A new module or name appears
  without editing any page.
* ``api/schema.md``: the protobuf messages and enums of ``lkproto.wire.pb`` and
  ``lkproto.wire.api`` (generated code, not worth a mkdocstrings entry each), drawn from their
  descriptors: fields with numbers and types, enum values.
* docstrings: the code writes Sphinx roles (``:class:`~lkproto.wire.tap.TapRecord```,
  ``:meth:`start```); :class:`SphinxRoles`, a griffe extension mkdocs.yml loads, turns each into
  a cross-reference when its target is documented in the reference, else into plain code, so no
  raw role reaches a page and no link can break.
* ``captures/<name>.html``: the wire explorer page (:func:`lkproto.wire.explorer.render_html`)
  of each real capture ``docs/captures/<name>.jsonl`` (recorded by ``tools/capture_docs.py``),
  embedded by the protocol pages; the diagrams therefore come from the code that ships.

The scope helpers (:func:`reference_modules`, :data:`SECTIONS`) are also what
``tests/docs/test_site.py`` uses to decide which names must be documented.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import griffe

__all__ = [
    "EXCLUDED_MODULES",
    "SCHEMA_MODULES",
    "SCHEMA_TARGET",
    "SECTIONS",
    "ReferenceModule",
    "SphinxRoles",
    "on_files",
    "reference_modules",
]

ROOT: Final = Path(__file__).resolve().parents[2]

# Page -> (title, root module). The order is the order of the navigation.
SECTIONS: Final[dict[str, str]] = {
    "rtc": "lkproto.rtc",
    "api": "lkproto.api",
    "agents": "lkproto.agents",
    "testing": "lkproto.testing",
    "errors": "lkproto.errors",
    "wire": "lkproto.wire",
    "core": "lkproto.core",
    "conformance": "lkproto.conformance",
}

# Generated protobuf re-exports: documented on api/schema.md from their descriptors.
SCHEMA_MODULES: Final = ("lkproto.wire.pb", "lkproto.wire.api")

# A re-export of a generated protobuf class: documented on the schema page.
SCHEMA_TARGET: Final = "schema:"

# Public by name but not part of the library's API: the demo program (tools/demo.sh runs it).
EXCLUDED_MODULES: Final = ("lkproto.agents.demo",)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceModule:
    """One public module of the reference and how its ``__all__`` is documented.

    Attributes:
        path: the dotted module path.
        section: the API page (a key of :data:`SECTIONS`) it is documented on.
        defined: names of ``__all__`` defined in this module (rendered here).
        reexported: ``name -> dotted path`` of names documented elsewhere.
    """

    path: str
    section: str
    defined: tuple[str, ...]
    reexported: dict[str, str]


def _load_griffe() -> Any:
    import griffe

    return griffe.load(
        "lkproto",
        extensions=griffe.load_extensions(SphinxRoles),
        search_paths=[str(ROOT)],
        docstring_parser="google",
        resolve_aliases=True,
        resolve_external=False,
    )


def _public_modules(module: Any) -> Iterator[Any]:
    yield module
    for name, member in module.members.items():
        if member.is_alias or not member.is_module or name.startswith("_"):
            continue
        if member.path in EXCLUDED_MODULES:
            continue
        yield from _public_modules(member)


def _is_private_path(path: str) -> bool:
    return any(part.startswith("_") and part != "__init__" for part in path.split("."))


def reference_modules(package: Any = None) -> list[ReferenceModule]:
    """Every public module of the reference sections, with the split of its ``__all__``.

    A name is documented where it is defined; a re-export points there when the defining module
    is itself in the reference and exports it, and to the schema page for generated protobuf
    classes; anything else a module exports (from a private or unlisted module) is documented in
    the exporting module.

    Args:
        package: a griffe ``Module`` of ``lkproto`` (loaded when None).

    Returns:
        The modules in section and source order; the schema modules are left out.
    """
    package = package if package is not None else _load_griffe()
    found: list[tuple[str, Any]] = []
    for section, root in SECTIONS.items():
        top = package[root.split(".", 1)[1]]
        for module in _public_modules(top):
            if module.path in SCHEMA_MODULES or module.exports is None:
                continue
            found.append((section, module))
    exports = {
        module.path: {e if isinstance(e, str) else e.name for e in module.exports}
        for _, module in found
    }
    out: list[ReferenceModule] = []
    for section, module in found:
        defined: list[str] = []
        reexported: dict[str, str] = {}
        for export in module.exports:
            name = export if isinstance(export, str) else export.name
            member = module.members.get(name)
            if member is None:
                # Provided lazily by a module __getattr__ (lkproto.errors.RpcError): ask Python
                # where the object lives.
                value = getattr(importlib.import_module(module.path), name)
                reexported[name] = f"{value.__module__}.{value.__qualname__}"
                continue
            target = member.final_target if member.is_alias else member
            if target.is_module:
                reexported[name] = target.path  # a submodule: documented under its own name
                continue
            if not member.is_alias:
                defined.append(name)
                continue
            home, _, own_name = target.path.rpartition(".")
            if target.path.startswith("lkproto._pb."):
                reexported[name] = SCHEMA_TARGET + own_name
            elif home != module.path and own_name in exports.get(home, ()):
                reexported[name] = target.path
            else:
                defined.append(name)
        out.append(
            ReferenceModule(
                path=module.path, section=section, defined=tuple(defined), reexported=reexported
            )
        )
    return out


def _api_page(section: str, modules: list[ReferenceModule]) -> str:
    root = SECTIONS[section]
    lines = [f"# `{root}`", ""]
    if section == "wire":
        lines += [
            "The protobuf messages and enums of `lkproto.wire.pb` and `lkproto.wire.api` are "
            "listed, with their fields, on [Schema messages](schema.md).",
            "",
        ]
    for module in modules:
        if module.section != section:
            continue
        lines += [
            f"::: {module.path}",
            "    options:",
            "      show_submodules: false",
        ]
        if module.defined:
            lines.append("      members:")
            lines += [f"        - {name}" for name in module.defined]
        else:
            lines.append("      members: false")
        lines.append("")
        classes = [n for n, t in module.reexported.items() if not t.startswith(SCHEMA_TARGET)]
        if classes:
            lines += [
                f"Also importable from `{module.path}` (documented where they are defined):",
                "",
                "| name | documented at |",
                "| --- | --- |",
            ]
            for name in classes:
                target = module.reexported[name]
                link = "(schema.md)" if target in SCHEMA_MODULES else f"[{target}]"
                lines.append(f"| `{name}` | [`{target}`]{link} |")
            lines.append("")
        schema = [n for n, t in module.reexported.items() if t.startswith(SCHEMA_TARGET)]
        if schema:
            links = ", ".join(f"[`{n}`](schema.md#{_schema_anchor(n)})" for n in schema)
            lines += [
                f"Protobuf messages and enums importable from `{module.path}` "
                f"(see [Schema messages](schema.md)): {links}.",
                "",
            ]
    return "\n".join(lines) + "\n"


def _schema_anchor(name: str) -> str:
    return f"pb-{name}"


def _field_type(field: Any) -> str:
    if field.message_type is not None:
        return str(field.message_type.full_name).removeprefix("lkproto.")
    if field.enum_type is not None:
        return str(field.enum_type.full_name).removeprefix("lkproto.")
    from google.protobuf.descriptor import FieldDescriptor

    kinds = {
        value: name.removeprefix("TYPE_").lower()
        for name, value in vars(FieldDescriptor).items()
        if name.startswith("TYPE_")
    }
    return kinds.get(field.type, str(field.type))


def _message_entry(name: str, descriptor: Any) -> list[str]:
    lines = [f"### {name} {{ #{_schema_anchor(name)} }}", "", f"Message `{descriptor.full_name}`."]
    lines.append("")
    if descriptor.fields:
        lines += ["| field | number | type |", "| --- | ---: | --- |"]
        for field in descriptor.fields:
            kind = ("repeated " if _is_repeated(field) else "") + f"`{_field_type(field)}`"
            if field.containing_oneof is not None:
                kind += f" (oneof `{field.containing_oneof.name}`)"
            lines.append(f"| `{field.name}` | {field.number} | {kind} |")
        lines.append("")
    return lines


def _enum_entry(name: str, descriptor: Any) -> list[str]:
    values = ", ".join(f"`{v.name}` = {v.number}" for v in descriptor.values)
    heading = f"### {name} {{ #{_schema_anchor(name)} }}"
    return [heading, "", f"Enum `{descriptor.full_name}`: {values}.", ""]


def _schema_page() -> str:
    lines = [
        "# Schema messages",
        "",
        "Every protobuf message and enum `lkproto.wire.pb` (signalling, data packets, models) and "
        "`lkproto.wire.api` (the server API) export, drawn from the descriptors of the generated "
        "code at build time. The schema is lkproto's own "
        "(see [Wire schema](../protocol/wire-schema.md)); names and field numbers are the "
        "protocol's.",
        "",
    ]
    seen: set[str] = set()
    for module_path in SCHEMA_MODULES:
        module = importlib.import_module(module_path)
        lines += [f"## `{module_path}`", ""]
        constants: list[str] = []
        for name in sorted(module.__all__):
            if name in seen:
                continue  # exported by both modules: one entry, under the first
            seen.add(name)
            value = getattr(module, name)
            descriptor = getattr(value, "DESCRIPTOR", None)
            if descriptor is None:
                constants.append(f"`{name}` = {value!r}")
            elif hasattr(descriptor, "fields"):
                lines += _message_entry(name, descriptor)
            else:
                lines += _enum_entry(name, descriptor)
        if constants:
            lines += ["### Enum values re-exported as constants", ""]
            lines += [", ".join(constants) + ".", ""]
    return "\n".join(lines) + "\n"


def _is_repeated(field: Any) -> bool:
    # protobuf 7 has only `is_repeated`; older releases only the label.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _capture_pages(docs_dir: Path) -> dict[str, str]:
    from lkproto.wire.explorer import render_html
    from lkproto.wire.tap import TapRecord

    pages: dict[str, str] = {}
    for capture in sorted((docs_dir / "captures").glob("*.jsonl")):
        with capture.open(encoding="utf-8") as lines:
            records = [TapRecord.from_json(json.loads(line)) for line in lines if line.strip()]
        pages[f"captures/{capture.stem}.html"] = render_html(
            records, title=f"{capture.name} · lkproto wire explorer"
        )
    return pages


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the build (mkdocs hook event)."""
    from mkdocs.structure.files import File

    modules = reference_modules()
    for section in SECTIONS:
        files.append(
            File.generated(config, f"api/{section}.md", content=_api_page(section, modules))
        )
    files.append(File.generated(config, "api/schema.md", content=_schema_page()))
    for uri, page in _capture_pages(Path(config["docs_dir"])).items():
        files.append(File.generated(config, uri, content=page))
    return files


# :class:`x`, :meth:`~a.b.c`, :py:func:`f` ... (the roles the code's docstrings use).
_LITERAL: Final = re.compile(r"::\n\n")
_ROLE: Final = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|mod|exc|obj|const):`(~?)([^`]+)`")


def _documented_paths(package: Any) -> tuple[set[str], set[str]]:
    """Module paths and object paths the API reference renders (public members included)."""
    modules = reference_modules(package)
    return {m.path for m in modules}, {f"{m.path}.{name}" for m in modules for name in m.defined}


# Comment lines that are directives to tools, not documentation.
_TOOL_COMMENT: Final = re.compile(r"#\s*(noqa|type:|fmt:|pragma|pyright:|mypy:|ruff:)")


def _comment_docstring(obj: Any) -> Any:
    """A docstring from the comment block right above an attribute, or None.

    The code documents constants with comments: Sphinx's ``#:`` doc-comments, or a plain comment
    block directly above the assignment. Griffe reads neither, so they are turned into the
    attribute's docstring (what Sphinx autodoc does with ``#:``).
    """
    if obj.lineno is None or obj.filepath is None:
        return None
    try:
        lines = obj.lines_collection[obj.filepath]
    except KeyError:
        return None
    block: list[str] = []
    index = obj.lineno - 2  # the line above the assignment, 0-based
    if index >= len(lines):
        return None  # the lines are another file's (a stub) or the object was inspected
    while index >= 0:
        line = lines[index].strip()
        if not line.startswith("#") or _TOOL_COMMENT.match(line):
            break
        block.append(line.removeprefix("#:").removeprefix("#").strip())
        index -= 1
    if not any(block):
        return None
    text = " ".join(part for part in reversed(block) if part)
    return griffe.Docstring(text, lineno=index + 2, endlineno=obj.lineno - 1, parent=obj)


class SphinxRoles(griffe.Extension):
    """Griffe extension: Sphinx roles in docstrings become Markdown the site can render.

    Attributes documented by comments (``#:`` or a comment block right above) get those comments
    as their docstring first.

    A role whose target resolves (from the docstring's scope, or as an absolute path) to an object
    the reference documents becomes an autorefs cross-reference; any other role becomes inline
    code, since a link to an undocumented (private) object would break the strict build.
    """

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        """Rewrite every docstring of the ``lkproto`` package once it is loaded."""
        if pkg.path != "lkproto":
            return
        modules, objects = _documented_paths(pkg)

        def documented(path: str) -> bool:
            if path in modules or path in objects:
                return True
            for obj_path in objects:
                if path.startswith(obj_path + "."):
                    members = path[len(obj_path) + 1 :].split(".")
                    return not any(part.startswith("_") for part in members)
            return False

        def target_path(scope: Any, name: str) -> str | None:
            first, _, rest = name.partition(".")
            try:
                if first == "lkproto":
                    found = pkg.modules_collection[name]
                else:
                    base = pkg.modules_collection[scope.resolve(first)]
                    found = base if not rest else base[rest]
                final = found.final_target if found.is_alias else found
            except Exception:  # an unresolvable name stays plain code
                return None
            return str(final.path)

        def rewrite(scope: Any, text: str) -> str:
            def replace(match: re.Match[str]) -> str:
                tilde, name = match.group(1), match.group(2).strip()
                title = name.rsplit(".", 1)[-1] if tilde else name
                path = target_path(scope, name)
                if path is not None and documented(path):
                    return f"[`{title}`][{path}]"
                return f"`{title}`"

            # reST's "text::" announces a literal block; in Markdown the indented block after a
            # blank line already is one, so only the colon stays.
            return _LITERAL.sub(":\n\n", _ROLE.sub(replace, text))

        def walk(obj: Any) -> None:
            if obj.docstring is None and obj.is_attribute:
                obj.docstring = _comment_docstring(obj)
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj, obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)

        walk(pkg)
