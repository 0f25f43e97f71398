"""lkproto <-> livekit-client in headless Chromium: data packets and RPC, both directions.

The browser side is npm ``livekit-client`` driven through ``tests/interop/browser/harness.py``;
the lkproto side is ``lkproto.rtc`` with ICE pinned to 127.0.0.1. Nothing is skipped: without the
browser set-up the fixture fails and says to run ``tools/setup_browser.sh``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from lkproto import rtc
from lkproto.testing import scaled
from tests.interop.browser.harness import BrowserPeer, BrowserRpcError, started_browser

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

# Participant updates about non-publishers are batched by the server every 3 s.
ROSTER_TIMEOUT_S = 15.0
DATA_TIMEOUT_S = 10.0


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    async with started_browser() as peer:  # BrowserSetupError names the fix if not set up
        yield peer


async def _until(predicate: Callable[[], bool], what: str, limit_s: float) -> None:
    async with asyncio.timeout(scaled(limit_s)):
        while not predicate():  # noqa: ASYNC110 (polling a plain attribute of another SDK)
            await asyncio.sleep(0.05)
    assert predicate(), what


@pytest.fixture
async def joined(
    livekit_server: LocalServer, browser: BrowserPeer
) -> AsyncIterator[tuple[rtc.Room, list[rtc.DataPacket]]]:
    room_name = f"lk-web-{uuid.uuid4().hex[:10]}"
    room = rtc.Room()
    received: list[rtc.DataPacket] = []
    room.on("data_received", received.append)
    try:
        await room.connect(
            livekit_server.url,
            livekit_server.create_token("lk", room_name),
            rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"])),
        )
        await browser.connect(livekit_server.url, livekit_server.create_token("web", room_name))
        await _until(
            lambda: "web" in room.remote_participants, "lkproto sees web", ROSTER_TIMEOUT_S
        )
        await browser.wait_for_remote("lk", ROSTER_TIMEOUT_S)
        yield room, received
    finally:
        await room.disconnect()


async def test_reliable_packet_with_topic_each_way(
    browser: BrowserPeer, joined: tuple[rtc.Room, list[rtc.DataPacket]]
) -> None:
    room, received = joined
    to_browser = "from lkproto ✓".encode() * 20
    await room.local_participant.publish_data(to_browser, reliable=True, topic="lk.to.web")
    ev = await browser.wait_event(
        "DataReceived", lambda e: e["topic"] == "lk.to.web", DATA_TIMEOUT_S
    )
    assert browser.payload(ev) == to_browser
    assert ev["identity"] == "lk"
    assert ev["kind"] == "reliable"

    to_lk = b"\x00from livekit-client\xff" * 10
    await browser.publish_data(to_lk, topic="web.to.lk", reliable=True)
    await _until(
        lambda: any(p.topic == "web.to.lk" for p in received), "packet from web", DATA_TIMEOUT_S
    )
    packet = next(p for p in received if p.topic == "web.to.lk")
    assert packet.data == to_lk
    assert packet.participant is not None
    assert packet.participant.identity == "web"
    assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE


async def test_rpc_each_way(
    browser: BrowserPeer, joined: tuple[rtc.Room, list[rtc.DataPacket]]
) -> None:
    await browser.register_rpc("echo", mode="echo")
    await browser.register_rpc(
        "refuse", mode="rpc_error", error_code=1234, error_message="nope", error_data="why"
    )
    room, _ = joined
    calls: list[rtc.RpcInvocationData] = []

    @room.local_participant.register_rpc_method("upper")
    async def upper(data: rtc.RpcInvocationData) -> str:
        calls.append(data)
        return data.payload.upper()

    @room.local_participant.register_rpc_method("fails")
    def fails(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4321, "lk says no", "lk-data")

    # lkproto -> browser
    lp = room.local_participant
    assert await lp.perform_rpc(destination_identity="web", method="echo", payload="é1") == "é1"
    with pytest.raises(rtc.RpcError) as refused:
        await lp.perform_rpc(destination_identity="web", method="refuse", payload="x")
    assert (refused.value.code, refused.value.message, refused.value.data) == (
        1234,
        "nope",
        "why",
    )
    with pytest.raises(rtc.RpcError) as unknown:
        await lp.perform_rpc(destination_identity="web", method="missing", payload="x")
    assert unknown.value.code == 1400

    # browser -> lkproto
    assert await browser.perform_rpc("lk", "upper", "abc") == "ABC"
    assert calls[-1].caller_identity == "web"
    with pytest.raises(BrowserRpcError) as failed:
        await browser.perform_rpc("lk", "fails", "x")
    assert (failed.value.code, failed.value.js_message, failed.value.data) == (
        4321,
        "lk says no",
        "lk-data",
    )
