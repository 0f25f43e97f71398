"""ICE address selection: validation, and peers that gather exactly where they were told."""

from __future__ import annotations

import asyncio
import inspect
import re

import aioice.ice
import pytest

from lkproto import errors
from lkproto.asyncio._ice import check_addresses
from lkproto.asyncio.peer import PeerConnection, PeerOptions
from tests.conftest import scaled

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\w+) \d+ (\S+) \d+ typ (\w+)", re.MULTILINE)


def _host_addresses(sdp: str) -> list[str]:
    return [address for _, address, kind in _CANDIDATE.findall(sdp) if kind == "host"]


def test_addresses_are_deduplicated_in_order() -> None:
    assert check_addresses(["::1", "127.0.0.1", "::1"]) == ("::1", "127.0.0.1")
    assert check_addresses(()) == ()


@pytest.mark.parametrize("bad", [["localhost"], ["127.0.0.1", "eth0"], "127.0.0.1", [""]])
def test_invalid_addresses_are_refused(bad: list[str] | str) -> None:
    with pytest.raises(errors.LocalProtocolError):
        check_addresses(bad)
    with pytest.raises(errors.LocalProtocolError):
        PeerConnection(PeerOptions(ice_addresses=bad))  # type: ignore[arg-type]


async def test_two_peers_gather_only_on_loopback() -> None:
    loopback = PeerOptions(ice_addresses=("127.0.0.1", "127.0.0.1"))
    a, b, default = PeerConnection(loopback), PeerConnection(loopback), PeerConnection()
    try:
        await a.create_data_channels()
        await default.create_data_channels()
        offer, default_offer = await asyncio.wait_for(
            asyncio.gather(a.create_offer(), default.create_offer()), scaled(10)
        )
        answer = await asyncio.wait_for(b.apply_offer(offer), scaled(10))
        assert _host_addresses(offer) == ["127.0.0.1"]
        assert _host_addresses(answer) == ["127.0.0.1"]
        # Created in the same task at the same time, the default peer follows aioice's choice.
        stock = set(inspect.unwrap(aioice.ice.get_host_addresses)(True, True))
        assert set(_host_addresses(default_offer)) == stock
        assert "127.0.0.1" not in stock
        # No STUN server by default: nothing but host candidates.
        assert {kind for *_, kind in _CANDIDATE.findall(offer + answer + default_offer)} <= {"host"}
        # The choice does not leak out of the peers' own gathering.
        assert set(aioice.ice.get_host_addresses(True, True)) == stock
    finally:
        await a.close()
        await b.close()
        await default.close()


async def test_empty_choice_gathers_no_host_candidate() -> None:
    pc = PeerConnection(PeerOptions(ice_addresses=()))
    try:
        await pc.create_data_channels()
        offer = await asyncio.wait_for(pc.create_offer(), scaled(10))
        assert _host_addresses(offer) == []
    finally:
        await pc.close()
