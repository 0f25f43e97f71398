"""VideoStream over a real FrameFanout fed by a fake track: formats, timestamps, end, drops."""

from __future__ import annotations

import asyncio
import fractions
import inspect
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from lkproto.asyncio.fanout import FrameFanout
from lkproto.errors import UnsupportedFeatureError
from lkproto.rtc.track import Track
from lkproto.rtc.video_frame import VideoBufferType, VideoFrame, VideoRotation
from lkproto.rtc.video_stream import DEFAULT_VIDEO_STREAM_CAPACITY, VideoFrameEvent, VideoStream
from tests.conftest import scaled

RGBA = (200, 30, 90, 255)
TIME_BASE = fractions.Fraction(1, 90_000)


class FakeVideoSource:
    """What a RemoteStreamTrack looks like to the fanout: ``kind`` and ``async recv()``."""

    def __init__(self, kind: str = "video") -> None:
        self.kind = kind
        self._frames: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue()
        self._idle = asyncio.Event()

    def put(self, frame: av.VideoFrame | None) -> None:
        self._idle.clear()
        self._frames.put_nowait(frame)

    async def drained(self) -> None:
        """Return once the fanout has handed out every frame put so far."""
        await asyncio.wait_for(self._idle.wait(), scaled(5))

    async def recv(self) -> av.VideoFrame:
        if self._frames.empty():
            self._idle.set()  # the fanout is back for more: everything before was delivered
        frame = await self._frames.get()
        if frame is None:
            raise MediaStreamError
        return frame


def decoded_frame(pts: int | None = 0, width: int = 32, height: int = 24) -> av.VideoFrame:
    """A yuv420p frame like aiortc's decoders produce (pts = RTP timestamp, 1/90000)."""
    rgba = VideoFrame(width, height, VideoBufferType.RGBA, bytes(RGBA) * (width * height))
    frame = rgba.convert(VideoBufferType.I420)._to_av()
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


@pytest.fixture
async def fanout() -> AsyncIterator[FrameFanout]:
    fanout = FrameFanout(FakeVideoSource())
    yield fanout
    await fanout.aclose()


def source_of(fanout: FrameFanout) -> FakeVideoSource:
    assert isinstance(fanout.source, FakeVideoSource)
    return fanout.source


def fake_track(**attributes: object) -> Track:
    """A stand-in with only the attributes VideoStream reads from a subscribed remote track."""
    return cast(Track, SimpleNamespace(**attributes))


def track_of(fanout: FrameFanout) -> Track:
    return fake_track(kind="video", _fanout=fanout)


async def next_event(stream: VideoStream) -> VideoFrameEvent:
    return await asyncio.wait_for(anext(stream), scaled(5))


def test_signature_matches_official() -> None:
    official = pytest.importorskip("livekit.rtc.video_stream")
    ours = inspect.signature(VideoStream).parameters
    theirs = inspect.signature(official.VideoStream).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    from_track = inspect.signature(VideoStream.from_track).parameters
    assert list(from_track) == list(inspect.signature(official.VideoStream.from_track).parameters)
    fields = list(inspect.signature(VideoFrameEvent).parameters)
    assert fields == list(inspect.signature(official.VideoFrameEvent).parameters)


async def test_default_format_is_i420(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout))
    source_of(fanout).put(decoded_frame(pts=90_000))
    event = await next_event(stream)
    assert event.frame.type is VideoBufferType.I420
    assert (event.frame.width, event.frame.height) == (32, 24)
    assert event.timestamp_us == 1_000_000
    assert event.rotation is VideoRotation.VIDEO_ROTATION_0
    assert event.metadata is None
    await stream.aclose()


async def test_rgba_conversion(fanout: FrameFanout) -> None:
    stream = VideoStream.from_track(track=track_of(fanout), format=VideoBufferType.RGBA)
    source_of(fanout).put(decoded_frame(pts=45_000))
    event = await next_event(stream)
    assert event.frame.type is VideoBufferType.RGBA
    pixels = np.frombuffer(event.frame.data, np.uint8).reshape(24, 32, 4).astype(int)
    assert np.abs(pixels[..., :3] - np.array(RGBA[:3])).max() <= 3
    assert event.timestamp_us == 500_000
    await stream.aclose()


async def test_large_frames_convert_off_the_loop(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout), format=VideoBufferType.BGRA)
    source_of(fanout).put(decoded_frame(pts=1, width=1280, height=720))
    event = await next_event(stream)
    assert (event.frame.type, event.frame.width, event.frame.height) == (
        VideoBufferType.BGRA,
        1280,
        720,
    )
    await stream.aclose()


async def test_end_of_stream(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout))
    for pts in (3000, 6000):
        source_of(fanout).put(decoded_frame(pts=pts))
    source_of(fanout).put(None)  # the remote track ended

    async def collect() -> list[int]:
        return [event.timestamp_us async for event in stream]

    assert await asyncio.wait_for(collect(), scaled(5)) == [33_333, 66_666]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_aclose_ends_a_pending_read(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout))
    other = VideoStream(track_of(fanout))
    assert fanout.readers == 2
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, scaled(5))
    assert fanout.readers == 1
    await stream.aclose()  # idempotent
    # The other reader is unaffected.
    source_of(fanout).put(decoded_frame(pts=9000))
    assert (await next_event(other)).timestamp_us == 100_000
    await other.aclose()


async def test_slow_reader_drops_oldest(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout))
    big = VideoStream(track_of(fanout), capacity=4)
    for i in range(1, 6):
        source_of(fanout).put(decoded_frame(pts=i * 9000))
    await source_of(fanout).drained()
    assert fanout.received == 5
    assert stream.dropped_frames == 5 - DEFAULT_VIDEO_STREAM_CAPACITY
    assert big.dropped_frames == 1
    assert [(await next_event(stream)).timestamp_us for _ in range(2)] == [400_000, 500_000]
    await stream.aclose()
    await big.aclose()


async def test_rtp_timestamp_wrap_is_unfolded(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout))
    wrap = 1 << 32
    # A late frame from before the wrap (reordering) keeps its own side of the wrap.
    sent = [wrap - 3000, 0, wrap - 1500, 3000, 6000]
    expected = [wrap - 3000, wrap, wrap - 1500, wrap + 3000, wrap + 6000]
    received = []
    for pts in sent:
        source_of(fanout).put(decoded_frame(pts=pts))
        received.append((await next_event(stream)).timestamp_us)
    assert received == [pts * 1_000_000 // 90_000 for pts in expected]
    await stream.aclose()


async def test_frame_without_pts(fanout: FrameFanout) -> None:
    stream = VideoStream(track_of(fanout))
    source_of(fanout).put(decoded_frame(pts=None))
    assert (await next_event(stream)).timestamp_us == 0
    await stream.aclose()


async def test_validation(fanout: FrameFanout) -> None:
    with pytest.raises(ValueError, match="subscribed remote video track"):
        VideoStream(fake_track(kind="video"))
    with pytest.raises(ValueError, match="subscribed remote video track"):
        VideoStream(fake_track(_fanout=None))
    with pytest.raises(ValueError, match="capacity"):
        VideoStream(track_of(fanout), capacity=-1)
    with pytest.raises(ValueError, match="unsupported video buffer type"):
        VideoStream(track_of(fanout), format=77)
    with pytest.raises(TypeError, match="participant"):
        VideoStream(track_of(fanout), participant=object(), track_source=1)
    audio = FrameFanout(FakeVideoSource(kind="audio"))
    with pytest.raises(ValueError, match="audio"):
        VideoStream(fake_track(_fanout=audio))
    await audio.aclose()
    assert fanout.readers == 0


async def test_closed_fanout_gives_an_ended_stream(fanout: FrameFanout) -> None:
    await fanout.aclose()
    stream = VideoStream(track_of(fanout))
    with pytest.raises(StopAsyncIteration):
        await next_event(stream)


async def test_loop_is_honoured_as_the_running_loop_and_another_is_refused(
    fanout: FrameFanout,
) -> None:
    running = VideoStream(track_of(fanout), loop=asyncio.get_running_loop())
    await running.aclose()
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(UnsupportedFeatureError) as info:
            VideoStream(track_of(fanout), loop=other)
        assert info.value.feature == "VideoStream.loop"
    finally:
        other.close()
