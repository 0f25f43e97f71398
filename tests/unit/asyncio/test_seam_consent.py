"""The seam's consent freshness (``_seam.fit_consent``), against two real aioice connections.

The fitted check loop retransmits each check and loses consent only when nothing was answered for
``CONSENT_EXPIRY_S``. The peer here answers only retransmitted requests: the fitted connection
stays up, while stock aioice (one try per check, six failures in a row) closes the same
connection, so the first test cannot pass by accident. A peer that stops answering loses
consent. Timings are shrunk through the module constants so each test takes seconds.
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


def _answer_only_retransmissions(connection: aioice.ice.Connection) -> None:
    """Make ``connection`` ignore the first copy of every consent check it is sent."""
    seen: set[bytes] = set()
    original: Callable[..., Any] = connection.request_received

    def request_received(message: aioice.stun.Message, *args: Any) -> None:
        if message.transaction_id not in seen:
            seen.add(message.transaction_id)
            return
        original(message, *args)

    setattr(connection, "request_received", request_received)  # noqa: B010


def _ignore_every_request(connection: aioice.ice.Connection) -> None:
    def request_received(message: aioice.stun.Message, *args: Any) -> None:
        return None

    setattr(connection, "request_received", request_received)  # noqa: B010


@pytest.fixture
def shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consent timings a hundred times shorter (checks every ~50 ms, STUN RTO 20 ms)."""
    monkeypatch.setattr(_seam, "CONSENT_INTERVAL_S", 0.05)
    monkeypatch.setattr(_seam, "CONSENT_EXPIRY_S", 0.6)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.05)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.02)


async def _connected(fit: bool) -> tuple[aioice.ice.Connection, aioice.ice.Connection]:
    left, right = await loopback_ice_pair()
    if fit:
        _seam.fit_consent(left)
    async with asyncio.timeout(scaled(10)):
        await asyncio.gather(left.connect(), right.connect())
    return left, right


async def _closed_within(connection: aioice.ice.Connection, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if connection._closed:
            return True
        await asyncio.sleep(0.02)
    return bool(connection._closed)


@pytest.mark.usefixtures("shrunk")
async def test_checks_answered_on_retransmission_keep_consent() -> None:
    left, right = await _connected(fit=True)
    try:
        _answer_only_retransmissions(right)
        # Three expiry periods: every check is answered late, none on its first copy.
        assert not await _closed_within(left, 3 * 0.6)
    finally:
        await left.close()
        await right.close()


@pytest.mark.usefixtures("shrunk")
async def test_stock_aioice_drops_the_same_connection() -> None:
    left, right = await _connected(fit=False)
    try:
        _answer_only_retransmissions(right)
        # Six single-try checks ~70 ms apart fail in well under 5 s.
        assert await _closed_within(left, scaled(5))
    finally:
        await left.close()
        await right.close()


@pytest.mark.usefixtures("shrunk")
async def test_consent_is_lost_when_nothing_is_answered() -> None:
    left, right = await _connected(fit=True)
    try:
        _ignore_every_request(right)
        assert await _closed_within(left, scaled(5))
        assert left._query_consent_task is None
    finally:
        await left.close()
        await right.close()


def test_expiry_rule() -> None:
    assert not _seam.consent_expired(100.0, 100.0 + _seam.CONSENT_EXPIRY_S - 0.001)
    assert _seam.consent_expired(100.0, 100.0 + _seam.CONSENT_EXPIRY_S)


async def test_fitting_twice_changes_nothing() -> None:
    connection = aioice.ice.Connection(ice_controlling=True)
    _seam.fit_consent(connection)
    first = connection.query_consent
    _seam.fit_consent(connection)
    assert connection.query_consent is first
    await connection.close()
