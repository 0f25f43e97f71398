"""Simulcast publishing against a real livekit-server and the official SDK (issue 17 item 1).

lkproto publishes a 1280x720 camera (VP8, and H.264) with ``TrackPublishOptions(simulcast=True)``:
three layers (320x180, 640x360, 1280x720, rids q/h/f). The official SDK subscribes and asks for
LOW, then
HIGH, with ``RemoteTrackPublication.set_video_quality``; the frames it decodes must change to the
low, then the full size. With ``RoomOptions(dynacast=True)`` and the only subscriber on LOW, the
server's ``SubscribedQualityUpdate`` must leave only the ``q`` layer encoding: the other layers'
senders stop sending. The process CPU time over a window with one layer and with all three is
printed (a figure for the docs, not asserted: the machine is shared). With end-to-end
encryption both sides share a key and the official subscriber decodes LOW, then HIGH frames.
After a full reconnect the track is published again with its layers and frames arrive again.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.asyncio.publish import SimulcastSender, simulcast_of
from lkproto.testing import LocalServer, scaled
from tests.interop._helpers import (
    CONNECT_TIMEOUT_S,
    connect_official,
    disconnect_all,
    make_token,
    official_options,
    unique_room,
    wait_for,
)
from tests.interop.test_media import Feeder, publish_tone, subscribed_track

pytestmark = pytest.mark.interop

W, H = 1280, 720
SWITCH_TIMEOUT_S = 30.0
WINDOW_S = 5.0


@contextlib.asynccontextmanager
async def publishing(
    server: LocalServer,
    *,
    dynacast: bool,
    codec: int = rtc.VideoCodec.VP8,
    key: bytes | None = None,
    audio_first: bool = False,
) -> AsyncIterator[tuple[rtc.Room, lrtc.Room, rtc.LocalVideoTrack]]:
    """lkproto publishing a simulcast camera (after a tone with ``audio_first``), an official
    subscriber joined; both with ``key`` as the shared E2EE key when given."""
    name = unique_room("simulcast")
    ours: rtc.Room | None = None
    theirs: lrtc.Room | None = None
    feed: asyncio.Task[None] | None = None
    tone: Feeder | None = None
    try:
        ours = rtc.Room()
        options = rtc.RoomOptions(
            dynacast=dynacast, rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"])
        )
        if key is not None:
            options.encryption = rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=key)
            )
        await asyncio.wait_for(
            ours.connect(server.url, server.create_token("lk", name), options), scaled(20)
        )
        if audio_first:
            tone = await publish_tone(rtc, ours, 440)
        source = rtc.VideoSource(W, H)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        await ours.local_participant.publish_track(
            track,
            rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_CAMERA, simulcast=True, video_codec=codec
            ),
        )
        feed = asyncio.ensure_future(moving_picture(source))
        if key is None:
            theirs = await connect_official(server, "sdk", name)
        else:
            theirs = lrtc.Room()
            their_options = official_options()
            their_options.encryption = lrtc.E2EEOptions(
                key_provider_options=lrtc.KeyProviderOptions(shared_key=key)
            )
            await asyncio.wait_for(
                theirs.connect(server.url, make_token(server, "sdk", name), their_options),
                scaled(CONNECT_TIMEOUT_S),
            )
        yield ours, theirs, track
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        if tone is not None:
            await tone.stop()
        await disconnect_all(ours, theirs)


async def moving_picture(source: rtc.VideoSource) -> None:
    """A bar moving across the picture at 30 fps (encoders need changing content)."""
    frames = []
    for i in range(8):
        img = np.zeros((H, W, 4), np.uint8)
        img[..., 3] = 255
        img[:, i * W // 8 : (i + 1) * W // 8, 0] = 220
        img[::2, :, 1] = 90
        frames.append(img.tobytes())
    n = 0
    while True:
        source.capture_frame(rtc.VideoFrame(W, H, rtc.VideoBufferType.RGBA, frames[n % 8]))
        n += 1
        await asyncio.sleep(1 / 30)


async def _until_size(stream: Any, size: tuple[int, int], within: float) -> int:
    """Read ``stream`` until a frame of ``size`` arrives; the frames read before it."""
    read = 0
    async with asyncio.timeout(within):
        async for event in stream:
            if (event.frame.width, event.frame.height) == size:
                return read
            read += 1
    raise AssertionError(f"the stream ended before a {size} frame")


def _simulcast(ours: rtc.Room, track: rtc.LocalVideoTrack) -> SimulcastSender:
    engine = ours.engine
    assert engine is not None
    found = simulcast_of(engine.published_sender(track.cid))
    assert found is not None
    return found


async def _packets(simulcast: SimulcastSender) -> dict[str, int]:
    out = {}
    for rid, sender in simulcast.senders.items():
        report = await sender.getStats()
        out[rid] = sum(s.packetsSent for s in report.values() if s.type == "outbound-rtp")
    return out


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("codec", [rtc.VideoCodec.VP8, rtc.VideoCodec.H264], ids=["VP8", "H264"])
async def test_official_subscriber_switches_between_low_and_high(
    livekit_server: LocalServer, codec: int
) -> None:
    async with publishing(livekit_server, dynacast=False, codec=codec) as (ours, theirs, track):
        remote = await subscribed_track(theirs, "video")
        publication = next(
            pub
            for p in theirs.remote_participants.values()
            for pub in p.track_publications.values()
            if pub.sid == remote.sid
        )
        assert publication.simulcasted
        simulcast = _simulcast(ours, track)
        assert [(x.rid, x.width, x.height) for x in simulcast.layers] == [
            ("q", 320, 180),
            ("h", 640, 360),
            ("f", 1280, 720),
        ]
        stream = lrtc.VideoStream(remote)
        try:
            await _until_size(stream, (W, H), scaled(SWITCH_TIMEOUT_S))
            publication.set_video_quality(lrtc.VideoQuality.VIDEO_QUALITY_LOW)
            await _until_size(stream, (320, 180), scaled(SWITCH_TIMEOUT_S))
            publication.set_video_quality(lrtc.VideoQuality.VIDEO_QUALITY_HIGH)
            await _until_size(stream, (W, H), scaled(SWITCH_TIMEOUT_S))
        finally:
            await stream.aclose()
        # Every layer went out on its own SSRC and is reported with its rid.
        stats = await track.get_stats()
        outbound = [s.outbound_rtp for s in stats if s.outbound_rtp is not None]
        assert sorted(o.outbound.rid for o in outbound) == ["f", "h", "q"]
        assert all(o.sent.packets_sent > 0 for o in outbound)
        # Muting silences every layer; unmuting brings them back.
        track.mute()
        await asyncio.sleep(scaled(1.0))
        muted = await _packets(simulcast)
        await asyncio.sleep(scaled(1.0))
        assert await _packets(simulcast) == muted
        track.unmute()
        async with asyncio.timeout(scaled(SWITCH_TIMEOUT_S)):
            while True:
                now = await _packets(simulcast)
                if all(n > muted[rid] for rid, n in now.items()):
                    break
                await asyncio.sleep(0.2)
        # Unpublishing ends every layer sender, not only the section.
        [sid] = list(ours.local_participant.track_publications)
        await ours.local_participant.unpublish_track(sid)
        await asyncio.sleep(scaled(1.0))
        stopped = await _packets(simulcast)
        await asyncio.sleep(scaled(1.0))
        assert await _packets(simulcast) == stopped


@pytest.mark.parametrize("codec", [rtc.VideoCodec.VP8, rtc.VideoCodec.H264], ids=["VP8", "H264"])
async def test_encrypted_layers_decrypt_at_the_official_subscriber_low_then_high(
    livekit_server: LocalServer, codec: int
) -> None:
    # Each layer is encrypted like a single-layer track (lkproto.asyncio.e2ee): a decoded frame
    # of a layer's size is one that was decrypted with the key (ciphertext decodes to nothing).
    async with publishing(livekit_server, dynacast=False, codec=codec, key=b"simulcast-key") as (
        ours,
        theirs,
        track,
    ):
        remote = await subscribed_track(theirs, "video")
        publication = next(
            pub
            for p in theirs.remote_participants.values()
            for pub in p.track_publications.values()
            if pub.sid == remote.sid
        )
        assert publication.simulcasted
        assert publication.encryption_type == lrtc.EncryptionType.GCM
        simulcast = _simulcast(ours, track)
        assert len(simulcast.senders) == 3
        stream = lrtc.VideoStream(remote)
        try:
            publication.set_video_quality(lrtc.VideoQuality.VIDEO_QUALITY_LOW)
            await _until_size(stream, (320, 180), scaled(SWITCH_TIMEOUT_S))
            publication.set_video_quality(lrtc.VideoQuality.VIDEO_QUALITY_HIGH)
            await _until_size(stream, (W, H), scaled(SWITCH_TIMEOUT_S))
        finally:
            await stream.aclose()


async def test_layers_after_an_audio_track_reach_the_subscriber(
    livekit_server: LocalServer,
) -> None:
    # The rid extension's id must not be one the audio section gives another extension: pion
    # keys a bundle's extensions by id and then drops every layer (core.simulcast
    # rid_extension_id).
    async with publishing(livekit_server, dynacast=False, audio_first=True) as (_, theirs, __):
        remote = await subscribed_track(theirs, "video")
        stream = lrtc.VideoStream(remote)
        try:
            await _until_size(stream, (W, H), scaled(SWITCH_TIMEOUT_S))
        finally:
            await stream.aclose()


async def test_layers_are_republished_after_a_full_reconnect(livekit_server: LocalServer) -> None:
    # A full reconnect publishes the track again on a new connection (engine._republish), which
    # prepares a new SimulcastSender: its layers must reach the official subscriber again.
    async with publishing(livekit_server, dynacast=False) as (ours, theirs, track):
        republished: list[tuple[Any, str]] = []
        ours.on("local_track_republished", lambda pub, old: republished.append((pub, old)))
        remote = await subscribed_track(theirs, "video")
        first = _simulcast(ours, track)
        stream = lrtc.VideoStream(remote)
        try:
            await _until_size(stream, (W, H), scaled(SWITCH_TIMEOUT_S))
        finally:
            await stream.aclose()
        await ours.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT)
        await wait_for(lambda: republished, scaled(SWITCH_TIMEOUT_S), "local_track_republished")
        pub, previous = republished[0]
        assert previous == remote.sid
        assert pub.sid != remote.sid

        def new_publication() -> Any:
            participant = theirs.remote_participants.get("lk")
            found = participant.track_publications.get(pub.sid) if participant else None
            return found if found is not None and found.track is not None else None

        await wait_for(new_publication, scaled(SWITCH_TIMEOUT_S), "subscribed to the new sid")
        publication = new_publication()
        assert publication.simulcasted
        again = _simulcast(ours, track)
        assert again is not first
        assert sorted(again.senders) == ["f", "h", "q"]
        stream = lrtc.VideoStream(publication.track)
        try:
            await _until_size(stream, (W, H), scaled(SWITCH_TIMEOUT_S))
            publication.set_video_quality(lrtc.VideoQuality.VIDEO_QUALITY_LOW)
            await _until_size(stream, (320, 180), scaled(SWITCH_TIMEOUT_S))
        finally:
            await stream.aclose()


async def test_dynacast_stops_the_layers_nobody_watches(livekit_server: LocalServer) -> None:
    async with publishing(livekit_server, dynacast=True) as (ours, theirs, track):
        remote = await subscribed_track(theirs, "video")
        publication = next(
            pub
            for p in theirs.remote_participants.values()
            for pub in p.track_publications.values()
            if pub.sid == remote.sid
        )
        simulcast = _simulcast(ours, track)
        stream = lrtc.VideoStream(remote)
        try:
            publication.set_video_quality(lrtc.VideoQuality.VIDEO_QUALITY_LOW)
            await _until_size(stream, (320, 180), scaled(SWITCH_TIMEOUT_S))
            # The server tells the publisher after its dynacast debounce (about 5 s).
            await wait_for(
                lambda: simulcast.wanted == {"q"}, scaled(SWITCH_TIMEOUT_S), "only q wanted"
            )
            drain = asyncio.ensure_future(_drain(stream))
            await asyncio.sleep(scaled(1.0))
            before, cpu_before, t0 = await _packets(simulcast), _cpu_s(), time.monotonic()
            await asyncio.sleep(scaled(WINDOW_S))
            after, cpu_one, t1 = await _packets(simulcast), _cpu_s(), time.monotonic()
            # Nobody watches h and f: their encoders got no frame, their senders sent nothing.
            assert after["h"] == before["h"], (before, after)
            assert after["f"] == before["f"], (before, after)
            assert after["q"] > before["q"], (before, after)
            # The same subscriber and picture with every layer encoding, for the figure.
            simulcast.set_wanted({"q", "h", "f"})
            await asyncio.sleep(scaled(1.0))
            cpu_all_start, t2 = _cpu_s(), time.monotonic()
            await asyncio.sleep(scaled(WINDOW_S))
            cpu_all, t3 = _cpu_s(), time.monotonic()
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        finally:
            await stream.aclose()
        print(
            f"simulcast CPU: q only {cpu_one - cpu_before:.2f} s over {t1 - t0:.1f} s; "
            f"q+h+f {cpu_all - cpu_all_start:.2f} s over {t3 - t2:.1f} s"
        )


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
