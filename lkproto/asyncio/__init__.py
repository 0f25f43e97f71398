"""The only code that awaits: the signalling WebSocket, the aiortc peer wrapper, the room engine.

Requires the ``rtc`` extra. Protocol decisions live in :mod:`lkproto.core`; these drivers feed
it frames and timer ticks and carry out what it asks for.
"""

from __future__ import annotations

from lkproto.asyncio._lazy_av import import_aiortc

__all__: list[str] = []

# Before any driver module imports aiortc: load it without PyAV, which then loads with the first
# media use (issue 18; see lkproto.asyncio._lazy_av).
import_aiortc()
