"""Official ``livekit.rtc`` helpers that need no native code: :func:`combine_audio_frames`."""

from __future__ import annotations

from collections.abc import Sequence

from lkproto.rtc.audio_frame import AudioFrame

__all__ = ["combine_audio_frames"]


def combine_audio_frames(buffer: AudioFrame | Sequence[AudioFrame]) -> AudioFrame:
    """One frame holding the samples of ``buffer``'s frames one after the other.

    Args:
        buffer: a frame (returned as a new frame with the same samples) or a list of frames of
            one sample rate and channel count.

    Returns:
        A new frame; its ``samples_per_channel`` is the sum of the inputs'.

    Raises:
        ValueError: ``buffer`` is empty, or the frames' sample rates or channel counts differ
            (the errors the official helper raises).
    """
    frames = [buffer] if isinstance(buffer, AudioFrame) else list(buffer)
    if not frames:
        raise ValueError("combine_audio_frames: no frames to combine")
    rate = frames[0].sample_rate
    channels = frames[0].num_channels
    for frame in frames[1:]:
        if frame.sample_rate != rate:
            raise ValueError(
                f"combine_audio_frames: sample rates differ ({rate} and {frame.sample_rate})"
            )
        if frame.num_channels != channels:
            raise ValueError(
                f"combine_audio_frames: channel counts differ ({channels} and {frame.num_channels})"
            )
    data = b"".join(frame.data.cast("B") for frame in frames)
    return AudioFrame(data, rate, channels, sum(frame.samples_per_channel for frame in frames))
