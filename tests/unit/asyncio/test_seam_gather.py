"""The seam's cancelled-gather fix (``_seam.finish_gather_on_cancel``), against real aioice.

A ``create_offer`` cancelled at every loop turn of its gather, then the connection closed: no UDP
socket may stay open. The second test removes the fix and shows the same schedule leaks with
stock aioice, so the first cannot pass by accident (and fails if aioice changes its bind loop in a
way the fix no longer covers).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import Final

import aioice.ice
import pytest

from lkproto.asyncio import _seam
from lkproto.asyncio.peer import PeerConnection, PeerOptions
from lkproto.testing import scaled

# Three loopback addresses, so the bind loop has sockets bound before the one being awaited.
_ADDRESSES: Final = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
_TURNS: Final = range(12)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _leaked_after_cancels() -> list[int]:
    """Loop turns after which a cancelled create_offer left sockets open after close()."""
    leaked = []
    for turns in _TURNS:
        before = _open_fds()
        pc = PeerConnection(PeerOptions(ice_addresses=_ADDRESSES))
        await pc.create_data_channels()
        task = asyncio.get_running_loop().create_task(pc.create_offer())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(scaled(5)):
                await task
        async with asyncio.timeout(scaled(5)):
            await pc.close()
        # Closing sockets and the shielded gather end within a few loop turns.
        for _ in range(50):
            if _open_fds() <= before:
                break
            await asyncio.sleep(0.01)
        if _open_fds() > before:
            leaked.append(turns)
    return leaked


async def test_a_gather_cancelled_at_any_turn_leaves_no_socket() -> None:
    assert await _leaked_after_cancels() == []


async def test_without_the_fix_stock_aioice_leaks_on_the_same_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_seam, "finish_gather_on_cancel", lambda transport: None)
    leaked = await _leaked_after_cancels()
    # Close what stock aioice lost, so no ResourceWarning reaches a later test.
    for obj in gc.get_objects():
        if isinstance(obj, aioice.ice.StunProtocol) and obj.transport is not None:
            obj.transport.close()
    await asyncio.sleep(0)
    assert leaked != []
