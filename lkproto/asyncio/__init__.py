"""The only code that awaits: the signalling WebSocket, the aiortc peer wrapper, the room engine.

Requires the ``rtc`` extra. Protocol decisions live in :mod:`lkproto.core`; these drivers feed
it frames and timer ticks and carry out what it asks for.

Importing this package, or any driver a data-only client needs at import time (the engine, the
RPC and stream drivers), loads no aiortc, aioice, pyOpenSSL, cryptography, PyAV or numpy (issue
18): aiortc and what it pulls in load with the first peer connection
(:class:`lkproto.asyncio.peer.PeerConnection`), and then without PyAV, which loads with the first
media use (see :mod:`lkproto.asyncio._lazy_av`).
"""

from __future__ import annotations

__all__: list[str] = []
