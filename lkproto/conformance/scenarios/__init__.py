"""The catalogue: importing this package registers every scenario, group by group."""

from __future__ import annotations

import importlib
from typing import Final

__all__ = ["GROUPS"]

GROUPS: Final = ("joins", "state", "data", "rpc", "streams", "reconnect", "media", "cluster")
"""Scenario modules, in catalogue order."""

for _group in GROUPS:
    importlib.import_module(f"{__name__}.{_group}")
