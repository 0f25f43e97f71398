"""``DeferredModule``: the module loads on the first attribute read, not before."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lkproto.rtc._deferred import DeferredModule


@pytest.fixture
def module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "lkproto_deferred_probe"
    (tmp_path / f"{name}.py").write_text("VALUE = object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_imports_on_first_attribute_read_and_rebinds_the_importers_global(
    module_name: str,
) -> None:
    namespace: dict[str, object] = {}
    deferred = namespace["mod"] = DeferredModule(module_name, namespace, "mod")
    assert module_name not in sys.modules
    assert module_name in repr(deferred)
    value = deferred.VALUE
    module = sys.modules[module_name]
    assert value is module.VALUE
    assert namespace["mod"] is module  # the importer's later reads skip the stand-in


def test_reads_through_a_kept_stand_in_see_a_patched_module(
    module_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, object] = {}
    deferred = namespace["mod"] = DeferredModule(module_name, namespace, "mod")
    first = deferred.VALUE
    replacement = object()
    monkeypatch.setattr(sys.modules[module_name], "VALUE", replacement)
    assert deferred.VALUE is replacement is not first


def test_a_missing_name_raises_attribute_error(module_name: str) -> None:
    deferred = DeferredModule(module_name, {}, "mod")
    with pytest.raises(AttributeError, match="NoSuchName"):
        _ = deferred.NoSuchName
