"""combine_audio_frames (lkproto.rtc.utils) against the official helper's results and errors."""

from __future__ import annotations

import pytest

from lkproto import rtc

official = pytest.importorskip("livekit.rtc")  # the official SDK (dev group)

__all__: list[str] = []


def _frames(module: object, *samples: list[int]) -> list[object]:
    audio_frame = module.AudioFrame  # type: ignore[attr-defined]
    return [
        audio_frame(
            b"".join(s.to_bytes(2, "little", signed=True) for s in values),
            8000,
            2,
            len(values) // 2,
        )
        for values in samples
    ]


def test_concatenates_like_the_official_helper() -> None:
    parts = ([1, -2, 3, -4], [5, 6], [-32768, 32767, 0, 0, 7, 8])
    ours = rtc.combine_audio_frames(_frames(rtc, *parts))  # type: ignore[arg-type]
    theirs = official.combine_audio_frames(_frames(official, *parts))
    assert bytes(ours.data) == bytes(theirs.data)
    assert (ours.sample_rate, ours.num_channels, ours.samples_per_channel) == (
        theirs.sample_rate,
        theirs.num_channels,
        theirs.samples_per_channel,
    )
    assert ours.samples_per_channel == 6


def test_one_frame_gives_an_equal_new_frame() -> None:
    (frame,) = _frames(rtc, [1, 2, 3, 4])
    combined = rtc.combine_audio_frames(frame)  # type: ignore[arg-type]
    assert combined is not frame
    assert bytes(combined.data) == bytes(frame.data)  # type: ignore[attr-defined]


def test_refuses_empty_and_mixed_input() -> None:
    with pytest.raises(ValueError, match="no frames"):
        rtc.combine_audio_frames([])
    a = rtc.AudioFrame(b"\0\0", 8000, 1, 1)
    with pytest.raises(ValueError, match="sample rates differ"):
        rtc.combine_audio_frames([a, rtc.AudioFrame(b"\0\0", 16000, 1, 1)])
    with pytest.raises(ValueError, match="channel counts differ"):
        rtc.combine_audio_frames([a, rtc.AudioFrame(b"\0\0\0\0", 8000, 2, 1)])
