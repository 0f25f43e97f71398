"""End-to-end encrypted Opus between lkproto and the official Python SDK 1.2.1 (issue 16 item 2).

A tone is the proof: the receiver with the key finds its frequency in an FFT of what it decodes;
a participant without the key finds no tone (it gets ciphertext, which is not audio). The tone
and FFT helpers are the ones of ``test_media.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import scaled
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    disconnect_all,
    make_token,
    official_options,
    our_options,
    unique_room,
    wait_for,
)
from tests.interop.test_media import (
    assert_in_order,
    colour_sequence,
    publish_colours,
    publish_tone,
    subscribed_track,
    tone_of,
)

if TYPE_CHECKING:
    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

KEY = b"media-shared-key"


def _ours(key: bytes | None) -> rtc.RoomOptions:
    options = our_options()
    if key is not None:
        options.encryption = rtc.E2EEOptions(
            key_provider_options=rtc.KeyProviderOptions(shared_key=key)
        )
    return options


def _official(key: bytes | None) -> lrtc.RoomOptions:
    options = official_options()
    if key is not None:
        options.encryption = lrtc.E2EEOptions(
            key_provider_options=lrtc.KeyProviderOptions(shared_key=key)
        )
    return options


@contextlib.asynccontextmanager
async def _room(
    server: LocalServer, *members: tuple[str, str, bytes | None]
) -> AsyncIterator[dict[str, Any]]:
    """Connect ``(identity, "lk"|"sdk", key)`` members to a fresh room, in order."""
    name = unique_room("e2ee-media")
    rooms: dict[str, Any] = {}
    try:
        for identity, kind, key in members:
            token = make_token(server, identity, name)
            if kind == "lk":
                room: Any = rtc.Room()
                connecting = room.connect(server.url, token, _ours(key))
            else:
                room = lrtc.Room()
                connecting = room.connect(server.url, token, _official(key))
            rooms[identity] = room
            await asyncio.wait_for(connecting, scaled(CONNECT_TIMEOUT_S))
        yield rooms
    finally:
        await disconnect_all(*rooms.values())


async def _no_tone(mod: Any, room: Any, freq: float) -> None:
    """``room`` decodes no tone at ``freq`` (silence, noise, or nothing at all)."""
    try:
        track = await subscribed_track(room, "audio")
        peak, _ = await tone_of(mod, track, seconds=1.0)
    except (TimeoutError, AssertionError):
        return  # nothing audible or no usable track: no tone
    print(f"\nwithout the key: peak {peak:.0f} Hz")
    assert abs(peak - freq) > 5, peak


async def test_lkproto_encrypted_tone_reaches_the_official_sdk_with_the_key_only(
    livekit_server: LocalServer,
) -> None:
    async with _room(
        livekit_server, ("lk", "lk", KEY), ("sdk", "sdk", KEY), ("eve", "sdk", None)
    ) as rooms:
        own: list[tuple[str, bool]] = []
        rooms["lk"].on(
            "participant_encryption_status_changed",
            lambda p, encrypted: own.append((p.identity, encrypted)),
        )
        feeder = await publish_tone(rtc, rooms["lk"], 440)
        try:
            track = await subscribed_track(rooms["sdk"], "audio")
            peak, _ = await tone_of(lrtc, track)
            assert abs(peak - 440) <= 5, peak
            # As the official SDK 1.2.1 (checked below): no status event for our own participant.
            assert own == []
            pub = next(iter(rooms["sdk"].remote_participants["lk"].track_publications.values()))
            assert pub.encryption_type == lrtc.EncryptionType.GCM
            await _no_tone(lrtc, rooms["eve"], 440)
        finally:
            await feeder.stop()


async def test_official_encrypted_tone_reaches_lkproto_with_the_key_only(
    livekit_server: LocalServer,
) -> None:
    async with _room(
        livekit_server, ("lk", "lk", KEY), ("sdk", "sdk", KEY), ("eve", "lk", None)
    ) as rooms:
        failed: list[str] = []
        rooms["eve"].on("track_subscription_failed", lambda p, sid, error: failed.append(error))
        states: list[int] = []
        rooms["lk"].on("e2ee_state_changed", lambda p, state: states.append(int(state)))
        status: list[tuple[str, bool]] = []
        rooms["lk"].on(
            "participant_encryption_status_changed",
            lambda p, encrypted: status.append((p.identity, encrypted)),
        )
        theirs: list[tuple[str, bool]] = []
        rooms["sdk"].on(
            "participant_encryption_status_changed",
            lambda p, encrypted: theirs.append((p.identity, encrypted)),
        )
        feeder = await publish_tone(lrtc, rooms["sdk"], 1000)
        try:
            track = await subscribed_track(rooms["lk"], "audio")
            peak, _ = await tone_of(rtc, track)
            assert abs(peak - 1000) <= 5, peak
            assert int(rtc.EncryptionState.OK) in states
            assert status == [("sdk", True)]
            # The official SDK reports no status change for its own (encrypted) participant.
            assert theirs == []
            cryptors = rooms["lk"].e2ee_manager.frame_cryptors()
            assert any(c.participant_identity == "sdk" for c in cryptors)
            # Without the key lkproto reports the track instead of decoding ciphertext.
            await wait_for(lambda: failed, 20.0, "eve reports the encrypted track")
        finally:
            await feeder.stop()


async def test_wrong_key_fails_then_recovers_when_the_right_key_is_set(
    livekit_server: LocalServer,
) -> None:
    async with _room(livekit_server, ("lk", "lk", b"wrong key"), ("sdk", "sdk", KEY)) as rooms:
        states: list[int] = []
        rooms["lk"].on("e2ee_state_changed", lambda p, state: states.append(int(state)))
        feeder = await publish_tone(lrtc, rooms["sdk"], 1000)
        try:
            await wait_for(
                lambda: int(rtc.EncryptionState.DECRYPTION_FAILED) in states,
                30.0,
                "decryption failure reported",
            )
            keys = rooms["lk"].e2ee_manager.key_provider
            assert keys is not None
            keys.set_shared_key(KEY, 0)
            track = await subscribed_track(rooms["lk"], "audio")
            peak, _ = await tone_of(rtc, track)
            assert abs(peak - 1000) <= 5, peak
            assert states[-1] == int(rtc.EncryptionState.OK)
        finally:
            await feeder.stop()


async def test_lkproto_encrypted_vp8_reaches_the_official_sdk_with_the_key_only(
    livekit_server: LocalServer,
) -> None:
    async with _room(
        livekit_server, ("lk", "lk", KEY), ("sdk", "sdk", KEY), ("eve", "sdk", None)
    ) as rooms:
        feeder = await publish_colours(rtc, rooms["lk"], rtc.VideoCodec.VP8)
        try:
            track = await subscribed_track(rooms["sdk"], "video")
            assert_in_order(await colour_sequence(lrtc, track, changes=4))
            # Without the key: ciphertext does not decode into the colours.
            eve_track = await subscribed_track(rooms["eve"], "video")
            try:
                seen = await colour_sequence(lrtc, eve_track, changes=2)
            except (TimeoutError, AssertionError):
                seen = []
            assert len(seen) <= 1, seen
        finally:
            await feeder.stop()


async def test_official_encrypted_vp8_reaches_lkproto(livekit_server: LocalServer) -> None:
    async with _room(livekit_server, ("lk", "lk", KEY), ("sdk", "sdk", KEY)) as rooms:
        feeder = await publish_colours(lrtc, rooms["sdk"], lrtc.VideoCodec.VP8)
        try:
            track = await subscribed_track(rooms["lk"], "video")
            assert_in_order(await colour_sequence(rtc, track, changes=4))
        finally:
            await feeder.stop()


async def test_encrypted_h264_both_ways_with_the_official_sdk(
    livekit_server: LocalServer,
) -> None:
    # Every colour must arrive: before the IV draws of FrameCryptor.encrypt, the official SDK
    # dropped about every other encrypted x264 key frame ("No PPS with id << N received") and
    # a whole colour was sometimes lost (issue 16).
    async with _room(
        livekit_server, ("lk", "lk", KEY), ("sdk", "sdk", KEY), ("eve", "sdk", None)
    ) as rooms:
        ours = await publish_colours(rtc, rooms["lk"], rtc.VideoCodec.H264, name="lk-h264")
        theirs = await publish_colours(lrtc, rooms["sdk"], lrtc.VideoCodec.H264, name="sdk-h264")
        try:
            track = await subscribed_track(rooms["sdk"], "video")
            assert_in_order(await colour_sequence(lrtc, track, changes=4))
            track = await subscribed_track(rooms["lk"], "video")
            assert_in_order(await colour_sequence(rtc, track, changes=4))
            mine = rooms["sdk"].remote_participants["lk"].track_publications[ours.publication.sid]
            assert mine.mime_type.lower() == "video/h264"
            assert mine.encryption_type == lrtc.EncryptionType.GCM
            eve_track = await subscribed_track(rooms["eve"], "video")
            try:
                seen = await colour_sequence(lrtc, eve_track, changes=2)
            except (TimeoutError, AssertionError):
                seen = []
            assert len(seen) <= 1, seen
        finally:
            await ours.stop()
            await theirs.stop()


async def test_audio_continues_after_both_sides_ratchet_mid_call(
    livekit_server: LocalServer,
) -> None:
    # Issue 16 proof: a shared-key ratchet in the middle of a call keeps the tone audible both
    # ways (each side derives the same next key from the same material).
    async with _room(livekit_server, ("lk", "lk", KEY), ("sdk", "sdk", KEY)) as rooms:
        ours = await publish_tone(rtc, rooms["lk"], 440)
        theirs = await publish_tone(lrtc, rooms["sdk"], 1000)
        try:
            at_sdk = await subscribed_track(rooms["sdk"], "audio")
            at_lk = await subscribed_track(rooms["lk"], "audio")
            assert abs((await tone_of(lrtc, at_sdk))[0] - 440) <= 5
            assert abs((await tone_of(rtc, at_lk))[0] - 1000) <= 5
            lk_keys = rooms["lk"].e2ee_manager.key_provider
            sdk_keys = rooms["sdk"].e2ee_manager.key_provider
            assert lk_keys is not None
            assert sdk_keys is not None
            before = lk_keys.export_shared_key(0)
            assert lk_keys.ratchet_shared_key(0) == sdk_keys.ratchet_shared_key(0) != before
            peak_sdk, _ = await tone_of(lrtc, at_sdk)
            peak_lk, _ = await tone_of(rtc, at_lk)
            assert abs(peak_sdk - 440) <= 5, peak_sdk
            assert abs(peak_lk - 1000) <= 5, peak_lk
        finally:
            await ours.stop()
            await theirs.stop()
