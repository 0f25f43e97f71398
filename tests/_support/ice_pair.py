"""Two real aioice connections on loopback that know each other, for the seam's ICE tests.

aioice leaves 127.0.0.1 out of its own host addresses; the seam's host-address wrapper, scoped to
loopback while gathering, supplies it. The pair is not connected yet: the caller fits or breaks
either side first, then calls ``connect()`` on both.
"""

from __future__ import annotations

import aioice.ice

from lkproto.asyncio import _seam

__all__ = ["loopback_ice_pair"]


async def loopback_ice_pair() -> tuple[aioice.ice.Connection, aioice.ice.Connection]:
    """A controlling and a controlled connection with each other's candidates and credentials."""
    left = aioice.ice.Connection(ice_controlling=True)
    right = aioice.ice.Connection(ice_controlling=False)
    for connection in (left, right):
        token = _seam._CHOSEN.set(("127.0.0.1",))
        try:
            _seam._wrap_host_addresses()
            await connection.gather_candidates()
        finally:
            _seam._CHOSEN.reset(token)
    for local, remote in ((left, right), (right, left)):
        for candidate in remote.local_candidates:
            await local.add_remote_candidate(candidate)
        await local.add_remote_candidate(None)
        local.remote_username = remote.local_username
        local.remote_password = remote.local_password
    return left, right
