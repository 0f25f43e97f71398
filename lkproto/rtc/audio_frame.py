"""PCM audio frames, shaped like ``livekit.rtc.AudioFrame``.

An :class:`AudioFrame` is one block of signed 16-bit samples, interleaved by channel
(``L R L R ...`` for stereo), with its sample rate. It is what :class:`~lkproto.rtc.AudioSource`
takes and what :class:`~lkproto.rtc.AudioStream` yields. The private helpers ``_to_av`` and
``_from_av`` convert to and from PyAV frames, the currency of the aiortc side.
"""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import av

__all__ = ["AudioFrame"]

_SAMPLE_BYTES = 2
"""Bytes per sample: the official frame format is interleaved int16."""


# PyAV is imported in the conversions only: a frame of PCM samples needs none of it, so code that
# only builds or reads frames (the agents' pre-connect buffer, tests) does not load it (issue 18).


def _layout_for(num_channels: int) -> av.AudioLayout:
    import av

    # FFmpeg's "<n>c" names the default layout for n channels (mono, stereo, 2.1, ... 5.1).
    return av.AudioLayout(f"{num_channels}c")


class AudioFrame:
    """A block of interleaved signed 16-bit PCM samples.

    Args:
        data: the samples, at least ``num_channels * samples_per_channel * 2`` bytes (extra
            bytes at the end are ignored, as in the official SDK). A ``bytearray`` or writable
            contiguous ``memoryview`` is shared, not copied; ``bytes`` and read-only views are
            copied once so that :attr:`data` is always writable.
        sample_rate: samples per second per channel, in Hz.
        num_channels: 1 for mono, 2 for stereo, ...
        samples_per_channel: number of samples in each channel.
        userdata: free-form metadata carried with the frame.

    Raises:
        ValueError: ``data`` is too short, has an odd length, or is a non-contiguous view; or a
            rate/channel count is not positive, or ``samples_per_channel`` is negative.
        TypeError: ``data`` is not bytes, bytearray or memoryview.
    """

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        sample_rate: int,
        num_channels: int,
        samples_per_channel: int,
        *,
        userdata: dict[str, Any] | None = None,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        if num_channels <= 0:
            raise ValueError(f"num_channels must be > 0, got {num_channels}")
        if samples_per_channel < 0:
            raise ValueError(f"samples_per_channel must be >= 0, got {samples_per_channel}")
        buffer = _writable_bytes(data)
        needed = num_channels * samples_per_channel * _SAMPLE_BYTES
        if len(buffer) < needed:
            raise ValueError(
                f"data holds {len(buffer)} bytes, but {num_channels} channel(s) x "
                f"{samples_per_channel} samples of int16 need {needed}"
            )
        if len(buffer) % _SAMPLE_BYTES:
            raise ValueError(f"data length must be a multiple of 2 (int16), got {len(buffer)}")
        self._buffer = buffer[:needed]
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._samples_per_channel = samples_per_channel
        self._userdata: dict[str, Any] = {} if userdata is None else userdata

    @staticmethod
    def create(sample_rate: int, num_channels: int, samples_per_channel: int) -> AudioFrame:
        """A frame of silence (all samples zero) with the given shape."""
        size = num_channels * samples_per_channel * _SAMPLE_BYTES
        return AudioFrame(bytearray(size), sample_rate, num_channels, samples_per_channel)

    @property
    def data(self) -> memoryview:
        """The samples as a writable ``memoryview`` of format ``'h'`` (int16), interleaved."""
        return self._buffer.cast("h")

    @property
    def sample_rate(self) -> int:
        """Samples per second per channel, in Hz."""
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        """Number of interleaved channels."""
        return self._num_channels

    @property
    def samples_per_channel(self) -> int:
        """Number of samples in each channel."""
        return self._samples_per_channel

    @property
    def duration(self) -> float:
        """Length of the frame in seconds."""
        return self._samples_per_channel / self._sample_rate

    @property
    def userdata(self) -> dict[str, Any]:
        """Free-form metadata attached to the frame (a mutable dict)."""
        return self._userdata

    def to_wav_bytes(self) -> bytes:
        """The frame as a complete 16-bit PCM WAV file."""
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(self._num_channels)
            wav.setsampwidth(_SAMPLE_BYTES)
            wav.setframerate(self._sample_rate)
            wav.writeframes(self._buffer)
        return out.getvalue()

    def __repr__(self) -> str:
        return (
            f"rtc.AudioFrame(sample_rate={self._sample_rate}, "
            f"num_channels={self._num_channels}, "
            f"samples_per_channel={self._samples_per_channel}, "
            f"duration={self.duration:.3f})"
        )

    def _to_av(self, pts: int | None = None) -> av.AudioFrame:
        """A PyAV frame (packed ``s16``) holding a copy of these samples.

        Args:
            pts: presentation timestamp in samples; the time base is ``1/sample_rate``.
        """
        import av

        frame = av.AudioFrame(
            format="s16",
            layout=_layout_for(self._num_channels),
            samples=self._samples_per_channel,
        )
        frame.sample_rate = self._sample_rate
        if self._samples_per_channel:
            # PyAV's stub says bytes; any buffer of the plane's exact size works.
            frame.planes[0].update(cast("bytes", self._buffer))
        if pts is not None:
            frame.pts = pts
            frame.time_base = Fraction(1, self._sample_rate)
        return frame

    @staticmethod
    def _from_av(frame: av.AudioFrame) -> AudioFrame:
        """Copy a PyAV frame of any sample format and layout into an interleaved int16 frame.

        The channel count and sample rate are kept; float samples are scaled and clipped to
        int16 by FFmpeg's converter.
        """
        num_channels = frame.layout.nb_channels
        if frame.format.name != "s16":
            import av

            converter = av.AudioResampler(format="s16", layout=frame.layout, rate=frame.sample_rate)
            # A format-only conversion has no filter delay, but flushing makes that a non-issue.
            parts = [*converter.resample(frame), *converter.resample(None)]
            data = bytearray()
            for part in parts:
                # Filter output planes may be padded for alignment: take the samples only.
                data += memoryview(part.planes[0])[: part.samples * num_channels * _SAMPLE_BYTES]
            samples = len(data) // (num_channels * _SAMPLE_BYTES)
            return AudioFrame(data, frame.sample_rate, num_channels, samples)
        size = frame.samples * num_channels * _SAMPLE_BYTES  # the plane may be padded
        data = bytearray(memoryview(frame.planes[0])[:size])
        return AudioFrame(data, frame.sample_rate, num_channels, frame.samples)


def _writable_bytes(data: bytes | bytearray | memoryview) -> memoryview:
    if isinstance(data, memoryview):
        if not data.contiguous:
            raise ValueError("memoryview must be contiguous")
        view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        return memoryview(bytearray(view)) if view.readonly else view
    if isinstance(data, bytearray):
        return memoryview(data)
    if isinstance(data, bytes):
        return memoryview(bytearray(data))
    raise TypeError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")
