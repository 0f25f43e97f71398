"""The seam's ICE receipt clock (issue 15, dead transport), on a real aiortc/aioice transport.

aiortc gathers real sockets; a datagram from a plain UDP socket reaches aioice's own
``StunProtocol.datagram_received`` through asyncio, so a release that renames the protocol list
or the method fails here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiortc
import pytest

from lkproto.asyncio import _seam
from lkproto.errors import LkError
from lkproto.testing import scaled


@pytest.fixture
async def transport() -> AsyncIterator[aiortc.RTCIceTransport]:
    gatherer = aiortc.RTCIceGatherer()
    await gatherer.gather()
    ice = aiortc.RTCIceTransport(gatherer)
    try:
        yield ice
    finally:
        await ice.stop()


async def test_a_datagram_moves_the_clock(transport: aiortc.RTCIceTransport) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    heard = _seam.watch_ice_receipts(transport)
    assert before <= heard() <= loop.time()  # the call itself counts as a receipt
    assert _seam.watch_ice_receipts(transport) == heard  # one clock per transport
    start = heard()
    candidate = transport.iceGatherer.getLocalCandidates()[0]
    await asyncio.sleep(0.01)  # the clock must move to pass
    family = socket.AF_INET6 if ":" in candidate.ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"\x80not stun", (candidate.ip, candidate.port))
        for _ in range(int(scaled(5.0) / 0.01)):  # bounded wait for the datagram
            if heard() != start:
                break
            await asyncio.sleep(0.01)
    assert heard() > start


def test_missing_internals_raise() -> None:
    class NotATransport:
        pass

    with pytest.raises(LkError, match="_protocols"):
        _seam.watch_ice_receipts(NotATransport())  # type: ignore[arg-type]
