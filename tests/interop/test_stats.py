"""WebRTC statistics against a real livekit-server and the official SDK (issue 17 item 2).

lkproto and the official SDK each publish a tone and a moving picture and subscribe to the
other's. After a stretch of media both ways the publishers stop, in-flight packets settle, and
each side's statistics are compared with the other side's own: what lkproto reports sending
(``outbound_rtp``) must match what the official SDK reports receiving (``inbound_rtp``) for
the same track, and the other way round, within a tolerance for the SFU's padding and
retransmissions. lkproto's decoded-frame count is compared with the frames it delivered, and
the session report must carry the codec, transport, ICE pair and data channel objects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import LocalServer, scaled
from tests.interop._helpers import connect_official, disconnect_all, unique_room
from tests.interop.test_media import (
    FRAME_MS,
    SAMPLE_RATE,
    Feeder,
    publish_colours,
    subscribed_track,
)

pytestmark = pytest.mark.interop

WARMUP_S = 2.0
MEDIA_S = 10.0
SETTLE_S = 1.5
# The SFU forwards media packets one for one (measured: equal or one packet apart over 10 s);
# the tolerance absorbs packets in flight when a window edge is read and losses under load.
PACKET_TOLERANCE = 0.05
BYTE_TOLERANCE = 0.05


@contextlib.asynccontextmanager
async def pair(server: LocalServer) -> AsyncIterator[tuple[rtc.Room, lrtc.Room]]:
    name = unique_room("stats")
    ours: rtc.Room | None = None
    theirs: lrtc.Room | None = None
    try:
        ours = rtc.Room()
        options = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"]))
        await asyncio.wait_for(
            ours.connect(server.url, server.create_token("lk", name), options), scaled(20)
        )
        theirs = await connect_official(server, "sdk", name)
        yield ours, theirs
    finally:
        await disconnect_all(ours, theirs)


async def publish_tone(mod: ModuleType, room: Any, freq: float, name: str) -> Feeder:
    """A sine published without RED (the official default would send each Opus frame twice,
    which the server strips for lkproto, so sent and received bytes could not be compared)."""
    source = mod.AudioSource(SAMPLE_RATE, 1)
    track = mod.LocalAudioTrack.create_audio_track(name, source)
    options = mod.TrackPublishOptions(source=mod.TrackSource.SOURCE_MICROPHONE, red=False)
    publication = await room.local_participant.publish_track(track, options)
    per_frame = SAMPLE_RATE * FRAME_MS // 1000

    async def feed() -> None:
        n = 0
        while True:
            t = (np.arange(per_frame) + n) / SAMPLE_RATE
            samples = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
            n += per_frame
            await source.capture_frame(mod.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, per_frame))

    return Feeder(asyncio.ensure_future(feed()), publication, track, {"source": source})


def one(stats: list[Any], kind: str) -> Any:
    """The single stats object of ``kind`` in a track's report (either SDK)."""
    found = [getattr(s, kind) for s in stats if s.WhichOneof("stats") == kind]
    assert len(found) == 1, (kind, [s.WhichOneof("stats") for s in stats])
    return found[0]


def inbound_media(stats: list[Any]) -> Any:
    """The official SDK's inbound stream that carried media (it may list a probe stream)."""
    found = [s.inbound_rtp for s in stats if s.WhichOneof("stats") == "inbound_rtp"]
    assert found, [s.WhichOneof("stats") for s in stats]
    return max(found, key=lambda s: s.received.packets_received)


def close(measured: int, expected: int, tolerance: float) -> bool:
    return expected > 0 and abs(measured - expected) <= tolerance * expected


Flows = dict[str, tuple[Any, Any]]


async def counters(flows: Flows) -> dict[str, tuple[int, int, int, int]]:
    """label -> (packets sent, bytes sent, packets received, bytes received), each sender read
    just before its receiver."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for label, (sender, receiver) in flows.items():
        sent = one(await sender.get_stats(), "outbound_rtp").sent
        got = inbound_media(await receiver.get_stats())
        out[label] = (
            sent.packets_sent,
            sent.bytes_sent,
            got.received.packets_received,
            got.inbound.bytes_received,
        )
    return out


async def test_stats_match_what_the_other_side_saw(livekit_server: LocalServer) -> None:
    async with pair(livekit_server) as (ours, theirs):
        feeders: list[Feeder] = []
        try:
            feeders.append(await publish_tone(rtc, ours, 440, name="lk-tone"))
            feeders.append(await publish_colours(rtc, ours, rtc.VideoCodec.VP8, name="lk-video"))
            feeders.append(await publish_tone(lrtc, theirs, 1000, name="sdk-tone"))
            feeders.append(
                await publish_colours(lrtc, theirs, lrtc.VideoCodec.VP8, name="sdk-video")
            )
            our_audio_in = await subscribed_track(ours, "audio")
            our_video_in = await subscribed_track(ours, "video")
            their_audio_in = await subscribed_track(theirs, "audio")
            their_video_in = await subscribed_track(theirs, "video")
            # The official SDK decodes only for a sink: read its video as an app would.
            reader = lrtc.VideoStream(their_video_in)
            drain = asyncio.ensure_future(_drain(reader))
            flows: Flows = {
                "lk->sdk audio": (feeders[0].track, their_audio_in),
                "lk->sdk video": (feeders[1].track, their_video_in),
                "sdk->lk audio": (feeders[2].track, our_audio_in),
                "sdk->lk video": (feeders[3].track, our_video_in),
            }
            # Packets sent before the server bound the subscriber are never received: compare
            # what happened over a window that starts once media flows both ways.
            await asyncio.sleep(scaled(WARMUP_S))
            before = await counters(flows)
            await asyncio.sleep(scaled(MEDIA_S))
        finally:
            for feeder in feeders:
                await feeder.stop()
        await asyncio.sleep(scaled(SETTLE_S))
        try:
            after = await counters(flows)
            report = await asyncio.wait_for(ours.get_rtc_stats(), scaled(10))
            lk_video_out = await feeders[1].track.get_stats()
            lk_audio_in = await our_audio_in.get_stats()
            lk_video_in = await our_video_in.get_stats()
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
            await reader.aclose()

        window = {k: tuple(a - b for a, b in zip(after[k], before[k], strict=True)) for k in flows}
        print("stats over the window (sent packets, bytes, received packets, bytes):", window)
        for label, (sent_p, sent_b, got_p, got_b) in window.items():
            assert close(got_p, sent_p, PACKET_TOLERANCE), (label, window)
            assert close(got_b, sent_b, BYTE_TOLERANCE), (label, window)

        # Decoded frames are the frames lkproto's track delivered.
        decoded = one(lk_video_in, "inbound_rtp").inbound.frames_decoded
        assert decoded == our_video_in.frames_received > scaled(MEDIA_S) * 10, decoded

        # The server's receiver reports reached lkproto's senders: a round-trip time was taken.
        remote = one(lk_video_out, "remote_inbound_rtp").remote_inbound
        assert 0 < remote.round_trip_time < 1.0, remote
        assert one(lk_video_out, "codec").codec.mime_type.lower() == "video/vp8"
        assert one(lk_audio_in, "codec").codec.mime_type.lower() == "audio/opus"

        # One peer connection (livekit-server v1.13.5): its report, streams both ways and the
        # shared objects, is publisher_stats, with ids that resolve.
        pub_kinds = [s.WhichOneof("stats") for s in report.publisher_stats]
        assert report.subscriber_stats == []
        assert pub_kinds.count("outbound_rtp") == 2, pub_kinds
        assert pub_kinds.count("inbound_rtp") == 2, pub_kinds
        for kind in ("codec", "transport", "candidate_pair", "data_channel"):
            assert kind in pub_kinds, (kind, pub_kinds)
        ids = {s.rtc.id for s in report.publisher_stats}
        for s in report.publisher_stats:
            if s.HasField("outbound_rtp"):
                assert s.outbound_rtp is not None
                assert s.outbound_rtp.stream.codec_id in ids
                assert s.outbound_rtp.stream.transport_id in ids
        transport = one(report.publisher_stats, "transport").transport
        rtp_bytes = after["lk->sdk audio"][1] + after["lk->sdk video"][1]
        assert transport.bytes_sent > rtp_bytes, (transport, rtp_bytes)

        # The official SDK answers the same way: one list, holding every kind lkproto reports.
        theirs_report = await theirs.get_rtc_stats()
        assert theirs_report.subscriber_stats == []
        assert set(pub_kinds) <= {s.WhichOneof("stats") for s in theirs_report.publisher_stats}


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
