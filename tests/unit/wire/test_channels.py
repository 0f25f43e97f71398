"""Data-channel labels (lkproto.wire.channels): the protocol's strings, defined once."""

from __future__ import annotations

import ast
from pathlib import Path

import lkproto
from lkproto.wire import channels
from tests._support.fresh import call_in_fresh_interpreter


def test_labels_are_the_protocol_strings() -> None:
    # PROTOCOL-MAP §3: the server matches these labels exactly.
    assert channels.RELIABLE_LABEL == "_reliable"
    assert channels.LOSSY_LABEL == "_lossy"
    assert channels.DATA_TRACK_LABEL == "_data_track"
    assert channels.DATA_CHANNEL_LABELS == ("_reliable", "_lossy", "_data_track")


def _label_literals(source: str) -> list[int]:
    """Lines where a label is written as a string constant (docstrings, which show examples of
    records, are documentation and do not count)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in channels.DATA_CHANNEL_LABELS
        and id(node) not in docstrings
    ]


def _offenders() -> dict[str, list[int]]:
    """Every lkproto module but channels.py that spells a label, with the lines."""
    root = Path(lkproto.__file__).parent
    return {
        str(path.relative_to(root)): lines
        for path in root.rglob("*.py")
        if path.name != "channels.py"
        and (lines := _label_literals(path.read_text(encoding="utf-8")))
    }


def test_no_other_module_spells_a_label_as_a_string_literal() -> None:
    # In a fresh interpreter: tests/_support/fresh.py says why.
    assert call_in_fresh_interpreter("tests.unit.wire.test_channels", "_offenders") == {}


def test_the_check_finds_a_planted_literal() -> None:
    assert _label_literals('CHANNEL = "_lossy"\n') == [1]
    assert _label_literals('"""Example: "_lossy"."""\n') == []
