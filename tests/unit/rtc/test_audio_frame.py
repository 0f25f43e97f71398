"""AudioFrame: official-shape validation, buffer sharing, WAV export and the PyAV bridges."""

from __future__ import annotations

import io
import wave
from fractions import Fraction

import av
import numpy as np
import pytest

from lkproto.rtc.audio_frame import AudioFrame


def _ramp(num_channels: int, samples: int) -> np.ndarray:
    values = np.arange(num_channels * samples, dtype=np.int64) * 37 % 65536 - 32768
    return values.astype(np.int16)


def test_create_is_silence_with_the_requested_shape() -> None:
    frame = AudioFrame.create(16000, 2, 160)
    assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (16000, 2, 160)
    assert frame.data.format == "h"
    assert len(frame.data) == 320
    assert not any(frame.data)
    assert frame.duration == pytest.approx(0.01)
    assert frame.userdata == {}
    assert repr(frame) == (
        "rtc.AudioFrame(sample_rate=16000, num_channels=2, samples_per_channel=160, duration=0.010)"
    )


def test_data_is_writable_even_from_bytes() -> None:
    source = bytes(8)
    frame = AudioFrame(source, 8000, 1, 4)
    frame.data[1] = -2
    assert frame.data.tolist() == [0, -2, 0, 0]
    assert source == bytes(8)  # bytes are copied, never written through


def test_bytearray_and_writable_views_are_shared_not_copied() -> None:
    backing = bytearray(8)
    frame = AudioFrame(backing, 8000, 2, 2)
    frame.data[3] = 7
    assert np.frombuffer(backing, dtype=np.int16).tolist() == [0, 0, 0, 7]

    samples = np.zeros(4, dtype=np.int16)
    view_frame = AudioFrame(samples.data, 8000, 1, 4)
    view_frame.data[0] = 123
    assert samples[0] == 123


def test_read_only_view_is_copied() -> None:
    view = memoryview(bytes(4)).toreadonly()
    frame = AudioFrame(view, 8000, 1, 2)
    frame.data[0] = 1
    assert frame.data.tolist() == [1, 0]


def test_extra_bytes_are_ignored_like_official() -> None:
    frame = AudioFrame(bytes(20), 8000, 1, 4)
    assert len(frame.data) == 4
    assert len(frame.to_wav_bytes()) == 44 + 8


@pytest.mark.parametrize(
    ("data", "channels", "samples", "message"),
    [
        (bytes(6), 2, 2, "need 8"),
        (bytes(9), 1, 4, "multiple of 2"),
    ],
)
def test_bad_lengths_raise_value_error(
    data: bytes, channels: int, samples: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AudioFrame(data, 8000, channels, samples)


def test_non_contiguous_view_and_wrong_types_are_rejected() -> None:
    strided = np.zeros(8, dtype=np.int16).data[::2]
    with pytest.raises(ValueError, match="contiguous"):
        AudioFrame(strided, 8000, 1, 4)
    with pytest.raises(TypeError, match="list"):
        AudioFrame([0, 0], 8000, 1, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rate", "channels", "samples"), [(0, 1, 1), (8000, 0, 1), (8000, 1, -1)])
def test_bad_shape_raises_value_error(rate: int, channels: int, samples: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        AudioFrame(bytes(4), rate, channels, samples)


def test_userdata_is_kept() -> None:
    frame = AudioFrame(bytes(2), 8000, 1, 1, userdata={"id": 3})
    frame.userdata["more"] = True
    assert frame.userdata == {"id": 3, "more": True}


def test_to_wav_bytes_is_a_valid_wav() -> None:
    pcm = _ramp(2, 100)
    frame = AudioFrame(pcm.tobytes(), 22050, 2, 100)
    with wave.open(io.BytesIO(frame.to_wav_bytes()), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 22050)
        assert wav.getnframes() == 100
        assert wav.readframes(100) == pcm.tobytes()


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_av_round_trip_is_exact(channels: int) -> None:
    pcm = _ramp(channels, 441)
    frame = AudioFrame(pcm.tobytes(), 44100, channels, 441)
    converted = frame._to_av(pts=882)
    assert converted.format.name == "s16"
    assert converted.layout.nb_channels == channels
    assert (converted.samples, converted.sample_rate) == (441, 44100)
    assert converted.pts == 882
    assert converted.time_base == Fraction(1, 44100)

    back = AudioFrame._from_av(converted)
    assert (back.sample_rate, back.num_channels, back.samples_per_channel) == (44100, channels, 441)
    assert bytes(back.data) == pcm.tobytes()


def test_to_av_without_pts_and_empty_frame() -> None:
    assert AudioFrame.create(8000, 1, 10)._to_av().pts is None
    empty = AudioFrame.create(8000, 1, 0)._to_av()
    assert empty.samples == 0


@pytest.mark.parametrize("fmt", ["fltp", "flt", "s16p", "s32"])
def test_from_av_converts_any_format_to_interleaved_int16(fmt: str) -> None:
    left = np.full(480, 0.5)
    right = np.full(480, -0.25)
    planar = np.stack([left, right])
    if fmt in ("fltp", "flt"):
        values = planar.astype(np.float32)
    elif fmt == "s16p":
        values = (planar * 32768).astype(np.int16)
    else:
        values = (planar * 2**31).astype(np.int32)
    if not fmt.endswith("p"):
        values = values.T.reshape(1, -1)
    source = av.AudioFrame.from_ndarray(np.ascontiguousarray(values), format=fmt, layout="stereo")
    source.sample_rate = 48000

    frame = AudioFrame._from_av(source)

    assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (48000, 2, 480)
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, 2)
    assert np.all(np.abs(samples[:, 0] - 16384) <= 1)
    assert np.all(np.abs(samples[:, 1] + 8192) <= 1)
