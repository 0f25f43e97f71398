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
from collections.abc import Callable
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
    official_options,
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
    # them again, so the same stream keeps receiving; our own data track is published again.
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
        assert mine.is_published()
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


async def test_subscribers_keep_their_streams_across_the_publishers_full_reconnect(
    livekit_server: LocalServer,
) -> None:
    # The official SDK republishes its data tracks after a full reconnect with the same handle
    # and name (RS:livekit-datatrack/src/local/manager.rs on_republish_tracks), and its
    # subscribers recognise the track by publisher identity and handle and keep their stream
    # (RS:.../remote/manager.rs handle_sid_reassigned); lkproto does both, proven here.
    # The publisher rejoins without leaving first, so the server closes its old session with
    # DUPLICATE_IDENTITY and subscribers see the same identity under a new participant SID,
    # whose session publishes the track again (same name and handle, new SID). The official
    # subscriber keeps its RemoteDataTrack and stream (it keys tracks by publisher identity);
    # lkproto holds the track and pairs it by publisher identity and name, side by side here.
    room_name = unique_room("dtr-remote-full")
    publisher, ours = rtc.Room(), rtc.Room()
    reconnected = asyncio.Event()
    publisher.on("reconnected", reconnected.set)
    published: asyncio.Queue[rtc.RemoteDataTrack] = asyncio.Queue()
    unpublished: list[str] = []
    ours.on("data_track_published", published.put_nowait)
    ours.on("data_track_unpublished", unpublished.append)
    official_room = lrtc.Room()
    official_published: asyncio.Queue[lrtc.RemoteDataTrack] = asyncio.Queue()
    official_unpublished: list[str] = []
    official_room.on("data_track_published", official_published.put_nowait)
    official_room.on("data_track_unpublished", official_unpublished.append)
    try:
        await connect_ours(livekit_server, "ours", room_name, room=ours)
        await connect_official(livekit_server, "official", room_name, room=official_room)
        await connect_ours(livekit_server, "publisher", room_name, room=publisher)
        track = await asyncio.wait_for(
            publisher.local_participant.publish_data_track(name="sensor"), scaled(10)
        )
        remote = await asyncio.wait_for(published.get(), scaled(RECEIVE_TIMEOUT_S))
        official_remote = await asyncio.wait_for(
            official_published.get(), scaled(RECEIVE_TIMEOUT_S)
        )
        first_sid = remote.info.sid
        streams = (remote.subscribe(buffer_size=1000), official_remote.subscribe(buffer_size=1000))
        received: tuple[list[tuple[bytes, int | None]], ...] = ([], [])

        async def read(index: int) -> None:
            async for frame in streams[index]:
                received[index].append((bytes(frame.payload), frame.user_timestamp))

        readers = [asyncio.create_task(read(i)) for i in range(2)]
        for log in received:
            await asyncio.wait_for(
                _push_until(track.try_push, log, rtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
            )
        await publisher.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT)
        await asyncio.wait_for(reconnected.wait(), scaled(30))
        await wait_for(lambda: remote.info.sid != first_sid, what="the track's new SID")
        assert remote.info.sid == track.info.sid
        assert remote.is_published()
        assert track.is_published()
        assert track.info.sid.startswith("DTR_")
        assert track.info.name == "sensor"
        for log in received:
            log.clear()
            await asyncio.wait_for(
                _push_until(track.try_push, log, rtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
            )
            assert len(_check(log)) >= FRAMES // 2
        # Both subscribers' streams kept receiving: no unpublish, no new track announced.
        assert not any(reader.done() for reader in readers)
        assert unpublished == official_unpublished == []
        assert published.empty()
        assert official_published.empty()
        streams[0].close()
        await asyncio.wait_for(readers[0], scaled(5))
    finally:
        await disconnect_all(publisher, official_room, ours)


KEY = b"data-track-shared-key"


def _encrypted_ours(key: bytes) -> rtc.RoomOptions:
    options = our_options()
    options.encryption = rtc.E2EEOptions(
        key_provider_options=rtc.KeyProviderOptions(shared_key=key)
    )
    return options


def _encrypted_official(key: bytes, ratchet_window_size: int) -> lrtc.RoomOptions:
    options = official_options()
    options.encryption = lrtc.E2EEOptions(
        key_provider_options=lrtc.KeyProviderOptions(
            shared_key=key, ratchet_window_size=ratchet_window_size
        )
    )
    return options


async def _encrypted_pair(
    server: LocalServer,
    room_name: str,
    ours: rtc.Room,
    official: lrtc.Room,
    *,
    sdk_key: bytes,
    sdk_ratchet_window: int = 16,
) -> None:
    await asyncio.wait_for(
        ours.connect(server.url, make_token(server, "ours", room_name), _encrypted_ours(KEY)),
        scaled(CONNECT_TIMEOUT_S),
    )
    await asyncio.wait_for(
        official.connect(
            server.url,
            make_token(server, "official", room_name),
            _encrypted_official(sdk_key, sdk_ratchet_window),
        ),
        scaled(CONNECT_TIMEOUT_S),
    )


async def test_encrypted_data_tracks_both_ways(livekit_server: LocalServer) -> None:
    # With the same shared key each side decrypts the other's frames (PROTOCOL-MAP §11, §12).
    room_name = unique_room("dtr-e2ee")
    ours, official_room = rtc.Room(), lrtc.Room()
    ours_seen: asyncio.Queue[rtc.RemoteDataTrack] = asyncio.Queue()
    sdk_seen: asyncio.Queue[lrtc.RemoteDataTrack] = asyncio.Queue()
    ours.on("data_track_published", ours_seen.put_nowait)
    official_room.on("data_track_published", sdk_seen.put_nowait)
    readers: list[asyncio.Task[None]] = []
    try:
        await _encrypted_pair(livekit_server, room_name, ours, official_room, sdk_key=KEY)
        mine = await asyncio.wait_for(
            ours.local_participant.publish_data_track(name="ours-enc"), scaled(10)
        )
        theirs = await asyncio.wait_for(
            official_room.local_participant.publish_data_track(name="sdk-enc"), scaled(10)
        )
        # The encryption flag is set as the official SDK sets it, on both sides.
        assert mine.info.uses_e2ee
        assert theirs.info.uses_e2ee
        at_sdk = await asyncio.wait_for(sdk_seen.get(), scaled(RECEIVE_TIMEOUT_S))
        at_ours = await asyncio.wait_for(ours_seen.get(), scaled(RECEIVE_TIMEOUT_S))
        assert at_sdk.info.uses_e2ee
        assert at_ours.info.uses_e2ee
        sdk_got: list[tuple[bytes, int | None]] = []
        ours_got: list[tuple[bytes, int | None]] = []
        sdk_stream, ours_stream = at_sdk.subscribe(), at_ours.subscribe()

        async def read_sdk() -> None:
            async for frame in sdk_stream:
                sdk_got.append((bytes(frame.payload), frame.user_timestamp))

        async def read_ours() -> None:
            async for frame in ours_stream:
                ours_got.append((frame.payload, frame.user_timestamp))

        readers = [asyncio.create_task(read_sdk()), asyncio.create_task(read_ours())]
        await asyncio.wait_for(
            _push_until(mine.try_push, sdk_got, rtc.DataTrackFrame), scaled(RECEIVE_TIMEOUT_S)
        )
        await asyncio.wait_for(
            _push_until(theirs.try_push, ours_got, lrtc.DataTrackFrame),
            scaled(RECEIVE_TIMEOUT_S),
        )
        for got in (sdk_got, ours_got):
            seen = _check(got)  # decrypted intact, byte for byte
            assert 0 in seen, "the multi-packet frame 0 never arrived whole"
            assert len(seen) >= FRAMES // 2
        driver = ours._data_tracks
        assert driver is not None
        assert driver.manager.undecryptable_frames == 0
        sdk_stream.close()
        ours_stream.close()
    finally:
        for reader in readers:
            reader.cancel()
        await disconnect_all(ours, official_room)


async def test_a_wrong_key_drops_frames_and_keeps_the_stream(
    livekit_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The official SDK drops a frame that does not decrypt, logs it and goes on
    # (RS:livekit-datatrack/src/remote/pipeline.rs decrypt_if_needed); so does lkproto.
    room_name = unique_room("dtr-e2ee-bad")
    ours, official_room = rtc.Room(), lrtc.Room()
    ours_seen: asyncio.Queue[rtc.RemoteDataTrack] = asyncio.Queue()
    sdk_seen: asyncio.Queue[lrtc.RemoteDataTrack] = asyncio.Queue()
    ours.on("data_track_published", ours_seen.put_nowait)
    official_room.on("data_track_published", sdk_seen.put_nowait)
    readers: list[asyncio.Task[None]] = []
    try:
        # Window 0: with the default 16, the official SDK derives 16 ratchets (PBKDF2) for each
        # frame it cannot open, which on this machine starves its own publishing.
        await _encrypted_pair(
            livekit_server, room_name, ours, official_room, sdk_key=b"other", sdk_ratchet_window=0
        )
        mine = await asyncio.wait_for(
            ours.local_participant.publish_data_track(name="ours-enc"), scaled(10)
        )
        theirs = await asyncio.wait_for(
            official_room.local_participant.publish_data_track(name="sdk-enc"), scaled(10)
        )
        at_sdk = await asyncio.wait_for(sdk_seen.get(), scaled(RECEIVE_TIMEOUT_S))
        at_ours = await asyncio.wait_for(ours_seen.get(), scaled(RECEIVE_TIMEOUT_S))
        sdk_got: list[bytes] = []
        ours_got: list[bytes] = []
        sdk_stream, ours_stream = at_sdk.subscribe(), at_ours.subscribe()

        async def read_sdk() -> None:
            async for frame in sdk_stream:
                sdk_got.append(bytes(frame.payload))

        async def read_ours() -> None:
            async for frame in ours_stream:
                ours_got.append(frame.payload)

        readers = [asyncio.create_task(read_sdk()), asyncio.create_task(read_ours())]
        driver = ours._data_tracks
        assert driver is not None

        def sdk_refused() -> bool:
            # The official SDK's own log line for a frame it could not decrypt.
            return any("Decryption failed" in r.getMessage() for r in caplog.records)

        async def push(until: Callable[[], bool]) -> None:
            index = 0
            while not until():
                index += 1
                frame = f"frame {index}".encode()
                with contextlib.suppress(rtc.PushFrameError):
                    mine.try_push(rtc.DataTrackFrame(payload=frame))
                with contextlib.suppress(lrtc.PushFrameError):
                    theirs.try_push(lrtc.DataTrackFrame(payload=frame))
                await asyncio.sleep(0.02)

        # Frames reach each side and fail to decrypt there (lkproto counts them, the official
        # SDK logs them), yet none is handed out and both streams stay open.
        await asyncio.wait_for(
            push(lambda: driver.manager.undecryptable_frames >= 3 and sdk_refused()),
            scaled(RECEIVE_TIMEOUT_S),
        )
        assert ours_got == []
        assert sdk_got == []
        assert not any(reader.done() for reader in readers)
        sdk_stream.close()
        ours_stream.close()
    finally:
        for reader in readers:
            reader.cancel()
        await disconnect_all(ours, official_room)
