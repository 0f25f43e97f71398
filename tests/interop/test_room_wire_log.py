"""Wire visibility of ``lkproto.rtc.Room``: the trace callback and the DEBUG signal log.

``RoomOptions(trace=callback)`` hands over every signal message in and out, and every data packet,
as ``(direction, channel, message, raw_bytes, now)``; the logger ``lkproto.signal`` writes the same
messages at DEBUG as ``"> SignalRequest.offer {...}"`` / ``"< SignalResponse.join {...}"``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from livekit import rtc as sdk

from lkproto import rtc
from lkproto.wire import decode_data_packet, decode_signal_response, describe, pb
from tests.conftest import scaled

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

CONNECT_TIMEOUT_S = 15.0
# JoinResponse.ping_interval is 5 s on v1.13.5 (PROTOCOL-MAP §1 Ping / Pong).
PING_ROUND_TRIP_S = 12.0
ROSTER_TIMEOUT_S = 15.0
DATA_TIMEOUT_S = 15.0
RESEND_INTERVAL_S = 0.5

Entry = tuple[str, str, object, bytes, float]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class _Tap:
    """A trace callback that records, and checks each call's shape as it happens."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.errors: list[str] = []

    def __call__(
        self, direction: str, channel: str, message: object, raw: bytes, now: float
    ) -> None:
        if direction not in ("<", ">"):
            self.errors.append(f"bad direction {direction!r}")
        if not isinstance(raw, bytes) or not isinstance(now, float):
            self.errors.append(f"bad types raw={type(raw)} now={type(now)}")
        self.entries.append((direction, channel, message, raw, now))

    def signal(self, direction: str | None = None) -> list[Entry]:
        return [e for e in self.entries if e[1] == "signal" and direction in (None, e[0])]

    def members(self, direction: str) -> list[str | None]:
        return [_member(e[2]) for e in self.signal(direction)]


def _member(message: object) -> str | None:
    assert isinstance(message, pb.SignalRequest | pb.SignalResponse)
    return message.WhichOneof("message")


def _options(tap: _Tap) -> rtc.RoomOptions:
    return rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]), trace=tap)


async def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def _assert_signal_entries_faithful(tap: _Tap) -> None:
    assert not tap.errors
    for direction, _, message, raw, _ in tap.signal():
        if direction == ">":
            assert isinstance(message, pb.SignalRequest)
            assert raw == message.SerializeToString()
        else:
            assert isinstance(message, pb.SignalResponse)
            assert decode_signal_response(raw) == message
    times = [e[4] for e in tap.entries]
    assert times == sorted(times), "trace timestamps went backwards"


async def test_trace_and_debug_log_show_every_signal_message(
    livekit_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lkproto.signal")
    tap = _Tap()
    room = rtc.Room()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(
        room.connect(
            livekit_server.url, livekit_server.create_token("alice", _unique("wire")), _options(tap)
        ),
        scaled(CONNECT_TIMEOUT_S),
    )
    try:
        # Join flow on /rtc/v1 (PROTOCOL-MAP §0 Variant A): the JoinRequest rides in the URL, so
        # the first frame out is our offer, and the first frame in is the JoinResponse.
        assert tap.members(">")[0] == "offer"
        assert tap.members("<")[0] == "join"
        assert {"answer", "refresh_token"} <= set(tap.members("<"))
        (join,) = [e[2] for e in tap.signal("<") if _member(e[2]) == "join"]
        assert isinstance(join, pb.SignalResponse)
        assert join.join.participant.identity == "alice"
        # Keep-alive traffic after the join is traced too.
        await _until(
            lambda: "pong_resp" in tap.members("<"),
            scaled(PING_ROUND_TRIP_S),
            "a ping_req / pong_resp round trip",
        )
        assert "ping_req" in tap.members(">")
    finally:
        await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))
    assert tap.members(">")[-1] == "leave"
    _assert_signal_entries_faithful(tap)
    assert all(started <= e[4] <= loop.time() for e in tap.entries)

    # The DEBUG log shows the same messages, in the same order, with arrows ("= ..." lines
    # about the connection itself may come in between).
    lines = [
        line
        for r in caplog.records
        if r.name == "lkproto.signal" and r.levelno == logging.DEBUG
        if (line := r.getMessage()).startswith(("< ", "> "))
    ]
    assert lines == [
        f"{direction} {describe(message)}"  # type: ignore[arg-type]
        for direction, _, message, _, _ in tap.signal()
    ]
    assert any(line.startswith("> SignalRequest.offer {") for line in lines)
    assert lines[0].startswith("< SignalResponse.join {")
    assert all(line.endswith("}") or line.endswith("…}") for line in lines)


async def test_trace_shows_data_packets_from_the_official_sdk(livekit_server: LocalServer) -> None:
    room_name = _unique("wire-data")
    tap = _Tap()
    room = rtc.Room()
    token = livekit_server.create_token("alice", room_name)
    await asyncio.wait_for(
        room.connect(livekit_server.url, token, _options(tap)), scaled(CONNECT_TIMEOUT_S)
    )
    peer = sdk.Room()
    try:
        await asyncio.wait_for(
            peer.connect(
                livekit_server.url,
                livekit_server.create_token("official", room_name),
                sdk.RoomOptions(rtc_config=sdk.RtcConfiguration(ice_servers=[])),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        await _until(
            lambda: "alice" in peer.remote_participants,
            scaled(ROSTER_TIMEOUT_S),
            "the SDK to see alice",
        )

        def packets(channel: str, direction: str = "<") -> list[Entry]:
            return [e for e in tap.entries if e[1] == channel and e[0] == direction]

        loop = asyncio.get_running_loop()
        for channel, reliable in (("_reliable", True), ("_lossy", False)):
            payload = f"via {channel}".encode()
            deadline = loop.time() + scaled(DATA_TIMEOUT_S)
            while not packets(channel):
                assert loop.time() < deadline, f"nothing traced on {channel}"
                await peer.local_participant.publish_data(payload, reliable=reliable, topic="wire")
                await asyncio.sleep(RESEND_INTERVAL_S)
            _, _, message, raw, _ = packets(channel)[0]
            assert isinstance(message, pb.DataPacket)
            assert decode_data_packet(raw) == message
            assert message.WhichOneof("value") == "user"
            assert (message.user.payload, message.user.topic) == (payload, "wire")
            assert message.participant_identity == "official"
            assert message.participant_sid == peer.local_participant.sid

        # Our own packets are traced on the way out, with the exact bytes sent.
        engine = room.engine
        assert engine is not None
        await engine.send_data(pb.DataPacket(user=pb.UserPacket(payload=b"out")), reliable=True)
        ((_, _, message, raw, _),) = packets("_reliable", ">")
        assert isinstance(message, pb.DataPacket)
        assert raw == message.SerializeToString()
        assert message.user.payload == b"out"
    finally:
        await asyncio.wait_for(peer.disconnect(), scaled(CONNECT_TIMEOUT_S))
        await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))
    _assert_signal_entries_faithful(tap)
