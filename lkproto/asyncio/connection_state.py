"""The engine's connection state, in a module of its own so that ``import lkproto.rtc`` can name
it without importing the engine (issue 18: the engine and the core machines load at connect).
"""

from __future__ import annotations

import enum

__all__ = ["ConnectionState"]


class ConnectionState(enum.IntEnum):
    """Same values as the official SDK's ``ConnectionState`` (CONN_*)."""

    CONN_DISCONNECTED = 0
    CONN_CONNECTED = 1
    CONN_RECONNECTING = 2
