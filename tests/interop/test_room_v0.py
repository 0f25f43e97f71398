"""The v0 signalling path (``/rtc``, two peer connections) of ``lkproto.rtc.Room``.

A proxy in front of the real server answers ``/rtc/v1`` with a plain 404, as a server older than
v1.9.10 does; the engine must then fall back to ``/rtc`` (PROTOCOL-MAP §1 Who uses which path,
§0 Variant B), where the server offers the subscriber PC and aiortc answers it. The official SDK
joins the same room directly, and both sides must see each other and exchange data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from livekit import rtc as sdk

from lkproto import rtc
from lkproto.api import RoomServiceClient
from lkproto.errors import ApiError, JoinRejectedError
from lkproto.wire import pb
from tests._support.proxy import RelayProxy
from tests.conftest import scaled

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

CONNECT_TIMEOUT_S = 15.0
# The server batches updates about participants that publish nothing every 3 s
# (pkg/rtc/room.go subscriberUpdateInterval), so roster changes can arrive that late.
ROSTER_TIMEOUT_S = 15.0
DATA_TIMEOUT_S = 15.0
RESEND_INTERVAL_S = 0.5
DEPARTURE_S = 15.0
FAILURE_MARGIN_S = 3.0

Trace = list[tuple[str, str, object, bytes, float]]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _options(trace: Trace | None = None, **kwargs: object) -> rtc.RoomOptions:
    def record(direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        if trace is not None:
            trace.append((direction, channel, message, raw, now))

    return rtc.RoomOptions(
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        trace=record,
        **kwargs,  # type: ignore[arg-type]
    )


def _sdk_options() -> sdk.RoomOptions:
    # ice_servers=[]: the SDK takes the server's list, which LocalServer points at an unused
    # loopback STUN port (see test_official_sdk.py).
    return sdk.RoomOptions(rtc_config=sdk.RtcConfiguration(ice_servers=[]))


def _signal(trace: Trace, direction: str, member: str) -> list[object]:
    """Signal messages of one oneof member seen in one direction."""
    envelope = pb.SignalResponse if direction == "<" else pb.SignalRequest
    return [
        message
        for d, channel, message, _, _ in trace
        if d == direction
        and channel == "signal"
        and isinstance(message, envelope)
        and message.WhichOneof("message") == member
    ]


def _assert_used_v0(trace: Trace) -> None:
    """Only /rtc makes the server offer a subscriber PC and set subscriber_primary (§2 Modes)."""
    (join,) = _signal(trace, "<", "join")
    assert isinstance(join, pb.SignalResponse)
    assert join.join.subscriber_primary
    offers = _signal(trace, "<", "offer")
    assert offers, "no server-initiated subscriber offer: not the dual-PC path"
    answers = _signal(trace, ">", "answer")
    assert answers, "the subscriber offer was not answered"
    offer, answer = offers[0], answers[0]
    assert isinstance(offer, pb.SignalResponse)
    assert isinstance(answer, pb.SignalRequest)
    assert answer.answer.id == offer.offer.id
    # The publisher PC is ours to offer, and the server answers it.
    assert _signal(trace, ">", "offer")
    assert _signal(trace, "<", "answer")


async def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _exchange_with_sdk(
    server: LocalServer, room: rtc.Room, room_name: str, identity: str
) -> None:
    """An official SDK participant and ``room`` see each other and exchange reliable data."""
    ours: list[rtc.DataPacket] = []
    theirs: list[sdk.DataPacket] = []
    room.on("data_received", ours.append)
    peer = sdk.Room()
    peer.on("data_received", theirs.append)
    await asyncio.wait_for(
        peer.connect(server.url, server.create_token("official", room_name), _sdk_options()),
        scaled(CONNECT_TIMEOUT_S),
    )
    try:
        await _until(
            lambda: "official" in room.remote_participants,
            scaled(ROSTER_TIMEOUT_S),
            "lkproto to see the SDK participant",
        )
        await _until(
            lambda: identity in peer.remote_participants,
            scaled(ROSTER_TIMEOUT_S),
            "the SDK to see the lkproto participant",
        )
        assert room.remote_participants["official"].sid == peer.local_participant.sid

        # SDK -> us: arrives on the channels the server opened on our subscriber PC.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(DATA_TIMEOUT_S)
        while not ours:
            assert loop.time() < deadline, "no data from the SDK"
            await peer.local_participant.publish_data(b"to-lkproto", reliable=True, topic="v0")
            await asyncio.sleep(RESEND_INTERVAL_S)
        got = ours[0]
        assert (got.data, got.topic, got.kind) == (
            b"to-lkproto",
            "v0",
            rtc.DataPacketKind.KIND_RELIABLE,
        )
        assert got.participant is not None
        assert got.participant.identity == "official"

        # us -> SDK: leaves on the publisher PC we offered.
        engine = room.engine
        assert engine is not None
        packet = pb.DataPacket(user=pb.UserPacket(payload=b"to-sdk", topic="v0"))
        deadline = loop.time() + scaled(DATA_TIMEOUT_S)
        while not theirs:
            assert loop.time() < deadline, "no data from lkproto"
            await engine.send_data(packet, reliable=True)
            await asyncio.sleep(RESEND_INTERVAL_S)
        assert (theirs[0].data, theirs[0].topic) == (b"to-sdk", "v0")
        assert theirs[0].participant is not None
        assert theirs[0].participant.identity == identity
    finally:
        await asyncio.wait_for(peer.disconnect(), scaled(CONNECT_TIMEOUT_S))


async def _assert_room_empties(server: LocalServer, room_name: str) -> None:
    service = RoomServiceClient(server.url, server.api_key, server.api_secret)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(DEPARTURE_S)
    while True:
        try:
            left = [p.identity for p in await service.list_participants(room_name)]
        except ApiError as exc:
            if exc.code != "not_found":
                raise
            left = []
        if not left:
            return
        if loop.time() > deadline:
            pytest.fail(f"{left} still in {room_name!r} after {scaled(DEPARTURE_S)} s")
        await asyncio.sleep(0.1)


async def test_falls_back_to_v0_when_the_server_has_no_v1_route(
    livekit_server: LocalServer,
) -> None:
    room_name = _unique("v0-fallback")
    identity = _unique("lk")
    trace: Trace = []
    room = rtc.Room()
    async with RelayProxy(livekit_server.port, refuse_v1=True) as proxy:
        await asyncio.wait_for(
            room.connect(
                proxy.url, livekit_server.create_token(identity, room_name), _options(trace)
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        try:
            assert proxy.paths == ["/rtc/v1", "/rtc"]
            assert room.isconnected()
            assert room.name == room_name
            assert room.local_participant.identity == identity
            _assert_used_v0(trace)
            await _exchange_with_sdk(livekit_server, room, room_name, identity)
        finally:
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))
    assert not room.isconnected()
    await _assert_room_empties(livekit_server, room_name)


async def test_explicit_v0_against_the_real_server(livekit_server: LocalServer) -> None:
    room_name = _unique("v0-direct")
    identity = _unique("lk")
    trace: Trace = []
    room = rtc.Room()
    await asyncio.wait_for(
        room.connect(
            livekit_server.url,
            livekit_server.create_token(identity, room_name),
            _options(trace, single_peer_connection=False),
        ),
        scaled(CONNECT_TIMEOUT_S),
    )
    try:
        assert room.isconnected()
        _assert_used_v0(trace)
        await _exchange_with_sdk(livekit_server, room, room_name, identity)
    finally:
        await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))
    await _assert_room_empties(livekit_server, room_name)


async def test_explicit_v0_never_asks_for_v1(livekit_server: LocalServer) -> None:
    trace: Trace = []
    room = rtc.Room()
    async with RelayProxy(livekit_server.port) as proxy:
        await asyncio.wait_for(
            room.connect(
                proxy.url,
                livekit_server.create_token("alice", _unique("v0-relay")),
                _options(trace, single_peer_connection=False),
            ),
            scaled(CONNECT_TIMEOUT_S),
        )
        try:
            assert proxy.paths == ["/rtc"]
            _assert_used_v0(trace)
        finally:
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))


async def test_single_pc_only_does_not_fall_back(livekit_server: LocalServer) -> None:
    room = rtc.Room()
    token = livekit_server.create_token("alice", _unique("v1-only"))
    async with RelayProxy(livekit_server.port, refuse_v1=True) as proxy:
        # Bounded: past it wait_for raises TimeoutError (not JoinRejectedError) and the test fails.
        with pytest.raises(JoinRejectedError) as info:
            await asyncio.wait_for(
                room.connect(proxy.url, token, _options(single_peer_connection=True)),
                scaled(CONNECT_TIMEOUT_S + FAILURE_MARGIN_S),
            )
        assert proxy.paths == ["/rtc/v1"]
    err = info.value
    assert type(err) is JoinRejectedError
    assert err.status == 404
    assert "404 page not found" in str(err)
    assert room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
    assert not room.isconnected()
