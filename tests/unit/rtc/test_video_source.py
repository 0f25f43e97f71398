"""VideoSource and EncodedVideoSource: official shape, validation, drop rules, their tracks."""

from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from lkproto.errors import LocalProtocolError
from lkproto.rtc.video_frame import VideoBufferType, VideoFrame, VideoRotation
from lkproto.rtc.video_source import EncodedVideoSource, VideoSource
from tests.conftest import scaled

IDR = b"\x00\x00\x00\x01\x65\x88"
DELTA = b"\x00\x00\x01\x41\x9a"


def rgba_frame(width: int, height: int, red: int = 200) -> VideoFrame:
    return VideoFrame(
        width, height, VideoBufferType.RGBA, bytes((red, 30, 90, 255)) * (width * height)
    )


def red_of(frame: object) -> int:
    rgba = VideoFrame._from_av(frame, VideoBufferType.RGBA)  # type: ignore[arg-type]
    return int(np.frombuffer(rgba.data, np.uint8)[0::4].mean().round())


def test_signature_matches_official() -> None:
    official = pytest.importorskip("livekit.rtc.video_source")
    ours, theirs = inspect.signature(VideoSource), inspect.signature(official.VideoSource)
    assert list(ours.parameters) == list(theirs.parameters)
    assert ours.parameters["is_screencast"].default is False
    capture = inspect.signature(VideoSource.capture_frame).parameters
    official_capture = inspect.signature(official.VideoSource.capture_frame).parameters
    assert list(capture) == list(official_capture)
    assert capture["timestamp_us"].default == 0
    assert capture["rotation"].default == VideoRotation.VIDEO_ROTATION_0


def test_properties() -> None:
    source = VideoSource(640, 480, is_screencast=True)
    assert (source.width, source.height, source.is_screencast) == (640, 480, True)
    assert (source.captured_frames, source.dropped_frames) == (0, 0)


@pytest.mark.parametrize(("width", "height"), [(0, 480), (640, -1)])
def test_bad_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="width and height"):
        VideoSource(width, height)
    with pytest.raises(ValueError, match="width and height"):
        EncodedVideoSource("vp8", width, height)


def test_capture_validation() -> None:
    source = VideoSource(4, 4)
    with pytest.raises(TypeError, match="VideoFrame"):
        source.capture_frame(b"\x00" * 64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timestamp_us"):
        source.capture_frame(rgba_frame(4, 4), timestamp_us=-1)
    with pytest.raises(ValueError, match="rotation"):
        source.capture_frame(rgba_frame(4, 4), rotation=7)
    source.capture_frame(rgba_frame(4, 4), rotation=VideoRotation.VIDEO_ROTATION_90, metadata=None)
    assert source.captured_frames == 1


async def test_newest_frame_wins() -> None:
    source = VideoSource(8, 8)
    for red in (10, 60, 110, 160, 210):
        source.capture_frame(rgba_frame(8, 8, red))
    assert (source.captured_frames, source.dropped_frames) == (5, 3)
    track = source._media_track()
    first, second = await track.recv(), await track.recv()
    assert abs(red_of(first) - 160) <= 3
    assert abs(red_of(second) - 210) <= 3


async def test_mutable_buffers_are_copied() -> None:
    source = VideoSource(8, 8)
    buffer = bytearray(rgba_frame(8, 8, 200).data)
    source.capture_frame(VideoFrame(8, 8, VideoBufferType.RGBA, buffer))
    buffer[:] = bytes(len(buffer))  # the caller reuses its buffer at once
    assert abs(red_of(await source._media_track().recv()) - 200) <= 3


async def test_other_sizes_pass_through() -> None:
    source = VideoSource(8, 8)
    source.capture_frame(rgba_frame(16, 6))
    frame = await source._media_track().recv()
    assert (frame.width, frame.height) == (16, 6)
    assert (source.width, source.height) == (8, 8)


async def test_media_track_is_created_once_while_live() -> None:
    source = VideoSource(8, 8)
    track = source._media_track()
    assert isinstance(track, MediaStreamTrack)
    assert track.kind == "video"
    assert source._media_track() is track
    track.stop()  # e.g. aiortc's sender stopped on unpublish
    replacement = source._media_track()
    assert replacement is not track
    source.capture_frame(rgba_frame(8, 8), timestamp_us=1_000_000)
    assert (await replacement.recv()).pts == 90_000


async def test_aclose_ends_the_track_and_refuses_captures() -> None:
    source = VideoSource(8, 8)
    track = source._media_track()
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    await source.aclose()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, scaled(5))
    with pytest.raises(LocalProtocolError):
        source.capture_frame(rgba_frame(8, 8))
    with pytest.raises(LocalProtocolError):
        source._media_track()
    await source.aclose()  # idempotent


# -- EncodedVideoSource -------------------------------------------------------------------------


def test_encoded_validation() -> None:
    with pytest.raises(ValueError, match="unsupported codec"):
        EncodedVideoSource("av1", 640, 480)
    source = EncodedVideoSource("H264", 640, 480)
    assert (source.codec, source.width, source.height) == ("h264", 640, 480)
    with pytest.raises(ValueError, match="empty"):
        source.capture_encoded(b"", timestamp_us=1, keyframe=True)
    with pytest.raises(ValueError, match="Annex-B"):
        source.capture_encoded(b"\x00\x00\x00\x05\x65\x88", timestamp_us=1, keyframe=True)
    with pytest.raises(ValueError, match="timestamp_us"):
        source.capture_encoded(IDR, timestamp_us=-5, keyframe=True)
    source.capture_encoded(IDR, timestamp_us=1, keyframe=True)
    source.capture_encoded(DELTA, timestamp_us=2, keyframe=False)  # 3-byte start code
    assert (source.captured_frames, source.dropped_frames) == (2, 0)
    assert EncodedVideoSource("vp8", 2, 2).codec == "vp8"


async def test_encoded_track_starts_at_a_keyframe() -> None:
    source = EncodedVideoSource("h264", 64, 64)
    requests: list[int] = []
    source.on_keyframe_request = lambda: requests.append(source.keyframe_requests)
    assert source.on_keyframe_request is not None
    source.capture_encoded(DELTA, timestamp_us=1, keyframe=False)  # no keyframe yet: dropped
    track = source._media_track()  # nothing usable pending: the producer is asked
    assert requests == [1]
    assert source._media_track() is track
    source.capture_encoded(IDR, timestamp_us=2_000_000, keyframe=True)
    source.capture_encoded(DELTA, timestamp_us=2_033_333, keyframe=False)
    key, delta = await track.recv(), await track.recv()
    assert (bytes(key), key.is_keyframe, key.pts) == (IDR, True, 180_000)
    assert (bytes(delta), delta.is_keyframe, delta.pts) == (DELTA, False, 182_999)
    assert source.dropped_frames == 1
    # A republish (new track) restarts at a keyframe too.
    track.stop()
    source.capture_encoded(DELTA, timestamp_us=2_066_666, keyframe=False)
    assert source._media_track() is not track
    assert requests == [1, 2]
    assert source.dropped_frames == 2


async def test_encoded_aclose() -> None:
    source = EncodedVideoSource("vp8", 64, 64)
    track = source._media_track()
    await source.aclose()
    with pytest.raises(MediaStreamError):
        await track.recv()
    with pytest.raises(LocalProtocolError):
        source.capture_encoded(b"\x10", timestamp_us=1, keyframe=True)
    with pytest.raises(LocalProtocolError):
        source._media_track()
