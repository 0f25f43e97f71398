"""The browser harness works: livekit-client in headless Chromium against the official Python SDK.

livekit-client (npm, in Debian's Chromium driven by playwright-core, see
``tests/interop/browser/harness.py``) and the official SDK (PyPI ``livekit``) join one room on the
loopback server, see each other join and leave, and exchange reliable data packets with a topic
both ways. This proves the harness; lkproto's own browser interop tests build on it.

Nothing here is skipped: without node, Chromium, the npm packages or the bundle the tests fail
and say to run ``tools/setup_browser.sh``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc

from lkproto.testing import scaled
from tests.interop.browser.harness import (
    BrowserPeer,
    BrowserRpcError,
    BrowserSetupError,
    check_browser_setup,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

CONNECT_TIMEOUT_S = 30.0
# livekit-server sends updates about participants that publish nothing in batches every 3 s
# (pkg/rtc/room.go subscriberUpdateInterval), so joins and leaves can arrive up to 3 s late.
ROSTER_TIMEOUT_S = 15.0
DATA_TIMEOUT_S = 10.0


def _room_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _sdk_options() -> rtc.RoomOptions:
    # ice_servers=[] makes the SDK use the server's list: LocalServer points it at an unused
    # loopback STUN port, so nothing goes to public STUN servers.
    return rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_servers=[]))


def _processes_using(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if needle in cmdline:
                pids.append(int(entry.name))
    return pids


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _exists(path: str) -> bool:
    return os.path.exists(path)


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    """A started browser peer; afterwards, checks that node and Chromium are gone."""
    problem = None
    try:
        check_browser_setup()
    except BrowserSetupError as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    peer = BrowserPeer(name="web")
    await peer.start()
    driver_pid = peer.driver_pid
    profile = peer.user_data_dir
    assert driver_pid is not None
    assert profile is not None
    try:
        yield peer
    finally:
        await peer.close()
    assert _processes_using(f"--user-data-dir={profile}") == [], "Chromium still running"
    assert not _pid_alive(driver_pid), "node driver still running"
    assert not _exists(profile), "Chromium profile not removed"


class SdkPeer:
    """The official SDK's Room with the events these tests wait for."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.room = rtc.Room()
        self.connected: list[str] = []
        self.disconnected: list[str] = []
        self.data: list[rtc.DataPacket] = []
        self._changed = asyncio.Event()
        self.room.on("participant_connected", self._on_connected)
        self.room.on("participant_disconnected", self._on_disconnected)
        self.room.on("data_received", self._on_data)

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_connected(self, participant: rtc.RemoteParticipant) -> None:
        self.connected.append(participant.identity)
        self._poke()

    def _on_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self.disconnected.append(participant.identity)
        self._poke()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.data.append(packet)
        self._poke()

    async def wait(
        self,
        condition: Callable[[], Any],
        timeout: float,  # noqa: ASYNC109 (scaled, reported with context)
        what: str,
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(timeout)
        while not (result := condition()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                pytest.fail(f"{self.identity}: no {what} within {scaled(timeout):.1f} s")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return result

    async def connect(self, server: LocalServer, room_name: str) -> None:
        token = server.create_token(self.identity, room_name, name=self.identity.upper())
        await asyncio.wait_for(
            self.room.connect(server.url, token, _sdk_options()), scaled(CONNECT_TIMEOUT_S)
        )

    async def disconnect(self) -> None:
        await asyncio.wait_for(self.room.disconnect(), scaled(CONNECT_TIMEOUT_S))


@pytest.fixture
async def sdk() -> AsyncIterator[SdkPeer]:
    peer = SdkPeer("py")
    try:
        yield peer
    finally:
        await peer.disconnect()


async def test_browser_and_official_sdk_see_each_other_join_and_leave(
    livekit_server: LocalServer, browser: BrowserPeer, sdk: SdkPeer
) -> None:
    room_name = _room_name("browser-roster")
    versions = browser.ready_info["versions"]
    assert versions["chromium"]
    assert versions["livekit_client"].startswith("2.")

    info = await browser.connect(
        livekit_server.url, livekit_server.create_token("web", room_name, name="WEB")
    )
    assert info["connection_state"] == "connected"
    assert info["room_name"] == room_name
    assert info["local"]["identity"] == "web"
    assert info["remote"] == []
    assert (await browser.wait_event("Connected", timeout=5.0))["type"] == "Connected"

    # The SDK joins second: the browser sees it arrive, the SDK finds the browser in its join.
    await sdk.connect(livekit_server, room_name)
    assert set(sdk.room.remote_participants) == {"web"}
    assert sdk.room.remote_participants["web"].name == "WEB"
    joined = await browser.wait_event(
        "ParticipantConnected", lambda e: e["identity"] == "py", ROSTER_TIMEOUT_S
    )
    assert joined["name"] == "PY"
    assert joined["sid"] == sdk.room.local_participant.sid
    assert [p["identity"] for p in (await browser.info())["remote"]] == ["py"]

    # The SDK leaves: the browser sees it go; the browser leaves: it gets Disconnected.
    await sdk.disconnect()
    await browser.wait_event(
        "ParticipantDisconnected", lambda e: e["identity"] == "py", ROSTER_TIMEOUT_S
    )
    after = await browser.disconnect()
    assert after["connection_state"] == "disconnected"
    left = await browser.wait_event("Disconnected", timeout=5.0)
    assert left["reason_name"] == "CLIENT_INITIATED"


async def test_reliable_data_with_topic_both_ways(
    livekit_server: LocalServer, browser: BrowserPeer, sdk: SdkPeer
) -> None:
    room_name = _room_name("browser-data")
    await sdk.connect(livekit_server, room_name)

    # The browser joins second: the SDK sees participant_connected, the browser finds the SDK.
    info = await browser.connect(
        livekit_server.url, livekit_server.create_token("web", room_name, name="WEB")
    )
    assert [p["identity"] for p in info["remote"]] == ["py"]
    await sdk.wait(lambda: "web" in sdk.connected, ROSTER_TIMEOUT_S, "participant_connected(web)")
    assert sdk.room.remote_participants["web"].name == "WEB"

    # browser -> SDK (all bytes, to catch any text/base64 mangling on the way)
    to_sdk = bytes(range(256)) + "héllo ✓".encode()
    await browser.publish_data(to_sdk, topic="browser.to.sdk", reliable=True)
    packet = await sdk.wait(
        lambda: next((p for p in sdk.data if p.topic == "browser.to.sdk"), None),
        DATA_TIMEOUT_S,
        "data from the browser",
    )
    assert packet.data == to_sdk
    assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE
    assert packet.participant is not None
    assert packet.participant.identity == "web"

    # SDK -> browser
    to_browser = b"\x00from the official sdk\xff" * 10
    await sdk.room.local_participant.publish_data(to_browser, reliable=True, topic="sdk.to.browser")
    ev = await browser.wait_event(
        "DataReceived", lambda e: e["topic"] == "sdk.to.browser", DATA_TIMEOUT_S
    )
    assert browser.payload(ev) == to_browser
    assert ev["identity"] == "py"
    assert ev["kind"] == "reliable"

    # ICE stayed on loopback: the browser paired 127.0.0.1 with the server's 127.0.0.1 candidate.
    pair = await browser.eval(SELECTED_PAIR_JS)
    assert pair["local"] == "127.0.0.1", pair
    assert pair["remote"] == "127.0.0.1", pair

    # The browser leaves: the SDK sees it go.
    await browser.disconnect()
    await sdk.wait(
        lambda: "web" in sdk.disconnected, ROSTER_TIMEOUT_S, "participant_disconnected(web)"
    )


SELECTED_PAIR_JS = """
const pc = room.engine.pcManager.publisher.getPC
  ? room.engine.pcManager.publisher.getPC()
  : room.engine.pcManager.publisher._pc;
const stats = await pc.getStats();
const byId = new Map();
stats.forEach((r) => byId.set(r.id, r));
for (const r of byId.values()) {
  if (r.type === 'transport' && r.selectedCandidatePairId) {
    const p = byId.get(r.selectedCandidatePairId);
    return {local: byId.get(p.localCandidateId).address,
            remote: byId.get(p.remoteCandidateId).address};
  }
}
return null;
"""


async def test_rpc_both_ways(
    livekit_server: LocalServer, browser: BrowserPeer, sdk: SdkPeer
) -> None:
    """The harness's RPC ops: handlers registered in the browser, performRpc from the browser."""
    room_name = _room_name("browser-rpc")
    invocations: list[rtc.RpcInvocationData] = []

    async def sdk_upper(data: rtc.RpcInvocationData) -> str:
        invocations.append(data)
        return data.payload.upper()

    async def sdk_fails(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(4321, "sdk says no", "sdk-data")

    await browser.register_rpc("echo", mode="echo")
    await browser.register_rpc("fixed", mode="fixed", response="fixed-answer")
    await browser.register_rpc(
        "refuse", mode="rpc_error", error_code=1234, error_message="nope", error_data="why"
    )
    await browser.register_rpc("crash", mode="throw", error_message="boom")

    await sdk.connect(livekit_server, room_name)
    # The official SDK registers handlers only once connected; the browser's were registered
    # before connecting (livekit-client keeps them on the Room).
    sdk.room.local_participant.register_rpc_method("upper", sdk_upper)
    sdk.room.local_participant.register_rpc_method("fails", sdk_fails)
    await browser.connect(livekit_server.url, livekit_server.create_token("web", room_name))
    await sdk.wait(lambda: "web" in sdk.connected, ROSTER_TIMEOUT_S, "participant_connected(web)")

    # SDK -> browser handlers
    lp = sdk.room.local_participant
    assert await lp.perform_rpc(destination_identity="web", method="echo", payload="é1") == "é1"
    invoked = await browser.wait_event("RpcInvoked", lambda e: e["method"] == "echo")
    assert invoked["caller_identity"] == "py"
    assert invoked["payload"] == "é1"
    assert await lp.perform_rpc(destination_identity="web", method="fixed", payload="") == (
        "fixed-answer"
    )
    with pytest.raises(rtc.RpcError) as refused:
        await lp.perform_rpc(destination_identity="web", method="refuse", payload="x")
    assert (refused.value.code, refused.value.message, refused.value.data) == (1234, "nope", "why")
    with pytest.raises(rtc.RpcError) as crashed:
        await lp.perform_rpc(destination_identity="web", method="crash", payload="x")
    assert crashed.value.code == rtc.RpcError.ErrorCode.APPLICATION_ERROR
    with pytest.raises(rtc.RpcError) as unknown:
        await lp.perform_rpc(destination_identity="web", method="missing", payload="x")
    assert unknown.value.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD

    # browser -> SDK handlers
    assert await browser.perform_rpc("py", "upper", "abc") == "ABC"
    assert invocations[-1].caller_identity == "web"
    with pytest.raises(BrowserRpcError) as failed:
        await browser.perform_rpc("py", "fails", "x")
    assert (failed.value.code, failed.value.js_message, failed.value.data) == (
        4321,
        "sdk says no",
        "sdk-data",
    )
