"""Sans-I/O protocol state machines (no sockets, no clock, no asyncio).

Every input takes ``now``; outputs are pulled. Only ``protobuf`` and ``lkproto.wire`` are needed.
"""

from __future__ import annotations

__all__: list[str] = []
