"""A raw WebSocket opened with lkproto.wire's join URL gets a JoinResponse from a real server.

No lkproto client code is involved beyond the codecs: this proves the schema and the join URL
against livekit-server v1.13.5, and that the server's refusals map to typed errors.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from lkproto import errors
from lkproto.api import AccessToken, RoomServiceClient, VideoGrants
from lkproto.testing import LocalServer
from lkproto.wire import (
    decode_signal_response,
    encode_signal_request,
    join_request,
    pb,
    rejection_error,
    signal_url_v0,
    signal_url_v1,
    wrap_join_request,
)
from tests.conftest import scaled

pytestmark = pytest.mark.interop


def _room() -> str:
    return f"raw-{uuid.uuid4().hex[:8]}"


async def _open(url: str, headers: dict[str, str] | None = None) -> ClientConnection:
    """Open the signal socket; a refused upgrade becomes lkproto's typed error."""
    try:
        return await asyncio.wait_for(
            connect(url, additional_headers=headers, open_timeout=None), scaled(10)
        )
    except InvalidStatus as exc:
        body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
        raise rejection_error(exc.response.status_code, body) from exc


async def _first_response(ws: ClientConnection) -> pb.SignalResponse:
    frame = await asyncio.wait_for(ws.recv(), scaled(10))
    assert isinstance(frame, bytes), "the server must answer binary frames"
    return decode_signal_response(frame)


async def _leave(ws: ClientConnection) -> None:
    leave = pb.SignalRequest(leave=pb.LeaveRequest(reason=pb.CLIENT_INITIATED))
    await ws.send(encode_signal_request(leave))
    await ws.close()


async def test_v1_join_response_matches_token(livekit_server: LocalServer) -> None:
    room = _room()
    token = livekit_server.create_token("alice", room, name="Alice")
    url = signal_url_v1(
        livekit_server.url, wrap_join_request(join_request(auto_subscribe=False)), token=token
    )
    ws = await _open(url)
    try:
        msg = await _first_response(ws)
        assert msg.WhichOneof("message") == "join"
        join = msg.join
        assert join.room.name == room
        assert join.room.sid.startswith("RM_")
        assert join.participant.identity == "alice"
        assert join.participant.name == "Alice"
        assert join.participant.sid.startswith("PA_")
        assert join.server_info.version == "1.13.5"
        assert join.server_info.protocol == 17
        assert (join.ping_interval, join.ping_timeout) == (5, 15)
        assert not join.subscriber_primary  # /rtc/v1 means one peer connection
        # The fixture's loopback STUN entry replaces the public defaults (PROTOCOL-MAP §17).
        urls = [u for server in join.ice_servers for u in server.urls]
        assert urls
        assert all("127.0.0.1" in u for u in urls), urls
        # A ping is answered with a pong echoing our timestamp.
        now_ms = int(time.time() * 1000)
        await ws.send(encode_signal_request(pb.SignalRequest(ping_req=pb.Ping(timestamp=now_ms))))
        for _ in range(20):
            resp = await _first_response(ws)
            if resp.WhichOneof("message") == "pong_resp":
                assert resp.pong_resp.last_ping_timestamp == now_ms
                break
        else:
            pytest.fail("no pong_resp within 20 frames")
    finally:
        await _leave(ws)


async def test_v1_join_with_bearer_header_and_gzip(livekit_server: LocalServer) -> None:
    room = _room()
    token = livekit_server.create_token("bob", room, can_update_own_metadata=True)
    request = join_request(metadata="m" * 3000, attributes={"role": "tester"})
    url = signal_url_v1(livekit_server.url, wrap_join_request(request, compression="gzip"))
    ws = await _open(url, {"Authorization": f"Bearer {token}"})
    try:
        join = (await _first_response(ws)).join
        assert join.participant.identity == "bob"
        assert join.participant.metadata == "m" * 3000
        assert dict(join.participant.attributes) == {"role": "tester"}
    finally:
        await _leave(ws)


async def test_v0_join(livekit_server: LocalServer) -> None:
    room = _room()
    token = livekit_server.create_token("carol", room)
    ws = await _open(signal_url_v0(livekit_server.url, token=token, auto_subscribe=True))
    try:
        join = (await _first_response(ws)).join
        assert join.participant.identity == "carol"
        assert join.subscriber_primary  # dual peer connection on /rtc
    finally:
        await _leave(ws)


async def test_bad_token_is_unauthorized(livekit_server: LocalServer) -> None:
    url = signal_url_v1(livekit_server.url, wrap_join_request(join_request()), token="not-a-jwt")
    with pytest.raises(errors.UnauthorizedError) as info:
        await _open(url)
    assert info.value.status == 401


async def test_wrong_secret_is_unauthorized(livekit_server: LocalServer) -> None:
    token = (
        AccessToken(livekit_server.api_key, "another-secret-that-is-long-enough-0123456789")
        .with_identity("mallory")
        .with_grants(VideoGrants(room_join=True, room=_room()))
        .to_jwt()
    )
    url = signal_url_v1(livekit_server.url, wrap_join_request(join_request()), token=token)
    with pytest.raises(errors.UnauthorizedError):
        await _open(url)


async def test_expired_token_is_unauthorized(livekit_server: LocalServer) -> None:
    # Issued two hours ago with a one-hour lifetime: beyond the server's one-minute leeway.
    token = (
        AccessToken(livekit_server.api_key, livekit_server.api_secret)
        .with_identity("late")
        .with_ttl(timedelta(hours=1))
        .with_grants(VideoGrants(room_join=True, room=_room()))
        .to_jwt(now=int(time.time()) - 7200)
    )
    url = signal_url_v1(livekit_server.url, wrap_join_request(join_request()), token=token)
    with pytest.raises(errors.UnauthorizedError) as info:
        await _open(url)
    assert "expired" in info.value.body


async def test_token_without_join_grant_is_unauthorized(livekit_server: LocalServer) -> None:
    token = livekit_server.create_token("nojoin", _room(), room_join=False)
    url = signal_url_v1(livekit_server.url, wrap_join_request(join_request()), token=token)
    with pytest.raises(errors.UnauthorizedError) as info:
        await _open(url)
    assert "permissions denied" in info.value.body


async def test_token_for_another_room_is_refused(livekit_server_binary: Path) -> None:
    """On a server that does not auto-create rooms, a token for a room that isn't there gets 404."""
    async with LocalServer(binary=livekit_server_binary, auto_create=False) as server:
        async with RoomServiceClient(server.url, server.api_key, server.api_secret) as api:
            await api.create_room("existing")
        ok = server.create_token("dave", "existing")
        ws = await _open(signal_url_v1(server.url, wrap_join_request(join_request()), token=ok))
        try:
            assert (await _first_response(ws)).join.room.name == "existing"
        finally:
            await _leave(ws)

        other = server.create_token("dave", "another-room")
        url = signal_url_v1(server.url, wrap_join_request(join_request()), token=other)
        with pytest.raises(errors.RoomNotFoundError) as info:
            await _open(url)
        assert info.value.status == 404
