"""ICE address selection: the aioice wrapper only answers differently inside ice_addresses()."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aioice.ice
import pytest

from lkproto import errors
from lkproto.asyncio._ice import check_addresses, ice_addresses, install
from lkproto.asyncio.peer import PeerConnection, PeerOptions
from tests.conftest import scaled

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\w+) \d+ (\S+) \d+ typ (\w+)", re.MULTILINE)


def _original() -> Callable[[bool, bool], list[str]]:
    install()
    original = aioice.ice.get_host_addresses.__wrapped__  # type: ignore[attr-defined]
    assert callable(original)
    return original  # type: ignore[no-any-return]


def _host_addresses(sdp: str) -> list[str]:
    return [address for _, address, kind in _CANDIDATE.findall(sdp) if kind == "host"]


def test_install_is_idempotent() -> None:
    install()
    wrapper = aioice.ice.get_host_addresses
    install()
    install()
    assert aioice.ice.get_host_addresses is wrapper
    assert _original() is not wrapper
    assert not getattr(_original(), "__lkproto_ice_wrapper__", False)


def test_chosen_addresses_only_inside_the_context() -> None:
    original = _original()
    outside = aioice.ice.get_host_addresses(True, True)
    assert outside == original(True, True)
    assert "127.0.0.1" not in outside  # aioice's own rule, the reason for this module
    with ice_addresses(("127.0.0.1", "::1", "127.0.0.1")):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(False, True) == ["::1"]
        with ice_addresses(None):
            assert aioice.ice.get_host_addresses(True, True) == outside
        with ice_addresses(()):
            assert aioice.ice.get_host_addresses(True, True) == []
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(True, True) == outside


def test_context_is_restored_after_an_exception() -> None:
    outside = aioice.ice.get_host_addresses(True, False)
    with pytest.raises(RuntimeError), ice_addresses(("127.0.0.1",)):
        raise RuntimeError("boom")
    assert aioice.ice.get_host_addresses(True, False) == outside


async def test_other_tasks_are_not_affected() -> None:
    """A task that was not started from inside the block keeps aioice's behaviour."""
    inside = asyncio.Event()
    done = asyncio.Event()
    seen: list[list[str]] = []

    async def bystander() -> None:
        await inside.wait()
        seen.append(aioice.ice.get_host_addresses(True, False))
        done.set()

    task = asyncio.create_task(bystander())
    with ice_addresses(("127.0.0.1",)):
        inside.set()
        await asyncio.wait_for(done.wait(), scaled(5))
        # ...while a task created inside the block inherits the choice.
        assert await asyncio.create_task(_addresses_in_task()) == ["127.0.0.1"]
    await task
    assert seen == [_original()(True, False)]


async def _addresses_in_task() -> list[str]:
    return aioice.ice.get_host_addresses(True, False)


@pytest.mark.parametrize("bad", [["localhost"], ["127.0.0.1", "eth0"], "127.0.0.1", [""]])
def test_invalid_addresses_are_refused(bad: list[str] | str) -> None:
    with pytest.raises(errors.LocalProtocolError):
        check_addresses(bad)
    with pytest.raises(errors.LocalProtocolError), ice_addresses(bad):
        pass
    with pytest.raises(errors.LocalProtocolError):
        PeerConnection(PeerOptions(ice_addresses=bad))  # type: ignore[arg-type]


async def test_two_peers_gather_only_on_loopback() -> None:
    loopback = PeerOptions(ice_addresses=("127.0.0.1",))
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
        # Created in the same task at the same time, the default peer still follows aioice.
        assert "127.0.0.1" not in _host_addresses(default_offer)
        # No STUN server by default: nothing but host candidates.
        assert {kind for *_, kind in _CANDIDATE.findall(offer + answer + default_offer)} <= {"host"}
        # The choice does not leak out of the peer's own calls.
        assert aioice.ice.get_host_addresses(True, False) == _original()(True, False)
    finally:
        await a.close()
        await b.close()
        await default.close()
