"""RoomServiceClient against a real livekit-server (PROTOCOL-MAP §17 "RoomService over Twirp")."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from livekit import rtc

from lkproto.api import RoomServiceClient
from lkproto.errors import ApiError
from lkproto.testing import scaled
from lkproto.testing.server import free_tcp_port
from lkproto.wire import pb

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

__all__: list[str] = []

pytestmark = pytest.mark.interop


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(livekit_server: LocalServer) -> RoomServiceClient:
    # The ws:// URL on purpose: the client must turn it into http://.
    return RoomServiceClient(livekit_server.url, livekit_server.api_key, livekit_server.api_secret)


async def test_room_lifecycle(client: RoomServiceClient) -> None:
    name = unique("lifecycle")
    room = await client.create_room(name, empty_timeout=120, max_participants=7, metadata="v1")
    assert isinstance(room, pb.Room)
    assert room.name == name
    assert room.sid.startswith("RM_")
    assert (room.empty_timeout, room.max_participants, room.metadata) == (120, 7, "v1")
    assert room.creation_time > 0

    # CreateRoom on an existing room returns that room.
    again = await client.create_room(name)
    assert again.sid == room.sid

    assert name in {r.name for r in await client.list_rooms()}
    (only,) = await client.list_rooms([name])
    assert only.sid == room.sid

    updated = await client.update_room_metadata(name, "v2")
    assert (updated.sid, updated.metadata) == (room.sid, "v2")
    # ListRooms reads the room store, which the room's own goroutine updates a moment after
    # UpdateRoomMetadata answers: poll (bounded) instead of reading once.
    deadline = asyncio.get_running_loop().time() + scaled(10.0)
    while True:
        (listed,) = await client.list_rooms([name])
        if listed.metadata == "v2":
            break
        assert asyncio.get_running_loop().time() < deadline, f"still {listed.metadata!r}"
        await asyncio.sleep(0.1)

    assert await client.list_participants(name) == []

    await client.delete_room(name)
    assert await client.list_rooms([name]) == []


async def test_not_found_errors(client: RoomServiceClient) -> None:
    missing = unique("missing")
    with pytest.raises(ApiError) as info:
        await client.delete_room(missing)
    assert (info.value.status, info.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as info:
        await client.update_room_metadata(missing, "x")
    assert (info.value.status, info.value.code) == (404, "not_found")

    name = unique("nobody")
    await client.create_room(name)
    try:
        with pytest.raises(ApiError) as info:
            await client.get_participant(name, "ghost")
        assert (info.value.status, info.value.code) == (404, "not_found")
        with pytest.raises(ApiError) as info:
            await client.remove_participant(name, "ghost")
        assert (info.value.status, info.value.code) == (404, "not_found")
    finally:
        await client.delete_room(name)


async def test_wrong_secret_is_unauthenticated(livekit_server: LocalServer) -> None:
    bad = RoomServiceClient(
        livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret + "-wrong"
    )
    with pytest.raises(ApiError) as info:
        await bad.list_rooms()
    assert (info.value.status, info.value.code) == (401, "unauthenticated")


async def test_unknown_key_is_unauthenticated(livekit_server: LocalServer) -> None:
    bad = RoomServiceClient(livekit_server.http_url, "no-such-key", livekit_server.api_secret)
    with pytest.raises(ApiError) as info:
        await bad.create_room(unique("denied"))
    assert (info.value.status, info.value.code) == (401, "unauthenticated")


async def test_server_gone_is_unavailable(livekit_server: LocalServer) -> None:
    gone = RoomServiceClient(
        f"ws://127.0.0.1:{free_tcp_port()}", livekit_server.api_key, livekit_server.api_secret
    )
    with pytest.raises(ApiError) as info:
        await gone.list_rooms()
    assert (info.value.status, info.value.code) == (0, "unavailable")


async def test_participant_calls_with_official_sdk(
    livekit_server: LocalServer, client: RoomServiceClient
) -> None:
    # A real participant (official SDK, Rust core) lets us check the participant-level calls.
    name = unique("sdk")
    await client.create_room(name)
    room = rtc.Room()
    received: asyncio.Future[rtc.DataPacket] = asyncio.get_running_loop().create_future()

    def on_data(packet: rtc.DataPacket) -> None:
        if not received.done():
            received.set_result(packet)

    room.on("data_received", on_data)
    await room.connect(livekit_server.url, livekit_server.create_token("alice", name))
    try:
        # The official SDK's connect() returns when its engine is connected; the server marks the
        # participant ACTIVE once its own side of the peer connection is up, which under load
        # can come a little later (JOINED until then).
        deadline = asyncio.get_running_loop().time() + scaled(10.0)
        while True:
            (alice,) = await client.list_participants(name)
            if alice.state == pb.ParticipantInfo.ACTIVE:
                break
            assert asyncio.get_running_loop().time() < deadline, f"still {alice.state}"
            await asyncio.sleep(0.1)
        assert alice.identity == "alice"
        got = await client.get_participant(name, "alice")
        assert got.sid == alice.sid == room.local_participant.sid

        updated = await client.update_participant(
            name, "alice", metadata="meta", name="Alice", attributes={"k": "v"}
        )
        assert (updated.metadata, updated.name, dict(updated.attributes)) == (
            "meta",
            "Alice",
            {"k": "v"},
        )

        source = rtc.AudioSource(48_000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        publication = await room.local_participant.publish_track(track)
        muted = await client.mute_published_track(name, "alice", publication.sid, True)
        assert (muted.sid, muted.muted, muted.type) == (publication.sid, True, pb.AUDIO)

        await client.send_data(name, b"\x00hello", topic="greet")
        packet = await asyncio.wait_for(received, 10)
        assert (packet.data, packet.topic) == (b"\x00hello", "greet")

        await client.remove_participant(name, "alice")
        assert await client.list_participants(name) == []
    finally:
        await room.disconnect()
        await client.delete_room(name)
