"""Room changes participants, publications and tracks through their methods only.

rtc/room.py used to write other objects' private fields (``p._info = ...``,
``pub._track = ...``, ``track._muted = ...``, ``p._publications[sid] = ...``). Those objects now
have small methods for each change; this test keeps it so by reading room.py's syntax tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lkproto.rtc.room
from tests._support.fresh import call_in_fresh_interpreter

_MUTATORS = frozenset(
    {"add", "append", "clear", "discard", "extend", "insert", "pop", "popitem", "remove"}
    | {"setdefault", "update"}
)


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _foreign_private(node: ast.expr) -> ast.Attribute | None:
    """``x._field`` (or ``x._field[...]``) where ``x`` is not ``self``."""
    while isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not _is_self(node.value):
        return node
    return None


def foreign_writes(source: str) -> list[str]:
    """Every assignment to, or mutating call on, another object's private field."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MUTATORS
            and _foreign_private(node.func.value) is not None
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}(...)")
        flat: list[ast.expr] = []
        for target in targets:
            flat.extend(target.elts if isinstance(target, ast.Tuple) else [target])
        found.extend(
            f"line {target.lineno}: {ast.unparse(target)} = ..."
            for target in flat
            if _foreign_private(target) is not None
        )
    return found


def _room_foreign_writes() -> list[str]:
    return foreign_writes(Path(lkproto.rtc.room.__file__).read_text(encoding="utf-8"))


def test_room_writes_no_private_field_of_another_object() -> None:
    # Parsed in a fresh interpreter: tests/_support/fresh.py says why.
    assert (
        call_in_fresh_interpreter("tests.unit.rtc.test_room_encapsulation", "_room_foreign_writes")
        == []
    )
    source = Path(lkproto.rtc.room.__file__).read_text(encoding="utf-8")
    # The plain textual rule too: no ``x._name =`` on anything but self.
    text = [
        line
        for line in source.splitlines()
        if re.search(r"(?<!\bself)\._[a-z_]+(\[[^\]]*\])?\s*=(?!=)", line)
        and not line.lstrip().startswith("#")
    ]
    assert text == []


def test_the_check_sees_each_kind_of_foreign_write() -> None:
    source = """
def f(self, p, pub, track, rp):
    p._info = 1
    track, pub._track = pub._track, None
    p._publications[sid] = pub
    p._publications.pop(sid)
    track._count += 1
    self._mine = 2
    self._cache.pop(1)
    p.update(3)
"""
    assert sorted(w.split(":")[0] for w in foreign_writes(source)) == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 7",
    ]
