"""A module imported on its first attribute access (issue 18).

``import lkproto.rtc`` names the engine and the core machines in :mod:`lkproto.rtc.room` and
:mod:`lkproto.rtc.participant`, but only a connected room uses them: binding them as
:class:`DeferredModule` moves their import (the engine alone is about half of lkproto's own
import time) to the first use, normally in :meth:`lkproto.rtc.Room.connect`. Type checkers see
the real modules through ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from types import ModuleType
from typing import Any

__all__ = ["DeferredModule"]


class DeferredModule:
    """Stands in for the module ``name`` under the global ``binding`` of ``namespace``.

    The first attribute read imports the module and rebinds ``namespace[binding]`` to it, so the
    importer's later reads go to the real module at full speed. Reads through a stand-in someone
    kept go to the module each time (nothing is cached here, so a test that patches the module
    is seen).

    Args:
        name: The absolute module name, e.g. ``"lkproto.asyncio.engine"``.
        namespace: The importing module's ``globals()``.
        binding: The global name the stand-in is bound to there.
    """

    def __init__(self, name: str, namespace: MutableMapping[str, Any], binding: str) -> None:
        self.__name = name
        self.__namespace = namespace
        self.__binding = binding

    def __getattr__(self, attr: str) -> Any:
        # Called only for names this class lacks: every module attribute.
        module: ModuleType = importlib.import_module(self.__name)
        if self.__namespace.get(self.__binding) is self:
            self.__namespace[self.__binding] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<deferred module {self.__name!r}>"
