"""The only code that awaits: the signalling WebSocket, the aiortc peer wrapper, the room engine.

Requires the ``rtc`` extra. Protocol decisions live in :mod:`lkproto.core`; these drivers feed
it frames and timer ticks and carry out what it asks for.
"""

from __future__ import annotations

__all__: list[str] = []
