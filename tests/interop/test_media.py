"""Media between lkproto and the official Python SDK through a real livekit-server (issue 7).

Audio: a tone published by one SDK is subscribed by the other, and an FFT of what arrives must
peak at the sent frequency (±5 Hz) at a level within 3 dB of the sent level. Video: solid colours
changing every second must arrive in order (per-channel tolerance), with VP8 and with H.264.
Both SDKs share the official API (``AudioSource``, ``LocalAudioTrack.create_audio_track``,
``publish_track``, ``AudioStream``, ``VideoStream``...), so each helper below works with either
module, which is itself a check that lkproto is a drop-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from livekit import rtc as lrtc
from livekit.rtc.room import EventTypes

from lkproto import rtc
from lkproto.errors import RequestRejectedError
from lkproto.testing import LocalServer, scaled
from tests.interop._helpers import (
    connect_official,
    connect_ours,
    disconnect_all,
    unique_room,
    wait_for,
)

pytestmark = pytest.mark.interop

SUBSCRIBE_TIMEOUT_S = 20.0
SAMPLE_RATE = 48_000
AMPLITUDE = 0.3  # of full scale: RMS -13.5 dBFS
FRAME_MS = 10
COLOURS = [(220, 30, 30), (30, 200, 60), (40, 60, 220), (230, 220, 40)]
COLOUR_TOLERANCE = 40
VIDEO_W, VIDEO_H = 320, 240


def sent_level_db() -> float:
    return 20 * math.log10(AMPLITUDE / math.sqrt(2))


# -- publishing helpers (either SDK) ------------------------------------------------------------


@dataclass
class Feeder:
    """A task that keeps a source fed in real time until cancelled."""

    task: asyncio.Task[None]
    publication: Any
    track: Any
    extra: dict[str, Any] = field(default_factory=dict)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def publish_tone(mod: ModuleType, room: Any, freq: float, name: str = "tone") -> Feeder:
    """Publish a sine of ``freq`` Hz (mono 48 kHz) from ``mod``'s AudioSource."""
    source = mod.AudioSource(SAMPLE_RATE, 1)
    track = mod.LocalAudioTrack.create_audio_track(name, source)
    options = mod.TrackPublishOptions(source=mod.TrackSource.SOURCE_MICROPHONE)
    publication = await room.local_participant.publish_track(track, options)
    per_frame = SAMPLE_RATE * FRAME_MS // 1000

    async def feed() -> None:
        n = 0
        while True:
            t = (np.arange(per_frame) + n) / SAMPLE_RATE
            samples = (AMPLITUDE * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
            n += per_frame
            # capture_frame waits while a second of audio is queued: that paces the loop.
            await source.capture_frame(mod.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, per_frame))

    return Feeder(asyncio.ensure_future(feed()), publication, track, {"source": source})


def solid_rgba(colour: tuple[int, int, int], width: int, height: int) -> bytes:
    return bytes((*colour, 255)) * (width * height)


async def publish_colours(
    mod: ModuleType, room: Any, codec: int, name: str = "colours", seconds_each: float = 1.0
) -> Feeder:
    """Publish solid :data:`COLOURS` in turn, each for ``seconds_each``, at 30 fps."""
    source = mod.VideoSource(VIDEO_W, VIDEO_H)
    track = mod.LocalVideoTrack.create_video_track(name, source)
    options = mod.TrackPublishOptions(
        source=mod.TrackSource.SOURCE_CAMERA, video_codec=codec, simulcast=False
    )
    publication = await room.local_participant.publish_track(track, options)
    frames = [solid_rgba(c, VIDEO_W, VIDEO_H) for c in COLOURS]
    loop = asyncio.get_running_loop()

    async def feed() -> None:
        start = loop.time()
        while True:
            index = int((loop.time() - start) / seconds_each) % len(COLOURS)
            frame = mod.VideoFrame(VIDEO_W, VIDEO_H, mod.VideoBufferType.RGBA, frames[index])
            source.capture_frame(frame)
            await asyncio.sleep(1 / 30)

    return Feeder(asyncio.ensure_future(feed()), publication, track, {"source": source})


# -- receiving helpers (either SDK) -------------------------------------------------------------


async def subscribed_track(room: Any, kind: str, within: float = SUBSCRIBE_TIMEOUT_S) -> Any:
    """The first remote track of ``kind`` ("audio"/"video") that ``room`` is subscribed to."""
    found: list[Any] = []

    def look() -> bool:
        for participant in room.remote_participants.values():
            for pub in participant.track_publications.values():
                track = pub.track
                if track is not None and pub.kind == (1 if kind == "audio" else 2):
                    found.append(track)
                    return True
        return False

    await wait_for(look, within, f"a subscribed {kind} track")
    return found[0]


async def tone_of(mod: ModuleType, track: Any, seconds: float = 1.5) -> tuple[float, float]:
    """(peak frequency in Hz, RMS level in dBFS) of ``seconds`` of audio from ``track``, taken
    after the first audible frame and half a second of settling."""
    stream = mod.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    chunks: list[np.ndarray] = []
    audible = False
    skip = int(0.5 * SAMPLE_RATE)
    need = int(seconds * SAMPLE_RATE)

    async def collect() -> None:
        nonlocal audible, skip
        got = 0
        async for event in stream:
            pcm = np.frombuffer(bytes(event.frame.data), dtype=np.int16).astype(np.float64)
            if not audible:
                audible = bool(pcm.size) and np.sqrt(np.mean(pcm**2)) > 32767 * 0.01
                if not audible:
                    continue
            if skip > 0:
                skip -= pcm.size
                continue
            chunks.append(pcm)
            got += pcm.size
            if got >= need:
                return

    try:
        await asyncio.wait_for(collect(), scaled(SUBSCRIBE_TIMEOUT_S + seconds))
    finally:
        await stream.aclose()
    pcm = np.concatenate(chunks)[:need] / 32767
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    peak = float(np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
    level = 20 * math.log10(float(np.sqrt(np.mean(pcm**2))))
    return peak, level


def classify(pixel: tuple[int, int, int]) -> int | None:
    for index, colour in enumerate(COLOURS):
        if all(abs(a - b) <= COLOUR_TOLERANCE for a, b in zip(pixel, colour, strict=True)):
            return index
    return None


async def colour_sequence(mod: ModuleType, track: Any, changes: int) -> list[int]:
    """Distinct consecutive colours seen at the centre of ``track``'s frames, until ``changes``
    colour changes were seen; also checks every frame's size."""
    stream = mod.VideoStream(track, format=mod.VideoBufferType.RGBA)
    seen: list[int] = []
    sizes: set[tuple[int, int]] = set()

    async def collect() -> None:
        async for event in stream:
            frame = event.frame
            sizes.add((frame.width, frame.height))
            data = bytes(frame.data)
            offset = ((frame.height // 2) * frame.width + frame.width // 2) * 4
            index = classify((data[offset], data[offset + 1], data[offset + 2]))
            if index is not None and (not seen or seen[-1] != index):
                seen.append(index)
                if len(seen) > changes:
                    return

    try:
        await asyncio.wait_for(collect(), scaled(SUBSCRIBE_TIMEOUT_S + changes * 2))
    finally:
        await stream.aclose()
    assert sizes == {(VIDEO_W, VIDEO_H)}, sizes
    return seen


def assert_in_order(seen: list[int]) -> None:
    """Each colour change goes to the next colour of the cycle (none skipped or reordered)."""
    for before, after in itertools.pairwise(seen):
        assert after == (before + 1) % len(COLOURS), seen


# -- fixtures -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pair(
    server: LocalServer, prefix: str, *, lk_subscribe: bool = True
) -> AsyncIterator[tuple[rtc.Room, lrtc.Room]]:
    name = unique_room(prefix)
    ours: rtc.Room | None = None
    theirs: lrtc.Room | None = None
    try:
        ours = rtc.Room()
        options = rtc.RoomOptions(
            auto_subscribe=lk_subscribe,
            rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
        )
        token = server.create_token("lk", name)
        await asyncio.wait_for(ours.connect(server.url, token, options), scaled(20))
        theirs = await connect_official(server, "sdk", name)
        yield ours, theirs
    finally:
        await disconnect_all(ours, theirs)


# -- audio ------------------------------------------------------------------------------------


async def test_lkproto_tone_reaches_official_sdk(livekit_server: LocalServer) -> None:
    async with pair(livekit_server, "media-tone-out") as (ours, theirs):
        feeder = await publish_tone(rtc, ours, 440)
        try:
            track = await subscribed_track(theirs, "audio")
            peak, level = await tone_of(lrtc, track)
        finally:
            await feeder.stop()
        assert abs(peak - 440) <= 5, peak
        assert abs(level - sent_level_db()) <= 3, (level, sent_level_db())


async def test_official_tone_reaches_lkproto(livekit_server: LocalServer) -> None:
    async with pair(livekit_server, "media-tone-in") as (ours, theirs):
        subscribed: list[tuple[Any, Any, Any]] = []
        ours.on("track_subscribed", lambda *args: subscribed.append(args))
        feeder = await publish_tone(lrtc, theirs, 1000)
        try:
            track = await subscribed_track(ours, "audio")
            peak, level = await tone_of(rtc, track)
        finally:
            await feeder.stop()
        assert abs(peak - 1000) <= 5, peak
        assert abs(level - sent_level_db()) <= 3, (level, sent_level_db())
        # The event carried the same objects the participant model holds (official arg order).
        track_arg, publication, participant = subscribed[0]
        assert track_arg is track
        assert publication.track is track
        assert participant.identity == "sdk"
        assert isinstance(track, rtc.RemoteAudioTrack)
        assert publication.source == rtc.TrackSource.SOURCE_MICROPHONE


# -- video ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_lkproto_colours_reach_official_sdk(livekit_server: LocalServer, codec: str) -> None:
    async with pair(livekit_server, f"media-colours-out-{codec.lower()}") as (ours, theirs):
        feeder = await publish_colours(rtc, ours, rtc.VideoCodec[codec])
        try:
            track = await subscribed_track(theirs, "video")
            seen = await colour_sequence(lrtc, track, changes=4)
        finally:
            await feeder.stop()
        assert_in_order(seen)
        # The server names the codec once media flows, in a later update of our own info.
        pub = feeder.publication
        await wait_for(lambda: pub.mime_type != "", 10, "mime type of our publication")
        assert pub.mime_type.lower() == f"video/{codec.lower()}"
        assert (pub.width, pub.height) == (VIDEO_W, VIDEO_H)
        # ...and the subscriber sees the same codec.
        remote = theirs.remote_participants["lk"].track_publications[pub.sid]
        assert remote.mime_type.lower() == f"video/{codec.lower()}"


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_official_colours_reach_lkproto(livekit_server: LocalServer, codec: str) -> None:
    async with pair(livekit_server, f"media-colours-in-{codec.lower()}") as (ours, theirs):
        feeder = await publish_colours(lrtc, theirs, getattr(lrtc.VideoCodec, codec))
        try:
            track = await subscribed_track(ours, "video")
            assert isinstance(track, rtc.RemoteVideoTrack)
            seen = await colour_sequence(rtc, track, changes=4)
        finally:
            await feeder.stop()
        assert_in_order(seen)


# -- lifecycle --------------------------------------------------------------------------------


async def test_mute_unmute_and_unpublish_are_seen_both_ways(livekit_server: LocalServer) -> None:
    async with pair(livekit_server, "media-mute") as (ours, theirs):
        official_events: list[tuple[str, str]] = []
        official_names: tuple[EventTypes, ...] = (
            "track_muted",
            "track_unmuted",
            "track_unpublished",
        )
        for name in official_names:
            theirs.on(
                name,
                lambda *args, name=name: official_events.append((name, _pub_of(args).sid)),
            )
        our_events: list[tuple[str, str]] = []
        for name in ("track_muted", "track_unmuted", "track_unsubscribed", "track_unpublished"):
            ours.on(name, lambda *args, name=name: our_events.append((name, _pub_of(args).sid)))

        mine = await publish_tone(rtc, ours, 440, name="mine")
        theirs_feed = await publish_tone(lrtc, theirs, 1000, name="theirs")
        try:
            await subscribed_track(theirs, "audio")
            await subscribed_track(ours, "audio")
            sid = mine.publication.sid
            mine.track.mute()
            await wait_for(lambda: ("track_muted", sid) in official_events, 10, "muted seen")
            assert theirs.remote_participants["lk"].track_publications[sid].muted
            mine.track.unmute()
            await wait_for(lambda: ("track_unmuted", sid) in official_events, 10, "unmuted seen")

            their_sid = theirs_feed.publication.sid
            theirs_feed.track.mute()
            await wait_for(lambda: ("track_muted", their_sid) in our_events, 10, "we see mute")
            assert ours.remote_participants["sdk"].track_publications[their_sid].muted
            theirs_feed.track.unmute()
            await wait_for(lambda: ("track_unmuted", their_sid) in our_events, 10, "unmute")

            await ours.local_participant.unpublish_track(sid)
            await wait_for(lambda: ("track_unpublished", sid) in official_events, 10, "unpub")
            assert sid not in ours.local_participant.track_publications

            await theirs.local_participant.unpublish_track(their_sid)
            await wait_for(lambda: ("track_unpublished", their_sid) in our_events, 10, "we see")
            # Official order: the subscription ends before the publication goes.
            ends = [e for e in our_events if e[1] == their_sid and e[0] != "track_muted"]
            assert ends[-2:] == [
                ("track_unsubscribed", their_sid),
                ("track_unpublished", their_sid),
            ]
        finally:
            await mine.stop()
            await theirs_feed.stop()


def _pub_of(args: tuple[Any, ...]) -> Any:
    """The publication among an event's arguments (their order differs per event)."""
    return next(a for a in args if hasattr(a, "sid") and hasattr(a, "mime_type"))


async def test_late_joiner_receives_already_published_track(livekit_server: LocalServer) -> None:
    name = unique_room("media-late")
    ours = await connect_ours(livekit_server, "lk", name)
    theirs: lrtc.Room | None = None
    feeder = await publish_tone(rtc, ours, 440)
    try:
        await asyncio.sleep(scaled(1.0))
        theirs = await connect_official(livekit_server, "sdk", name)
        track = await subscribed_track(theirs, "audio")
        peak, _ = await tone_of(lrtc, track, seconds=1.0)
        assert abs(peak - 440) <= 5, peak
    finally:
        await feeder.stop()
        await disconnect_all(ours, theirs)


async def test_manual_subscription(livekit_server: LocalServer) -> None:
    """auto_subscribe=False: publications are known, nothing is received until set_subscribed."""
    async with pair(livekit_server, "media-manual", lk_subscribe=False) as (ours, theirs):
        events: list[str] = []
        ours.on("track_subscribed", lambda *a: events.append("subscribed"))
        ours.on("track_unsubscribed", lambda *a: events.append("unsubscribed"))
        feeder = await publish_tone(lrtc, theirs, 1000)
        try:
            sid = feeder.publication.sid
            await wait_for(
                lambda: sid in ours.remote_participants.get("sdk", _NoOne).track_publications,
                15,
                "publication known",
            )
            pub = ours.remote_participants["sdk"].track_publications[sid]
            await asyncio.sleep(scaled(1.0))
            assert pub.track is None
            assert events == []
            pub.set_subscribed(True)
            await wait_for(lambda: pub.track is not None, SUBSCRIBE_TIMEOUT_S, "subscribed")
            peak, _ = await tone_of(rtc, pub.track, seconds=1.0)
            assert abs(peak - 1000) <= 5, peak
            pub.set_subscribed(False)
            await wait_for(lambda: pub.track is None, SUBSCRIBE_TIMEOUT_S, "unsubscribed")
            assert events == ["subscribed", "unsubscribed"]
        finally:
            await feeder.stop()


class _NoOne:
    track_publications: dict[str, Any] = {}  # noqa: RUF012


async def test_publishing_a_source_the_token_forbids_is_refused(
    livekit_server: LocalServer,
) -> None:
    name = unique_room("media-forbidden")
    ours = await connect_ours(livekit_server, "lk", name, can_publish_sources=["microphone"])
    try:
        source = rtc.VideoSource(VIDEO_W, VIDEO_H)
        track = rtc.LocalVideoTrack.create_video_track("cam", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        with pytest.raises(RequestRejectedError) as info:
            await ours.local_participant.publish_track(track, options)
        assert info.value.reason == "NOT_ALLOWED"
        # The microphone is still allowed on the same connection.
        feeder = await publish_tone(rtc, ours, 440)
        await feeder.stop()
        assert feeder.publication.sid.startswith("TR_")
    finally:
        await disconnect_all(ours)


# -- pre-encoded video and reconnection ---------------------------------------------------------


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_pre_encoded_video_passes_through(livekit_server: LocalServer, codec: str) -> None:
    """Frames encoded by the application (PyAV here) go out without re-encoding and decode at
    the official SDK with their colours in order."""
    import av

    async with pair(livekit_server, f"media-encoded-{codec}") as (ours, theirs):
        source = rtc.EncodedVideoSource(codec, VIDEO_W, VIDEO_H)
        track = rtc.LocalVideoTrack.create_video_track("encoded", source)
        await ours.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        )
        encoder = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = VIDEO_W, VIDEO_H, "yuv420p"
        encoder.time_base = fractions.Fraction(1, 30)
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "g": "30"}
        if codec == "h264":
            encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30"}
        rgb = [
            av.VideoFrame.from_ndarray(
                np.full((VIDEO_H, VIDEO_W, 3), c, dtype=np.uint8), format="rgb24"
            ).reformat(format="yuv420p")
            for c in COLOURS
        ]

        async def feed() -> None:
            n = 0
            while True:
                frame = rgb[(n // 30) % len(COLOURS)]
                frame.pts = n
                for packet in encoder.encode(frame):
                    source.capture_encoded(
                        bytes(packet),
                        timestamp_us=int(n * 1_000_000 / 30),
                        keyframe=bool(packet.is_keyframe),
                    )
                n += 1
                await asyncio.sleep(1 / 30)

        task = asyncio.ensure_future(feed())
        try:
            remote = await subscribed_track(theirs, "video")
            seen = await colour_sequence(lrtc, remote, changes=3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert_in_order(seen)


async def test_media_survives_resume_and_full_reconnect(livekit_server: LocalServer) -> None:
    """A signal resume keeps the publication (sync_state lists it); a full reconnect publishes
    it again under a new SID (``local_track_republished``) and the tone still arrives."""
    async with pair(livekit_server, "media-reconnect") as (ours, theirs):
        republished: list[tuple[Any, str]] = []
        ours.on("local_track_republished", lambda pub, old: republished.append((pub, old)))
        feeder = await publish_tone(rtc, ours, 440)
        try:
            first_sid = feeder.publication.sid
            track = await subscribed_track(theirs, "audio")
            await ours.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT)
            await wait_for(lambda: ours.connection_state == rtc.ConnectionState.CONN_CONNECTED, 20)
            peak, _ = await tone_of(lrtc, track, seconds=1.0)
            assert abs(peak - 440) <= 5, peak
            assert list(ours.local_participant.track_publications) == [first_sid]

            await ours.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT)
            await wait_for(lambda: republished, 30, "local_track_republished")
            pub, previous = republished[0]
            assert previous == first_sid
            assert pub.sid != first_sid
            assert list(ours.local_participant.track_publications) == [pub.sid]
            assert feeder.track.sid == pub.sid

            def new_track() -> Any:
                remote = theirs.remote_participants.get("lk")
                found = remote.track_publications.get(pub.sid) if remote else None
                return found.track if found is not None else None

            await wait_for(new_track, SUBSCRIBE_TIMEOUT_S, "official SDK subscribed again")
            peak, _ = await tone_of(lrtc, new_track(), seconds=1.0)
            assert abs(peak - 440) <= 5, peak
        finally:
            await feeder.stop()


async def test_disabling_a_subscription_pauses_delivery(livekit_server: LocalServer) -> None:
    """``set_enabled(False)`` (UpdateTrackSettings.disabled) makes the server stop forwarding the
    track while it stays subscribed; ``set_enabled(True)`` brings frames back."""
    async with pair(livekit_server, "media-disable") as (ours, theirs):
        feeder = await publish_colours(lrtc, theirs, lrtc.VideoCodec.VP8)
        try:
            track = await subscribed_track(ours, "video")
            pub = ours.remote_participants["sdk"].track_publications[track.sid]
            await wait_for(lambda: track.frames_received > 10, 10, "frames flowing")
            pub.set_enabled(False)
            await asyncio.sleep(scaled(1.5))  # let what was in flight arrive
            paused_at = track.frames_received
            await asyncio.sleep(scaled(1.5))
            assert track.frames_received - paused_at <= 2, "frames kept coming while disabled"
            assert pub.subscribed
            pub.set_enabled(True)
            await wait_for(
                lambda: track.frames_received > paused_at + 10, 10, "frames flowing again"
            )
        finally:
            await feeder.stop()


async def test_tones_both_ways_over_two_peer_connections(livekit_server: LocalServer) -> None:
    """The /rtc (v0) path: we publish on the publisher PC and receive on the subscriber PC,
    whose sections the server offers (PROTOCOL-MAP §2 dual PC, §16 receive tracks dual PC)."""
    name = unique_room("media-v0")
    ours = rtc.Room()
    theirs: lrtc.Room | None = None
    options = rtc.RoomOptions(
        single_peer_connection=False,
        rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]),
    )
    token = livekit_server.create_token("lk", name)
    mine = theirs_feed = None
    try:
        await asyncio.wait_for(ours.connect(livekit_server.url, token, options), scaled(20))
        theirs = await connect_official(livekit_server, "sdk", name)
        mine = await publish_tone(rtc, ours, 440)
        theirs_feed = await publish_tone(lrtc, theirs, 1000)
        heard_by_them = await tone_of(lrtc, await subscribed_track(theirs, "audio"), 1.0)
        heard_by_us = await tone_of(rtc, await subscribed_track(ours, "audio"), 1.0)
        assert abs(heard_by_them[0] - 440) <= 5, heard_by_them
        assert abs(heard_by_us[0] - 1000) <= 5, heard_by_us
        assert abs(heard_by_us[1] - sent_level_db()) <= 3, heard_by_us
    finally:
        for feeder in (mine, theirs_feed):
            if feeder is not None:
                await feeder.stop()
        await disconnect_all(ours, theirs)


@pytest.mark.parametrize("tracks", [2, 5])
async def test_several_tracks_offered_together_all_decode(
    livekit_server: LocalServer, tracks: int
) -> None:
    """Several audio tracks published at once reach us in one negotiation; each must decode
    its own tone (aiortc's BALANCED bundle policy once left all but one receiver dead)."""
    async with pair(livekit_server, f"media-many-{tracks}") as (ours, theirs):
        freqs = [300 + 150 * i for i in range(tracks)]
        feeders = await asyncio.gather(
            *(publish_tone(lrtc, theirs, f, name=f"t{f}") for f in freqs)
        )
        try:
            by_name: dict[str, Any] = {}

            def all_subscribed() -> bool:
                remote = ours.remote_participants.get("sdk")
                if remote is None:
                    return False
                for pub in remote.track_publications.values():
                    if pub.track is not None:
                        by_name[pub.name] = pub.track
                return len(by_name) == tracks

            await wait_for(all_subscribed, SUBSCRIBE_TIMEOUT_S, f"{tracks} tracks subscribed")
            heard = await asyncio.gather(
                *(tone_of(rtc, by_name[f"t{f}"], seconds=1.0) for f in freqs)
            )
        finally:
            for feeder in feeders:
                await feeder.stop()
        for freq, (peak, _) in zip(freqs, heard, strict=True):
            assert abs(peak - freq) <= 5, (freq, peak)


async def test_server_side_unpublish_stops_our_sender(livekit_server: LocalServer) -> None:
    """Revoking publish permission makes the server unpublish our track (``track_unpublished``,
    PROTOCOL-MAP §9): we emit ``local_track_unpublished`` and stop sending that section."""
    from livekit import api as lapi

    async with pair(livekit_server, "media-revoked") as (ours, theirs):
        room_name = ours.name
        events: list[Any] = []
        ours.on("local_track_unpublished", events.append)
        feeder = await publish_tone(rtc, ours, 440)
        try:
            await subscribed_track(theirs, "audio")
            cid = feeder.track.cid
            assert ours._engine is not None
            assert ours._engine.published_sender(cid) is not None
            http_url = livekit_server.url.replace("ws://", "http://")
            async with lapi.LiveKitAPI(
                http_url, livekit_server.api_key, livekit_server.api_secret
            ) as client:
                await client.room.update_participant(
                    lapi.UpdateParticipantRequest(
                        room=room_name,
                        identity="lk",
                        permission=lapi.ParticipantPermission(
                            can_subscribe=True, can_publish=False, can_publish_data=True
                        ),
                    )
                )
            await wait_for(lambda: events, 10, "local_track_unpublished")
            assert events[0].sid == feeder.publication.sid
            assert not ours.local_participant.track_publications
            await wait_for(
                lambda: ours._engine is not None and ours._engine.published_sender(cid) is None,
                10,
                "our sender detached",
            )
        finally:
            await feeder.stop()
