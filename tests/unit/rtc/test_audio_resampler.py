"""AudioResampler (lkproto.rtc.audio_resampler) against the official libsoxr-backed one."""

from __future__ import annotations

import numpy as np
import pytest

from lkproto import rtc

official = pytest.importorskip("livekit.rtc")  # the official SDK (dev group)

__all__: list[str] = []

IN_RATE = 48_000
OUT_RATE = 16_000
TONE_HZ = 440.0


def _tone(seconds: float, channels: int) -> bytes:
    t = np.arange(int(IN_RATE * seconds)) / IN_RATE
    mono = (0.3 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2")
    return np.repeat(mono, channels).tobytes()


def _run(resampler: object, pcm: bytes, chunk: int) -> np.ndarray:
    out: list[bytes] = []
    for start in range(0, len(pcm), chunk):
        for frame in resampler.push(bytearray(pcm[start : start + chunk])):  # type: ignore[attr-defined]
            out.append(bytes(frame.data.cast("B")))
    for frame in resampler.flush():  # type: ignore[attr-defined]
        out.append(bytes(frame.data.cast("B")))
    return np.frombuffer(b"".join(out), dtype="<i2")


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("quality", list(rtc.AudioResamplerQuality))
def test_same_length_and_tone_as_the_official_resampler(
    channels: int, quality: rtc.AudioResamplerQuality
) -> None:
    pcm = _tone(1.0, channels)
    aligned = IN_RATE // 100 * channels * 2
    theirs = _run(
        official.AudioResampler(
            IN_RATE,
            OUT_RATE,
            num_channels=channels,
            quality=official.AudioResamplerQuality(quality.value),
        ),
        pcm,
        aligned,
    )
    # 10 ms pushes, and pushes with an odd byte count, whose partial sample frame lkproto carries
    # to the next push (the official resampler needs whole samples).
    for chunk in (aligned, aligned + 3):
        ours = _run(
            rtc.AudioResampler(IN_RATE, OUT_RATE, num_channels=channels, quality=quality),
            pcm,
            chunk,
        )
        # libsoxr keeps some tail back even after flush; libswresample returns all of it.
        assert abs(len(ours) - len(theirs)) <= 32 * channels
        assert len(ours) == pytest.approx(OUT_RATE * channels, abs=8 * channels)
        left = ours[::channels]
        assert _peak_hz(left, OUT_RATE) == pytest.approx(TONE_HZ, abs=2.0)
        assert _peak_hz(theirs[::channels], OUT_RATE) == pytest.approx(TONE_HZ, abs=2.0)
        # The tone's level survives (RMS within 0.5 dB of the input's), past the filter start-up.
        rms = np.sqrt(np.mean(left[800:].astype(float) ** 2))
        assert 20 * np.log10(rms / (0.3 * 32767 / np.sqrt(2))) == pytest.approx(0.0, abs=0.5)
        if channels == 2:
            assert np.array_equal(ours[0::2], ours[1::2])


def test_frames_in_and_out() -> None:
    resampler = rtc.AudioResampler(IN_RATE, OUT_RATE, num_channels=2)
    frame = rtc.AudioFrame(_tone(0.02, 2), IN_RATE, 2, 960)
    out = resampler.push(frame) + resampler.flush()
    assert all((f.sample_rate, f.num_channels) == (OUT_RATE, 2) for f in out)
    assert sum(f.samples_per_channel for f in out) == pytest.approx(320, abs=8)


def test_refuses_mismatched_frames_and_bad_arguments() -> None:
    resampler = rtc.AudioResampler(IN_RATE, OUT_RATE)
    with pytest.raises(ValueError, match="1 channel"):
        resampler.push(rtc.AudioFrame(b"\0" * 8, IN_RATE, 2, 2))
    with pytest.raises(ValueError, match="rates must be > 0"):
        rtc.AudioResampler(0, OUT_RATE)
    with pytest.raises(ValueError, match="num_channels"):
        rtc.AudioResampler(IN_RATE, OUT_RATE, num_channels=0)
    with pytest.raises(ValueError, match="not a valid AudioResamplerQuality"):
        rtc.AudioResampler(IN_RATE, OUT_RATE, quality="best")  # type: ignore[arg-type]


def test_quality_names_match_the_official_enum() -> None:
    assert {q.name: q.value for q in rtc.AudioResamplerQuality} == {
        q.name: q.value for q in official.AudioResamplerQuality
    }
