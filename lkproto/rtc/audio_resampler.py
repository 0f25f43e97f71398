"""Official ``AudioResampler``: int16 PCM from one sample rate to another, on PyAV.

The official class runs libsoxr in the FFI library. lkproto runs FFmpeg's libswresample
through PyAV (already a dependency; PyAV's FFmpeg is built without soxr), with the same
interface: :meth:`AudioResampler.push` takes int16 interleaved bytes or an
:class:`~lkproto.rtc.AudioFrame` and returns the frames ready so far; :meth:`AudioResampler.flush`
returns the rest. Output sample counts differ slightly from libsoxr's (another filter, another
delay), the total after ``flush`` is the same to within a few samples.

:class:`AudioResamplerQuality` picks libswresample's polyphase filter length and phase
resolution (longer filter = sharper cutoff, more CPU). PyAV releases before 18 cannot pass
resampler options; there the quality is accepted with one warning and FFmpeg's default filter
(``MEDIUM``) is used.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import av
import numpy as np

from lkproto.rtc._options import warn_once
from lkproto.rtc.audio_frame import AudioFrame

__all__ = ["AudioResampler", "AudioResamplerQuality"]

_SAMPLE_BYTES: Final = 2


class AudioResamplerQuality(enum.StrEnum):
    """Official quality names (libsoxr recipes there, libswresample filter sizes here)."""

    QUICK = "quick"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


# libswresample options (https://ffmpeg.org/ffmpeg-resampler.html): filter_size is the polyphase
# filter length (FFmpeg's default 32, which MEDIUM keeps), phase_shift log2 of the phase count
# (default 10).
_SWR_OPTIONS: Final[Mapping[AudioResamplerQuality, dict[str, str]]] = {
    AudioResamplerQuality.QUICK: {"filter_size": "8", "phase_shift": "8"},
    AudioResamplerQuality.LOW: {"filter_size": "16", "phase_shift": "10"},
    AudioResamplerQuality.MEDIUM: {"filter_size": "32", "phase_shift": "10"},
    AudioResamplerQuality.HIGH: {"filter_size": "64", "phase_shift": "12"},
    AudioResamplerQuality.VERY_HIGH: {"filter_size": "128", "phase_shift": "14"},
}


class AudioResampler:
    """Resample int16 interleaved PCM of ``num_channels`` from ``input_rate`` to ``output_rate``.

    Args:
        input_rate: the rate of the pushed audio, in Hz.
        output_rate: the rate of the frames returned, in Hz.
        num_channels: channels of the pushed audio and of the output (not remixed).
        quality: the filter quality (see the module docstring).

    Raises:
        ValueError: a rate or the channel count is not positive, or ``quality`` is not an
            :class:`AudioResamplerQuality` (or its value).
    """

    def __init__(
        self,
        input_rate: int,
        output_rate: int,
        *,
        num_channels: int = 1,
        quality: AudioResamplerQuality = AudioResamplerQuality.MEDIUM,
    ) -> None:
        if input_rate <= 0 or output_rate <= 0:
            raise ValueError(f"rates must be > 0, got {input_rate} and {output_rate}")
        if num_channels <= 0:
            raise ValueError(f"num_channels must be > 0, got {num_channels}")
        quality = AudioResamplerQuality(quality)
        self._input_rate = input_rate
        self._output_rate = output_rate
        self._num_channels = num_channels
        self._layout = av.AudioLayout(f"{num_channels}c")
        try:
            self._resampler = av.AudioResampler(
                format="s16", layout=self._layout, rate=output_rate, options=_SWR_OPTIONS[quality]
            )
        except TypeError:  # PyAV < 18 has no options
            if quality is not AudioResamplerQuality.MEDIUM:
                warn_once(
                    "AudioResampler.quality",
                    "this PyAV cannot pass resampler options; FFmpeg's default filter is used",
                )
            self._resampler = av.AudioResampler(format="s16", layout=self._layout, rate=output_rate)
        self._pending = bytearray()

    def push(self, data: bytearray | bytes | AudioFrame) -> list[AudioFrame]:
        """Resample ``data`` and return the frames ready so far (maybe none).

        Args:
            data: int16 little-endian interleaved samples, or a frame with this resampler's
                input rate and channel count.

        Raises:
            ValueError: a frame with another rate or channel count.
        """
        if isinstance(data, AudioFrame):
            if data.sample_rate != self._input_rate or data.num_channels != self._num_channels:
                raise ValueError(
                    f"AudioResampler takes {self._num_channels} channel(s) at "
                    f"{self._input_rate} Hz, got {data.num_channels} at {data.sample_rate} Hz"
                )
            raw = bytes(data.data.cast("B"))
        else:
            raw = bytes(data)
        # Only whole sample frames (all channels) go in; a partial one waits for the next push.
        self._pending += raw
        frame_bytes = self._num_channels * _SAMPLE_BYTES
        usable = len(self._pending) - len(self._pending) % frame_bytes
        if not usable:
            return []
        samples = np.frombuffer(bytes(self._pending[:usable]), dtype="<i2")
        del self._pending[:usable]
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout=self._layout
        )
        frame.sample_rate = self._input_rate
        return self._frames(self._resampler.resample(frame))

    def flush(self) -> list[AudioFrame]:
        """Return what the filter still holds; the resampler can be pushed to again after."""
        return self._frames(self._resampler.resample(None))

    def _frames(self, parts: list[av.AudioFrame]) -> list[AudioFrame]:
        pcm = bytearray()
        for part in parts:
            size = part.samples * self._num_channels * _SAMPLE_BYTES
            pcm += memoryview(part.planes[0])[:size]  # planes may be padded
        if not pcm:
            return []
        samples = len(pcm) // (self._num_channels * _SAMPLE_BYTES)
        return [AudioFrame(pcm, self._output_rate, self._num_channels, samples)]
