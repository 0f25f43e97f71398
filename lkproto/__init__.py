"""lkproto: a from-scratch LiveKit client in pure Python.

Importing the package is cheap: submodules (``lkproto.wire``, ``lkproto.core``, ``lkproto.api``,
``lkproto.rtc``, ``lkproto.testing``) load only when asked for.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
"""The version of this package (PEP 440), the one ``pyproject.toml`` declares."""
