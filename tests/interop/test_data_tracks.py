"""Data tracks against livekit-server v1.13.5 and the official SDK (PROTOCOL-MAP §12).

Both directions: lkproto publishes and the official SDK subscribes, and the other way round.
Frames include a multi-packet one (above the 16 000-byte MTU) and user timestamps. The channel is
unordered and lossy by contract; on loopback we assert what the protocol promises: every frame
that arrives is intact (bytes and timestamp match what was sent for that sequence number), and
most arrive, not that all do or in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.rtc.data_track import PublishDataTrackError
from lkproto.testing import scaled
from lkproto.wire.tap import TapRecord
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    connect_official,
    connect_ours,
    disconnect_all,
    make_token,
    our_options,
    unique_room,
    wait_for,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

FRAMES = 20
BIG_FRAME_BYTES = 40_000  # three packets at the official 16 000-byte MTU
RECEIVE_TIMEOUT_S = 20.0


def _payload(index: int) -> bytes:
    size = BIG_FRAME_BYTES if index % 5 == 0 else 10 + index
    return bytes((index * 7 + i) & 0xFF for i in range(size - 2)) + index.to_bytes(2, "big")


def _check(frames: list[tuple[bytes, int | None]]) -> set[int]:
    """Every frame is one that was sent, intact; returns the indexes that arrived."""
    seen: set[int] = set()
    for payload, user_timestamp in frames:
        index = int.from_bytes(payload[-2:], "big")
        assert payload == _payload(index), f"frame {index} arrived damaged"
        assert user_timestamp == 1_000_000 + index
        seen.add(index)
    return seen


async def _push_until(
    push: object, received: list[tuple[bytes, int | None]], frame_type: type
) -> None:
    """Push the frames, repeating the round (same indexes) until enough arrived: the first
    frames may be sent before the server has set up the subscriber's forwarding."""
    assert callable(push)
    for _ in range(20):
        for index in range(FRAMES):
            with contextlib.suppress(rtc.PushFrameError, lrtc.PushFrameError):
                push(frame_type(payload=_payload(index), user_timestamp=1_000_000 + index))
            await asyncio.sleep(0.02)
        seen = _check(received)
        if len(seen) >= FRAMES // 2 and 0 in seen:
            return
        await asyncio.sleep(0.3)


async def test_official_sdk_receives_lkproto_frames(livekit_server: LocalServer) -> None:
    room_name = unique_room("dtr-out")
    official_room = lrtc.Room()
    published: asyncio.Queue[lrtc.RemoteDataTrack] = asyncio.Queue()
    unpublished: asyncio.Queue[str] = asyncio.Queue()
    official_room.on("data_track_published", published.put_nowait)
    official_room.on("data_track_unpublished", unpublished.put_nowait)
    ours: rtc.Room | None = None
    records: list[TapRecord] = []
    try:
        await connect_official(livekit_server, "official", room_name, room=official_room)
        ours = rtc.Room()
        options = our_options()
        options.tap = records.append
        token = make_token(livekit_server, "ours", room_name)
        await asyncio.wait_for(
            ours.connect(livekit_server.url, token, options), scaled(CONNECT_TIMEOUT_S)
        )
        track = await asyncio.wait_for(
            ours.local_participant.publish_data_track(name="telemetry"), scaled(10)
        )
        assert track.info.sid.startswith("DTR_")
        assert track.info.name == "telemetry"
        assert not track.info.uses_e2ee
        assert track.is_published()

        remote = await asyncio.wait_for(published.get(), scaled(RECEIVE_TIMEOUT_S))
        assert remote.info.sid == track.info.sid
        assert remote.publisher_identity == "ours"
        stream = remote.subscribe()
        received: list[tuple[bytes, int | None]] = []

        async def read() -> None:
            async for frame in stream:
                received.append((bytes(frame.payload), frame.user_timestamp))

        reader = asyncio.create_task(read())
        await asyncio.wait_for(
            _push_until(track.try_push, received, rtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
        )
        seen = _check(received)
        assert 0 in seen, "the multi-packet frame 0 never arrived whole"
        assert len(seen) >= FRAMES // 2
        # The wire tap shows the packets sent on _data_track (by size: they are not protobuf).
        sent = [r for r in records if r.channel == "_data_track" and r.direction == ">"]
        assert sent
        assert {r.type for r in sent} == {"DataTrack.packet"}
        assert 16_000 in {r.fields.get("size") for r in sent if r.fields}  # the MTU-sized ones

        # A duplicate name is refused by the server with the typed error.
        with pytest.raises(PublishDataTrackError) as info:
            await asyncio.wait_for(
                ours.local_participant.publish_data_track(name="telemetry"), scaled(10)
            )
        assert info.value.reason == "DUPLICATE_NAME"

        await track.unpublish()
        assert not track.is_published()
        with pytest.raises(rtc.PushFrameError):
            track.try_push(rtc.DataTrackFrame(payload=b"late"))
        sid = await asyncio.wait_for(unpublished.get(), scaled(RECEIVE_TIMEOUT_S))
        assert sid == track.info.sid
        await asyncio.wait_for(reader, scaled(RECEIVE_TIMEOUT_S))
    finally:
        await disconnect_all(ours, official_room)


async def test_lkproto_receives_official_sdk_frames(livekit_server: LocalServer) -> None:
    room_name = unique_room("dtr-in")
    ours = rtc.Room()
    published: asyncio.Queue[rtc.RemoteDataTrack] = asyncio.Queue()
    unpublished: asyncio.Queue[str] = asyncio.Queue()
    ours.on("data_track_published", published.put_nowait)
    ours.on("data_track_unpublished", unpublished.put_nowait)
    official_room: lrtc.Room | None = None
    try:
        await connect_ours(livekit_server, "ours", room_name, room=ours)
        official_room = await connect_official(livekit_server, "official", room_name)
        track = await asyncio.wait_for(
            official_room.local_participant.publish_data_track(name="sensor"), scaled(10)
        )
        remote = await asyncio.wait_for(published.get(), scaled(RECEIVE_TIMEOUT_S))
        assert remote.info.sid == track.info.sid
        assert remote.info.name == "sensor"
        assert remote.publisher_identity == "official"
        assert remote.is_published()
        stream = remote.subscribe()
        received: list[tuple[bytes, int | None]] = []

        async def read() -> None:
            async for frame in stream:
                received.append((frame.payload, frame.user_timestamp))

        reader = asyncio.create_task(read())
        await asyncio.wait_for(
            _push_until(track.try_push, received, lrtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
        )
        seen = _check(received)
        assert 0 in seen, "the multi-packet frame 0 never arrived whole"
        assert len(seen) >= FRAMES // 2

        await track.unpublish()
        sid = await asyncio.wait_for(unpublished.get(), scaled(RECEIVE_TIMEOUT_S))
        assert sid == remote.info.sid
        # The stream ends with the track, and the track says so.
        await asyncio.wait_for(reader, scaled(RECEIVE_TIMEOUT_S))
        await wait_for(lambda: not remote.is_published(), what="the remote track to go")
    finally:
        await disconnect_all(official_room, ours)


async def test_subscribing_to_a_track_that_is_gone_raises_at_the_end(
    livekit_server: LocalServer,
) -> None:
    room_name = unique_room("dtr-gone")
    ours = rtc.Room()
    published: asyncio.Queue[rtc.RemoteDataTrack] = asyncio.Queue()
    ours.on("data_track_published", published.put_nowait)
    official_room: lrtc.Room | None = None
    try:
        await connect_ours(livekit_server, "ours", room_name, room=ours)
        official_room = await connect_official(livekit_server, "official", room_name)
        track = await asyncio.wait_for(
            official_room.local_participant.publish_data_track(name="brief"), scaled(10)
        )
        remote = await asyncio.wait_for(published.get(), scaled(RECEIVE_TIMEOUT_S))
        await track.unpublish()
        await wait_for(lambda: not remote.is_published(), what="the remote track to go")
        stream = remote.subscribe()
        with pytest.raises(rtc.SubscribeDataTrackError):
            await asyncio.wait_for(stream.read(), scaled(5))
    finally:
        await disconnect_all(official_room, ours)


async def test_subscription_survives_a_full_reconnect(livekit_server: LocalServer) -> None:
    # After a full reconnect the new session knows none of our subscriptions: the room sends
    # them again, so the same stream keeps receiving; our own data tracks end with the session.
    room_name = unique_room("dtr-full")
    ours = rtc.Room()
    published: asyncio.Queue[rtc.RemoteDataTrack] = asyncio.Queue()
    reconnected = asyncio.Event()
    ours.on("data_track_published", published.put_nowait)
    ours.on("reconnected", reconnected.set)
    official_room: lrtc.Room | None = None
    try:
        await connect_ours(livekit_server, "ours", room_name, room=ours)
        mine = await asyncio.wait_for(
            ours.local_participant.publish_data_track(name="mine"), scaled(10)
        )
        official_room = await connect_official(livekit_server, "official", room_name)
        track = await asyncio.wait_for(
            official_room.local_participant.publish_data_track(name="sensor"), scaled(10)
        )
        remote = await asyncio.wait_for(published.get(), scaled(RECEIVE_TIMEOUT_S))
        stream = remote.subscribe(buffer_size=1000)
        received: list[tuple[bytes, int | None]] = []

        async def read() -> None:
            async for frame in stream:
                received.append((frame.payload, frame.user_timestamp))

        reader = asyncio.create_task(read())
        await asyncio.wait_for(
            _push_until(track.try_push, received, lrtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
        )
        await ours.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT)
        await asyncio.wait_for(reconnected.wait(), scaled(30))
        assert not mine.is_published()
        assert remote.is_published()
        received.clear()
        await asyncio.wait_for(
            _push_until(track.try_push, received, lrtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
        )
        assert len(_check(received)) >= FRAMES // 2
        assert not reader.done()
        stream.close()
        await asyncio.wait_for(reader, scaled(5))
    finally:
        await disconnect_all(official_room, ours)
