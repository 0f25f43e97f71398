"""Import aiortc without loading PyAV until media is used (issue 18, data-only footprint).

aiortc 1.16.0 imports PyAV at the top of modules every peer connection needs, data channels
included (``aiortc/rtp.py``, ``mediastreams.py``, ``rtcrtpsender.py``, ``rtcrtpreceiver.py``,
``codecs/*.py``: ``from av import AudioFrame``, ``from av.frame import Frame``, ...), so every
client paid ~20 MiB and ~150 ms for codecs it might never use. Those names are only used inside
functions that handle media (and in annotations), never while aiortc's modules load.

:func:`import_aiortc` therefore imports aiortc while stand-ins for ``av`` and the submodules
aiortc names sit in :data:`sys.modules`, then takes them out again, so any later ``import av``
(lkproto's media code, the application, aiortc's ``contrib``) gets the real PyAV. What aiortc
bound during its import stays a stand-in that resolves on first use:

- a module stand-in (``import av`` in aiortc's codecs) forwards every attribute to the real
  module, importing it on first access;
- a class stand-in (``from av import AudioFrame``) is a class whose metaclass forwards calls,
  attribute reads and ``isinstance``/``issubclass`` checks to the real class.

Nothing is patched in aiortc: its modules run unchanged and hold these objects as ordinary
globals. When PyAV or aiortc is already imported, nothing is done (the real modules are used).
The stand-ins are installed only for the duration of aiortc's import, under the import lock.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["AV_STAND_IN_MODULES", "import_aiortc", "is_stand_in", "real_av_loaded"]

_log = logging.getLogger(__name__)

AV_STAND_IN_MODULES: Final = (
    "av",
    "av.frame",
    "av.packet",
    "av.audio",
    "av.video",
    "av.video.codeccontext",
)
"""The PyAV modules aiortc 1.16.0 imports names from at module level."""


def _resolve(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class _LazyClassMeta(type):
    """Metaclass of class stand-ins: everything but the name goes to the real class."""

    _lk_module: str
    _lk_name: str

    def _lk_target(cls) -> Any:
        return _resolve(cls._lk_module, cls._lk_name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._lk_target()(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls._lk_target())

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls._lk_target())

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_lk_"):
            raise AttributeError(name)
        return getattr(cls._lk_target(), name)


def _lazy_class(module: str, name: str) -> type:
    return _LazyClassMeta(
        name,
        (),
        {"_lk_module": module, "_lk_name": name, "__module__": module, "__qualname__": name},
    )


class _LazyModule(types.ModuleType):
    """Module stand-in: while aiortc imports, names become class stand-ins; after that every
    attribute comes from the real module."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []
        self._lk_importing = True
        self._lk_classes: dict[str, type] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_lk_"):
            raise AttributeError(name)
        if self._lk_importing:
            found = self._lk_classes.get(name)
            if found is None:
                found = self._lk_classes[name] = _lazy_class(self.__name__, name)
            return found
        return getattr(importlib.import_module(self.__name__), name)


def is_stand_in(obj: object) -> bool:
    """Whether ``obj`` is one of the stand-ins (a module or class) this module creates."""
    return isinstance(obj, _LazyModule | _LazyClassMeta)


def real_av_loaded() -> bool:
    """Whether the real PyAV is imported in this process."""
    module = sys.modules.get("av")
    return module is not None and not is_stand_in(module)


def import_aiortc(stand_in_modules: Sequence[str] = AV_STAND_IN_MODULES) -> None:
    """Import aiortc (and every aiortc module lkproto imports) without importing PyAV.

    Does nothing when aiortc or PyAV is already imported. Safe to call more than once. If aiortc
    cannot be imported this way (a release that imports another PyAV module at load time, or
    uses a PyAV name while loading), the partial import is undone and aiortc is imported the
    ordinary way, with PyAV, and a warning says so: slower and heavier, never broken.

    Args:
        stand_in_modules: the PyAV modules to stand in for (parents before children).
    """
    if "aiortc" in sys.modules or "av" in sys.modules:
        return
    stand_ins = {name: _LazyModule(name) for name in stand_in_modules}
    for name, module in stand_ins.items():
        parent, _, child = name.rpartition(".")
        if parent in stand_ins:
            setattr(stand_ins[parent], child, module)
    sys.modules.update(stand_ins)
    try:
        importlib.import_module("aiortc")
        # Imported by lkproto.asyncio._seam and not by aiortc's package __init__.
        importlib.import_module("aiortc.codecs.h264")
    except Exception as exc:  # any failure of the deferred import: fall back, never break
        failure: Exception | None = exc
    else:
        failure = None
    finally:
        for name, module in stand_ins.items():
            module._lk_importing = False
            if sys.modules.get(name) is module:
                del sys.modules[name]
    if failure is None:
        return
    for name in [m for m in sys.modules if m == "aiortc" or m.startswith("aiortc.")]:
        del sys.modules[name]
    _log.warning(
        "aiortc could not be imported with PyAV deferred (%r); importing it with PyAV", failure
    )
    importlib.import_module("aiortc")
