"""VideoFrame: official shape and values, validation, plane access, conversions through PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest

from lkproto.rtc.video_frame import (
    VideoBufferType,
    VideoFrame,
    VideoRotation,
    buffer_size,
    plane_layout,
)

RGBA = (200, 30, 90, 255)
# BT.601 limited range round trips (RGB -> YUV -> RGB) move a channel by a few steps.
TOLERANCE = 3

ALL_TYPES = list(VideoBufferType)
RGB_TYPES = [
    VideoBufferType.RGBA,
    VideoBufferType.BGRA,
    VideoBufferType.ARGB,
    VideoBufferType.ABGR,
    VideoBufferType.RGB24,
]
YUV_TYPES = [t for t in ALL_TYPES if t not in RGB_TYPES]
CHANNEL_ORDER = {
    VideoBufferType.RGBA: "RGBA",
    VideoBufferType.BGRA: "BGRA",
    VideoBufferType.ARGB: "ARGB",
    VideoBufferType.ABGR: "ABGR",
    VideoBufferType.RGB24: "RGB",
}


def solid(type: VideoBufferType, width: int, height: int, rgba: tuple[int, ...] = RGBA) -> bytes:
    pixel = bytes(rgba[("RGBA").index(c)] for c in CHANNEL_ORDER[type])
    return pixel * (width * height)


def rgba_pixels(frame: VideoFrame) -> np.ndarray:
    assert frame.type is VideoBufferType.RGBA
    return np.frombuffer(frame.data, np.uint8)[: frame.width * frame.height * 4].reshape(
        frame.height, frame.width, 4
    )


def gradient_rgba(width: int, height: int) -> bytes:
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack(
        [(xs * 7) % 256, (ys * 5) % 256, ((xs + ys) * 3) % 256, np.full_like(xs, 255)], axis=-1
    )
    return image.astype(np.uint8).tobytes()


# -- official shape -----------------------------------------------------------------------------


def test_enum_values_match_official() -> None:
    official = pytest.importorskip("livekit.rtc._proto.video_frame_pb2")
    assert {t.name: t.value for t in VideoBufferType} == dict(official.VideoBufferType.items())
    assert {r.name: r.value for r in VideoRotation} == dict(official.VideoRotation.items())


@pytest.mark.parametrize("type", ALL_TYPES)
@pytest.mark.parametrize(("width", "height"), [(4, 2), (5, 3), (641, 481)])
def test_buffer_size_and_planes_match_official(
    type: VideoBufferType, width: int, height: int
) -> None:
    official = pytest.importorskip("livekit.rtc.video_frame")
    assert buffer_size(type, width, height) == official._get_plane_length(type, width, height)
    infos = official._get_plane_infos(0, type, width, height)
    planes = [rb * rows for rb, rows in plane_layout(type, width, height)]
    if infos:
        assert planes == [i.size for i in infos]
    else:
        # Official get_plane answers None for packed RGB; lkproto gives its single plane.
        assert planes == [buffer_size(type, width, height)]


def test_properties_and_repr() -> None:
    data = bytearray(solid(VideoBufferType.RGBA, 4, 2))
    frame = VideoFrame(4, 2, VideoBufferType.RGBA, data)
    assert (frame.width, frame.height, frame.type) == (4, 2, VideoBufferType.RGBA)
    assert isinstance(frame.data, memoryview)
    assert repr(frame) == "rtc.VideoFrame(width=4, height=2, type=RGBA)"
    data[0] = 1  # data is shared, not copied
    assert frame.data[0] == 1


def test_int_type_is_accepted() -> None:
    frame = VideoFrame(2, 2, 5, bytes(6))
    assert frame.type is VideoBufferType.I420


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(0, 2), (2, 0), (-1, 2)])
def test_bad_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="width and height"):
        VideoFrame(width, height, VideoBufferType.RGBA, bytes(64))


def test_unknown_type() -> None:
    with pytest.raises(ValueError, match="unsupported video buffer type"):
        VideoFrame(2, 2, 42, bytes(64))


@pytest.mark.parametrize("type", ALL_TYPES)
def test_short_data(type: VideoBufferType) -> None:
    needed = buffer_size(type, 5, 3)
    VideoFrame(5, 3, type, bytes(needed))
    VideoFrame(5, 3, type, bytes(needed + 7))  # extra bytes are ignored
    with pytest.raises(ValueError, match=f"data length must be >= {needed}"):
        VideoFrame(5, 3, type, bytes(needed - 1))


def test_data_types() -> None:
    with pytest.raises(TypeError, match="expected bytes"):
        VideoFrame(2, 2, VideoBufferType.RGBA, [0] * 16)  # type: ignore[arg-type]
    strided = memoryview(bytes(64))[::2]
    with pytest.raises(ValueError, match="contiguous"):
        VideoFrame(2, 2, VideoBufferType.RGBA, strided)
    # A multi-dimensional, non-byte view (e.g. of a numpy image) is read as bytes.
    image = np.zeros((2, 2, 4), np.uint8)
    frame = VideoFrame(2, 2, VideoBufferType.RGBA, image.data)
    assert frame.data.nbytes == 16
    assert frame.data.format == "B"
    samples = np.zeros(6, np.uint16)
    assert VideoFrame(2, 2, VideoBufferType.I010, samples.data).data.nbytes == 12


# -- planes -------------------------------------------------------------------------------------


def test_get_plane_i420() -> None:
    width, height = 5, 3  # odd: chroma rounds up to 3x2
    y, u, v = b"\x01" * 15, b"\x02" * 6, b"\x03" * 6
    frame = VideoFrame(width, height, VideoBufferType.I420, y + u + v)
    assert [bytes(p) for p in map(frame.get_plane, range(3))] == [y, u, v]  # type: ignore[arg-type]
    assert frame.get_plane(3) is None
    assert frame.get_plane(-1) is None


def test_get_plane_nv12_and_rgba() -> None:
    nv12 = VideoFrame(4, 2, VideoBufferType.NV12, b"\x10" * 8 + b"\x80\x90" * 2)
    assert bytes(nv12.get_plane(1) or b"") == b"\x80\x90\x80\x90"
    assert nv12.get_plane(2) is None
    rgba = VideoFrame(2, 1, VideoBufferType.RGBA, bytes(range(8)))
    assert bytes(rgba.get_plane(0) or b"") == bytes(range(8))
    assert rgba.get_plane(1) is None


# -- conversions --------------------------------------------------------------------------------


@pytest.mark.parametrize("src", RGB_TYPES)
@pytest.mark.parametrize("dst", RGB_TYPES)
def test_rgb_reorderings_are_exact(src: VideoBufferType, dst: VideoBufferType) -> None:
    width, height = 7, 5
    image = np.frombuffer(gradient_rgba(width, height), np.uint8).reshape(height, width, 4)
    channels = ["RGBA".index(c) for c in CHANNEL_ORDER[src]]
    frame = VideoFrame(width, height, src, image[..., channels].tobytes())
    converted = frame.convert(dst)
    assert converted.type is dst
    out_channels = ["RGBA".index(c) for c in CHANNEL_ORDER[dst]]
    expected = image[..., out_channels].tobytes()
    assert bytes(converted.data) == expected


@pytest.mark.parametrize("via", YUV_TYPES)
@pytest.mark.parametrize(("width", "height"), [(640, 480), (33, 17)])
def test_solid_colour_through_yuv_and_back(via: VideoBufferType, width: int, height: int) -> None:
    frame = VideoFrame(
        width, height, VideoBufferType.RGBA, solid(VideoBufferType.RGBA, width, height)
    )
    middle = frame.convert(via)
    assert (middle.type, middle.width, middle.height) == (via, width, height)
    assert len(middle.data) == buffer_size(via, width, height)
    back = middle.convert(VideoBufferType.RGBA)
    pixels = rgba_pixels(back).astype(int)
    assert np.abs(pixels[..., :3] - np.array(RGBA[:3])).max() <= TOLERANCE
    assert (pixels[..., 3] == 255).all()


def test_i420_of_solid_colour_is_bt601_limited_range() -> None:
    frame = VideoFrame(4, 4, VideoBufferType.RGBA, solid(VideoBufferType.RGBA, 4, 4)).convert(
        VideoBufferType.I420
    )
    r, g, b = RGBA[:3]
    expected_y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    expected_u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    expected_v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    planes = [np.frombuffer(frame.get_plane(i) or b"", np.uint8) for i in range(3)]
    for plane, expected in zip(planes, (expected_y, expected_u, expected_v), strict=True):
        assert np.abs(plane.astype(float) - expected).max() <= 1.5


def test_flip_y() -> None:
    width, height = 6, 5
    data = gradient_rgba(width, height)
    frame = VideoFrame(width, height, VideoBufferType.RGBA, data)
    flipped = frame.convert(VideoBufferType.RGBA, flip_y=True)
    assert (rgba_pixels(flipped) == rgba_pixels(frame)[::-1]).all()
    # Flip while converting: each plane is flipped on its own.
    i420 = frame.convert(VideoBufferType.I420)
    flipped_i420 = frame.convert(VideoBufferType.I420, flip_y=True)
    y = np.frombuffer(i420.get_plane(0) or b"", np.uint8).reshape(height, width)
    fy = np.frombuffer(flipped_i420.get_plane(0) or b"", np.uint8).reshape(height, width)
    assert (fy == y[::-1]).all()


def test_same_type_convert_is_a_copy() -> None:
    data = bytearray(solid(VideoBufferType.RGBA, 2, 2))
    frame = VideoFrame(2, 2, VideoBufferType.RGBA, data)
    copy = frame.convert(VideoBufferType.RGBA)
    data[0] = 0
    assert copy.data[0] == RGBA[0]


def test_convert_rejects_unknown_type() -> None:
    frame = VideoFrame(2, 2, VideoBufferType.RGBA, bytes(16))
    with pytest.raises(ValueError, match="unsupported video buffer type"):
        frame.convert(99)


# -- PyAV helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize("type", ALL_TYPES)
def test_to_av_and_back_is_lossless(type: VideoBufferType) -> None:
    width, height = 37, 11  # odd sizes: PyAV pads rows, we must not copy the padding
    rng = np.random.default_rng(int(type))
    data = rng.integers(0, 256, buffer_size(type, width, height), dtype=np.uint8)
    if type is VideoBufferType.I010:
        data = (data.view(np.uint16) & 0x3FF).view(np.uint8)  # 10-bit samples
    frame = VideoFrame(width, height, type, data.tobytes())
    converted = frame._to_av()
    assert (converted.width, converted.height) == (width, height)
    assert any(
        p.line_size != rb
        for p, (rb, _) in zip(converted.planes, plane_layout(type, width, height), strict=True)
    )
    back = VideoFrame._from_av(converted, type)
    assert bytes(back.data) == data.tobytes()


def test_from_av_defaults_to_i420_and_reformats() -> None:
    source = av.VideoFrame(16, 8, "rgba")
    memoryview(source.planes[0])[:] = solid(VideoBufferType.RGBA, 16, 8)
    frame = VideoFrame._from_av(source)
    assert frame.type is VideoBufferType.I420
    assert (frame.width, frame.height) == (16, 8)
    back = rgba_pixels(frame.convert(VideoBufferType.RGBA)).astype(int)
    assert np.abs(back[..., :3] - np.array(RGBA[:3])).max() <= TOLERANCE


def test_from_av_full_range_decoder_output() -> None:
    full = av.VideoFrame(8, 8, "yuvj420p")
    for plane, value in zip(full.planes, (255, 128, 128), strict=True):
        memoryview(plane)[:] = bytes([value]) * plane.buffer_size
    frame = VideoFrame._from_av(full, VideoBufferType.I420)
    assert set(bytes(frame.get_plane(0) or b"")) == {235}  # full-range white -> limited-range white


def test_an_av_older_than_17_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # docs/reference/where-it-runs.md, note 2: av < 17 converts odd-sized frames wrongly.
    import av

    from lkproto.rtc import video_frame as vf

    monkeypatch.setattr(av, "__version__", "14.2.0")
    monkeypatch.setattr(vf, "_av_warning_due", vf._av_is_unreliable("14.2.0"))
    frame = av.VideoFrame(32, 16, "rgb24")
    with caplog.at_level("WARNING", logger="lkproto.media"):
        VideoFrame._from_av(frame)
        VideoFrame._from_av(frame)
    warnings = [r for r in caplog.records if "av>=17" in r.getMessage()]
    assert len(warnings) == 1
    assert "14.2.0" in warnings[0].getMessage()


def test_a_current_av_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import av

    from lkproto.rtc import video_frame as vf

    assert vf._av_is_unreliable("16.0.0")
    assert not vf._av_is_unreliable("17.0.0")
    assert not vf._av_is_unreliable("18.1.0")
    monkeypatch.setattr(vf, "_av_warning_due", vf._av_is_unreliable("18.1.0"))
    with caplog.at_level("WARNING", logger="lkproto.media"):
        VideoFrame._from_av(av.VideoFrame(32, 16, "rgb24"))
    assert not [r for r in caplog.records if "av>=17" in r.getMessage()]
