"""The seam's steady connectivity checks (``_seam.keep_ice_checking``), on real aioice connections.

A join attempt made during a UDP outage must connect soon after the path returns (issue 15).
Here the controlled side ignores every request until the "outage" ends, after stock aioice's last
retransmission of the controlling side's check: stock aioice then fails ICE, while the fitted
connection, which sends a waiting check again at a steady pace, connects. Timings are shrunk
through the module constants (aioice's STUN RTO 20 ms: its last copy goes out at 1.26 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioice.ice
import aioice.stun
import pytest

from lkproto.asyncio import _seam
from lkproto.testing import scaled
from tests._support.ice_pair import loopback_ice_pair

# After aioice's last retransmission (0.02 * (1 + 2 + ... + 32) = 1.26 s), before its give-up
# (2.54 s): only a resent check can get through.
_OUTAGE_S = 1.6


def _deaf_until(connection: aioice.ice.Connection, restored: asyncio.Event) -> list[bytes]:
    """Make ``connection`` ignore requests until ``restored``; returns the ids it answered."""
    answered: list[bytes] = []
    original: Callable[..., Any] = connection.request_received

    def request_received(message: aioice.stun.Message, *args: Any) -> None:
        if not restored.is_set():
            return
        answered.append(message.transaction_id)
        original(message, *args)

    setattr(connection, "request_received", request_received)  # noqa: B010
    return answered


@pytest.fixture
def shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """STUN RTO 20 ms (aioice gives a check up after 2.54 s), resends every 50 ms."""
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.02)
    monkeypatch.setattr(_seam, "ICE_CHECK_RESEND_S", 0.05)


async def _restore_after(restored: asyncio.Event) -> None:
    await asyncio.sleep(_OUTAGE_S)
    restored.set()


@pytest.mark.usefixtures("shrunk")
async def test_stock_aioice_fails_when_the_path_returns_after_its_last_retransmission() -> None:
    left, right = await loopback_ice_pair()
    restored = asyncio.Event()
    _deaf_until(right, restored)
    restorer = asyncio.get_running_loop().create_task(_restore_after(restored))
    try:
        async with asyncio.timeout(scaled(10)):
            with pytest.raises(ConnectionError):
                await left.connect()
    finally:
        restorer.cancel()
        await left.close()
        await right.close()


@pytest.mark.usefixtures("shrunk")
async def test_a_fitted_connection_connects_once_the_path_returns() -> None:
    left, right = await loopback_ice_pair()
    _seam._keep_checking(left)
    restored = asyncio.Event()
    answered = _deaf_until(right, restored)
    restorer = asyncio.get_running_loop().create_task(_restore_after(restored))
    try:
        async with asyncio.timeout(scaled(10)):
            await asyncio.gather(left.connect(), right.connect())
        assert restored.is_set()
        assert answered  # the check that connected was answered after the restore
        # The resend loop ended with connect(): nothing of it is left running.
        assert not [
            t for t in asyncio.all_tasks() if "resend_loop" in repr(t.get_coro()) and not t.done()
        ]
    finally:
        restorer.cancel()
        await left.close()
        await right.close()


async def test_keeping_checks_is_idempotent_and_leaves_other_connections_alone() -> None:
    left, right = await loopback_ice_pair()
    try:
        _seam._keep_checking(left)
        shadow = left.connect
        _seam._keep_checking(left)
        assert left.connect is shadow
        assert "connect" not in vars(right)
        async with asyncio.timeout(scaled(10)):
            await asyncio.gather(left.connect(), right.connect())
    finally:
        await left.close()
        await right.close()
