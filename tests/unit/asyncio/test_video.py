"""The aiortc side of published video: feeds, tracks, pts, pre-encoded packets through aiortc's
own packetizers, depayloaders and decoders."""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCRtpSender
from aiortc.codecs import depayload, get_decoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from lkproto.asyncio.video import (
    CONVERT_INLINE_MAX_PIXELS,
    EncodedVideoFeed,
    EncodedVideoTrack,
    PtsStamper,
    VideoFrameFeed,
    VideoFrameTrack,
    run_conversion,
)
from lkproto.rtc.video_frame import VideoBufferType, VideoFrame
from lkproto.rtc.video_source import EncodedVideoSource, VideoSource
from tests.conftest import scaled

RGBA = (200, 30, 90, 255)
CODEC_TOLERANCE = 8  # a lossy codec on a flat colour stays within a few steps
TIME_BASE = fractions.Fraction(1, 90_000)


def rgba_frame(width: int, height: int, rgba: tuple[int, ...] = RGBA) -> VideoFrame:
    return VideoFrame(width, height, VideoBufferType.RGBA, bytes(rgba) * (width * height))


def mean_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgba = VideoFrame._from_av(frame, VideoBufferType.RGBA)
    pixels = np.frombuffer(rgba.data, np.uint8).reshape(frame.height, frame.width, 4)
    means: np.ndarray = pixels[..., :3].reshape(-1, 3).mean(axis=0)
    return means


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- pts ----------------------------------------------------------------------------------------


def test_pts_from_timestamp_us() -> None:
    stamper = PtsStamper()
    assert stamper.stamp(1_000_000) == 90_000
    assert stamper.stamp(1_033_333) == 92_999
    # Not moving forward: nudged one tick past the previous stamp.
    assert stamper.stamp(1_033_333) == 93_000
    assert stamper.stamp(500_000) == 93_001
    assert stamper.stamp(2_000_000) == 180_000


def test_pts_from_clock() -> None:
    clock = Clock()
    stamper = PtsStamper(clock)
    assert stamper.stamp(0) == 0  # the first frame is the origin
    clock.now += 0.5
    assert stamper.stamp(0) == 45_000
    assert stamper.stamp(0) == 45_001  # same instant: still strictly increasing
    clock.now += 1 / 30
    assert stamper.stamp(0) == 48_000


# -- raw feed and track -------------------------------------------------------------------------


def test_feed_newest_wins() -> None:
    feed = VideoFrameFeed(max_pending=2)
    frames = [rgba_frame(2, 2, (i, 0, 0, 255)) for i in range(5)]
    for i, frame in enumerate(frames):
        feed.push(frame, timestamp_us=(i + 1) * 1000)
    assert (feed.captured, feed.dropped, len(feed)) == (5, 3, 2)
    first, second = feed.pop(), feed.pop()
    assert first is not None
    assert second is not None
    assert (first.frame, second.frame) == (frames[3], frames[4])
    assert feed.pop() is None


def test_feed_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        VideoFrameFeed(0)
    with pytest.raises(ValueError, match="max_pending"):
        EncodedVideoFeed(0)


async def test_track_returns_yuv420p_with_pts() -> None:
    clock = Clock()
    feed = VideoFrameFeed(clock=clock)
    track = VideoFrameTrack(feed)
    assert track.kind == "video"
    feed.push(rgba_frame(64, 48), timestamp_us=0)
    clock.now += 0.1
    feed.push(rgba_frame(64, 48), timestamp_us=0)
    first, second = await track.recv(), await track.recv()
    assert first.format.name == "yuv420p"
    assert (first.width, first.height) == (64, 48)
    assert first.time_base == TIME_BASE
    assert (first.pts, second.pts) == (0, 9_000)
    assert np.abs(mean_rgb(first) - RGBA[:3]).max() <= 3


async def test_track_waits_for_a_frame() -> None:
    feed = VideoFrameFeed()
    track = VideoFrameTrack(feed)
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not pending.done()
    feed.push(rgba_frame(4, 4), timestamp_us=5_000_000)
    frame = await asyncio.wait_for(pending, scaled(5))
    assert frame.pts == 450_000


async def test_capture_from_another_thread_wakes_the_track() -> None:
    feed = VideoFrameFeed()
    track = VideoFrameTrack(feed)
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    thread = threading.Thread(target=feed.push, args=(rgba_frame(4, 4), 1_000_000))
    thread.start()
    frame = await asyncio.wait_for(pending, scaled(5))
    thread.join()
    assert frame.pts == 90_000


async def test_stop_ends_a_waiting_recv() -> None:
    feed = VideoFrameFeed()
    track = VideoFrameTrack(feed)
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, scaled(5))
    with pytest.raises(MediaStreamError):
        await track.recv()
    # The feed outlives the track: a new track reads it.
    feed.push(rgba_frame(4, 4), 1)
    assert (await VideoFrameTrack(feed).recv()).width == 4


async def test_closed_feed_ends_the_track() -> None:
    feed = VideoFrameFeed()
    track = VideoFrameTrack(feed)
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    feed.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, scaled(5))
    assert track.readyState == "ended"
    feed.push(rgba_frame(4, 4), 1)  # ignored once closed
    assert len(feed) == 0


async def test_large_conversions_leave_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def job() -> int:
        threads.append(threading.get_ident())
        return len(threads)

    await run_conversion(640 * 480, job)
    await run_conversion(CONVERT_INLINE_MAX_PIXELS + 1, job)
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread


async def test_track_scaler_matches_reformat_across_sizes() -> None:
    """The track's reused swscale context converts exactly as a fresh ``reformat`` does, also
    after the source changes size (the reformatter must rebuild its context then)."""
    rng = np.random.default_rng(5)
    feed = VideoFrameFeed()
    track = VideoFrameTrack(feed)
    for i, (width, height) in enumerate([(64, 48), (64, 48), (96, 72), (64, 48)]):
        pixels = rng.integers(0, 256, size=width * height * 4, dtype=np.uint8).tobytes()
        captured = VideoFrame(width, height, VideoBufferType.RGBA, pixels)
        feed.push(captured, timestamp_us=i + 1)
        frame = await track.recv()
        expected = captured._to_av().reformat(format="yuv420p")
        assert (frame.width, frame.height) == (width, height)
        for got, want in zip(frame.planes, expected.planes, strict=True):
            assert bytes(got) == bytes(want)


async def test_large_frames_are_converted() -> None:
    feed = VideoFrameFeed()
    feed.push(rgba_frame(1280, 720), 1)
    frame = await VideoFrameTrack(feed).recv()
    assert (frame.format.name, frame.width, frame.height) == ("yuv420p", 1280, 720)


async def test_raw_source_through_aiortc_vp8() -> None:
    """VideoSource -> its track -> aiortc's VP8 encoder/packetizer -> depayload -> decoder."""
    source = VideoSource(160, 120)
    track = source._media_track()
    encoder = Vp8Encoder()
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
    decoder = get_decoder(codec)
    decoded: list[av.VideoFrame] = []
    for i in range(3):
        source.capture_frame(rgba_frame(160, 120), timestamp_us=(i + 1) * 33_333)
        frame = await track.recv()
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(depayload(codec, p) for p in payloads)
        decoded += decoder.decode(JitterFrame(data, timestamp))  # type: ignore[arg-type]
    assert len(decoded) == 3
    assert (decoded[-1].width, decoded[-1].height) == (160, 120)
    assert np.abs(mean_rgb(decoded[-1]) - RGBA[:3]).max() <= CODEC_TOLERANCE
    await source.aclose()


# -- pre-encoded --------------------------------------------------------------------------------


def encode_with_pyav(codec: str, count: int, width: int, height: int) -> Iterator[av.Packet[Any]]:
    """Packets from PyAV's own libvpx/libx264 encoders, as a pre-encoding producer makes them."""
    context = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.time_base = TIME_BASE
    context.framerate = fractions.Fraction(30, 1)
    if codec == "h264":
        context.profile = "Baseline"
        context.options = {"preset": "ultrafast", "tune": "zerolatency"}
    else:
        context.options = {"deadline": "realtime", "lag-in-frames": "0"}
    yuv = rgba_frame(width, height).convert(VideoBufferType.I420)
    for i in range(count):
        frame = yuv._to_av()
        frame.pts, frame.time_base = i * 3000, TIME_BASE
        yield from context.encode(frame)
    yield from context.encode(None)


PACKERS: dict[str, Callable[[], Vp8Encoder | H264Encoder]] = {
    "vp8": Vp8Encoder,
    "h264": H264Encoder,
}


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_pre_encoded_round_trip(codec: str) -> None:
    width, height = 320, 240
    source = EncodedVideoSource(codec, width, height)
    track = source._media_track()
    packets = list(encode_with_pyav(codec, 5, width, height))
    assert packets[0].is_keyframe
    for packet in packets:
        assert packet.pts is not None  # the encoder stamps every packet
        source.capture_encoded(
            bytes(packet), timestamp_us=packet.pts * 100 // 9 + 1, keyframe=packet.is_keyframe
        )
    assert source.dropped_frames == 0

    params = RTCRtpCodecParameters(
        mimeType=f"video/{codec.upper()}", clockRate=90_000, payloadType=96
    )
    packer, decoder = PACKERS[codec](), get_decoder(params)
    decoded: list[av.VideoFrame] = []
    timestamps: list[int] = []
    for original in packets:
        packet = await track.recv()
        assert isinstance(packet, av.Packet)
        assert packet.time_base == TIME_BASE
        assert packet.is_keyframe == original.is_keyframe
        assert bytes(packet) == bytes(original)
        payloads, timestamp = packer.pack(packet)
        assert payloads
        assert all(len(p) <= 1300 for p in payloads)
        timestamps.append(timestamp)
        data = b"".join(depayload(params, p) for p in payloads)
        decoded += decoder.decode(JitterFrame(data, timestamp))  # type: ignore[arg-type]
    assert timestamps == sorted(set(timestamps))
    assert timestamps[1] - timestamps[0] == 3000
    assert len(decoded) == len(packets)
    for frame in decoded:
        assert (frame.width, frame.height) == (width, height)
        assert np.abs(mean_rgb(frame) - RGBA[:3]).max() <= CODEC_TOLERANCE
    await source.aclose()


def test_pyav_h264_is_annex_b() -> None:
    first = next(encode_with_pyav("h264", 1, 64, 64))
    assert bytes(first)[:4] == b"\x00\x00\x00\x01"
    nal_types = {nal[0] & 0x1F for nal in H264Encoder._split_bitstream(bytes(first))}
    assert {5, 7, 8} <= nal_types  # IDR with SPS and PPS in band


def test_encoded_feed_waits_for_a_keyframe() -> None:
    feed = EncodedVideoFeed()
    feed.push(b"delta", timestamp_us=1, keyframe=False)
    assert (len(feed), feed.dropped, feed.waiting_for_keyframe) == (0, 1, True)
    feed.push(b"key", timestamp_us=2, keyframe=True)
    feed.push(b"delta", timestamp_us=3, keyframe=False)
    assert (len(feed), feed.dropped, feed.waiting_for_keyframe) == (2, 1, False)


def test_encoded_feed_overflow_drops_the_chain_and_asks_for_a_keyframe() -> None:
    requests: list[None] = []
    feed = EncodedVideoFeed(max_pending=3)
    feed.on_keyframe_request = lambda: requests.append(None)
    feed.push(b"k", timestamp_us=1, keyframe=True)
    feed.push(b"d", timestamp_us=2, keyframe=False)
    feed.push(b"d", timestamp_us=3, keyframe=False)
    feed.push(b"d", timestamp_us=4, keyframe=False)  # overflow: all four go
    assert (len(feed), feed.dropped, feed.keyframe_requests, len(requests)) == (0, 4, 1, 1)
    feed.push(b"d", timestamp_us=5, keyframe=False)  # still waiting
    assert (len(feed), feed.dropped) == (0, 5)
    for t in range(6, 9):
        feed.push(b"k" if t == 6 else b"d", timestamp_us=t, keyframe=t == 6)
    feed.push(b"k", timestamp_us=9, keyframe=True)  # a keyframe overflowing replaces the rest
    assert (len(feed), feed.dropped, feed.keyframe_requests) == (1, 8, 1)


def test_require_keyframe() -> None:
    feed = EncodedVideoFeed()
    feed.push(b"k", timestamp_us=1, keyframe=True)
    feed.require_keyframe()  # already starts at a keyframe: nothing to do
    assert (len(feed), feed.keyframe_requests) == (1, 0)
    feed.pop()
    feed.push(b"d", timestamp_us=2, keyframe=False)
    feed.require_keyframe()
    assert (len(feed), feed.dropped, feed.keyframe_requests) == (0, 1, 1)
    assert feed.waiting_for_keyframe


def test_keyframe_callback_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    feed = EncodedVideoFeed()

    def broken() -> None:
        raise RuntimeError("boom")

    feed.on_keyframe_request = broken
    with caplog.at_level(logging.ERROR, logger="lkproto.media"):
        feed.request_keyframe()
    assert feed.keyframe_requests == 1
    assert "on_keyframe_request" in caplog.text


class _Transport:
    state = "new"


@pytest.mark.parametrize("fmt", [RTCP_PSFB_PLI, RTCP_PSFB_FIR])
async def test_pli_and_fir_reach_the_producer(fmt: int) -> None:
    """aiortc's own RTCP handling raises the flag the bound track polls."""
    feed = EncodedVideoFeed()
    requested = asyncio.Event()
    feed.on_keyframe_request = requested.set
    track = EncodedVideoTrack(feed)
    sender = RTCRtpSender(track, _Transport())  # type: ignore[arg-type]
    track.bind_sender(sender)
    assert not track.poll_keyframe_request()
    pending = asyncio.ensure_future(track.recv())  # idle: polls while waiting
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    await asyncio.wait_for(requested.wait(), scaled(5))
    assert feed.keyframe_requests == 1
    assert not track.poll_keyframe_request()  # the flag was cleared
    feed.push(b"k", timestamp_us=1, keyframe=True)
    packet = await asyncio.wait_for(pending, scaled(5))
    assert packet.is_keyframe
    track.stop()


async def test_unbound_or_unknown_sender_is_harmless(caplog: pytest.LogCaptureFixture) -> None:
    track = EncodedVideoTrack(EncodedVideoFeed())
    assert not track.poll_keyframe_request()
    track.bind_sender(object())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="lkproto.media"):
        assert not track.poll_keyframe_request()
        assert not track.poll_keyframe_request()
    assert caplog.text.count("keyframe flag") == 1


async def test_encoded_track_stop_and_close() -> None:
    feed = EncodedVideoFeed()
    track = EncodedVideoTrack(feed)
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, scaled(5))
    other = EncodedVideoTrack(feed)
    pending = asyncio.ensure_future(other.recv())
    await asyncio.sleep(0)
    feed.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, scaled(5))


async def test_install_video_encoder_presets_the_bitrate() -> None:
    """``VideoEncoding.max_bitrate`` reaches aiortc's encoder (clamped to its range)."""
    import aiortc
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.codecs.vpx import Vp8Encoder

    from lkproto.asyncio._seam import current_encoder
    from lkproto.asyncio.video import install_video_encoder
    from lkproto.errors import LocalProtocolError

    pc = aiortc.RTCPeerConnection()
    try:
        vp8 = pc.addTransceiver("video", direction="sendonly").sender
        install_video_encoder(vp8, mime_type="video/VP8", bitrate=1_000_000)
        encoder = current_encoder(vp8)
        assert isinstance(encoder, Vp8Encoder)
        assert encoder.target_bitrate == 1_000_000
        h264 = pc.addTransceiver("video", direction="sendonly").sender
        install_video_encoder(h264, mime_type="video/H264", bitrate=10_000_000)
        encoder = current_encoder(h264)
        assert isinstance(encoder, H264Encoder)
        assert encoder.target_bitrate == 3_000_000  # aiortc's H.264 ceiling
        with pytest.raises(LocalProtocolError):
            install_video_encoder(vp8, mime_type="video/VP8", bitrate=500_000)
        audio = pc.addTransceiver("audio", direction="sendonly").sender
        with pytest.raises(ValueError, match="video sender"):
            install_video_encoder(audio, mime_type="video/VP8", bitrate=500_000)
    finally:
        await pc.close()
