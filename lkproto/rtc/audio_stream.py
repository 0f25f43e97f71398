"""Audio you receive, shaped like ``livekit.rtc.AudioStream``.

``async for event in AudioStream(track, sample_rate=16000):`` yields an
:class:`AudioFrameEvent` per decoded frame, converted to interleaved int16 at the rate and
channel count you asked for (and, with ``frame_size_ms``, cut into frames of exactly that
length). Each stream is one reader of the track's :class:`~lkproto.asyncio.fanout.FrameFanout`,
so any number of streams can read one track independently.

Differences from the official SDK, all deliberate:

- ``capacity=0`` (official: unbounded) means :data:`~lkproto.asyncio.fanout.DEFAULT_QUEUE_FRAMES`
  decoded frames (about 1 s). A reader further behind loses its oldest frames, counted in
  :attr:`AudioStream.dropped_frames`, instead of growing memory without limit;
- with ``frame_size_ms``, a last piece shorter than one frame at the end of the track is
  dropped, so every frame has exactly the requested size;
- ``noise_cancellation`` is honoured for a frame processor (an object with ``enabled``,
  ``_process(frame)`` and ``_close()``, as the official ``FrameProcessor[AudioFrame]``): each
  yielded frame goes through it while it is enabled, and ``auto_close_noise_cancellation``
  closes it with the stream. ``NoiseCancellationOptions`` (a native FFI audio filter module)
  raises :class:`~lkproto.errors.UnsupportedFeatureError`; unknown keyword arguments raise
  ``TypeError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import av

from lkproto.asyncio.audio import mono_to_stereo
from lkproto.asyncio.fanout import DEFAULT_QUEUE_FRAMES, FrameFanout, FrameQueue
from lkproto.rtc._options import check_loop, refuse
from lkproto.rtc.audio_frame import AudioFrame
from lkproto.rtc.participant_stream import ParticipantStream
from lkproto.rtc.track import TrackKind

if TYPE_CHECKING:
    from lkproto.rtc.participant import Participant
    from lkproto.rtc.track import Track

__all__ = ["AudioFrameEvent", "AudioStream"]

_log = logging.getLogger("lkproto.media")

_SAMPLE_BYTES = 2
_PROCESSOR_OPTIONS = frozenset({"noise_cancellation", "auto_close_noise_cancellation"})


@runtime_checkable
class FrameProcessor(Protocol):
    """What ``noise_cancellation`` accepts: the official ``FrameProcessor[AudioFrame]`` shape."""

    @property
    def enabled(self) -> bool: ...

    def _process(self, frame: AudioFrame) -> AudioFrame: ...

    def _close(self) -> None: ...


@dataclass
class AudioFrameEvent:
    """One received audio frame (official shape).

    Attributes:
        frame: the frame, interleaved int16 at the stream's rate and channel count.
    """

    frame: AudioFrame


class AudioStream:
    """An async iterator of :class:`AudioFrameEvent` from a subscribed remote audio track.

    Args:
        track: a remote audio track (one with a frame fanout; local tracks have none).
        loop: the running loop or None (another loop raises
            :class:`~lkproto.errors.UnsupportedFeatureError`).
        capacity: decoded frames this reader may fall behind before the oldest are dropped;
            0 means :data:`~lkproto.asyncio.fanout.DEFAULT_QUEUE_FRAMES`.
        sample_rate: rate of the frames yielded, in Hz.
        num_channels: channel count of the frames yielded (1 downmixes by averaging).
        frame_size_ms: if set, yield frames of exactly this many milliseconds.
        **kwargs: ``noise_cancellation``: a :class:`FrameProcessor` every yielded frame goes
            through while it is ``enabled``; ``auto_close_noise_cancellation`` (default True):
            close it when the stream closes.

    Raises:
        ValueError: ``track`` has no frame fanout (a local track, or not a subscribed remote
            audio track), or a bad rate, channel count, capacity or frame size.
        TypeError: an unknown keyword argument.
        lkproto.errors.UnsupportedFeatureError: ``noise_cancellation`` is not a frame
            processor (e.g. the official ``NoiseCancellationOptions``).
    """

    def __init__(  # noqa: PLR0917  (the official signature is positional)
        self,
        track: Track,
        loop: asyncio.AbstractEventLoop | None = None,
        capacity: int = 0,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: int | None = None,
        **kwargs: object,
    ) -> None:
        self._processor, self._close_processor = _processor(kwargs)
        check_loop("AudioStream.loop", loop)
        fanout = getattr(track, "_fanout", None)
        if not isinstance(fanout, FrameFanout):
            raise ValueError(
                "AudioStream reads subscribed remote audio tracks; this track has no decoded "
                "frames to read (is it a local track?)"
            )
        if fanout.kind != "audio":
            raise ValueError(f"AudioStream needs an audio track, not {fanout.kind!r}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        if num_channels <= 0:
            raise ValueError(f"num_channels must be > 0, got {num_channels}")
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        chunk_samples = 0
        if frame_size_ms is not None:
            chunk_samples = sample_rate * frame_size_ms // 1000
            if frame_size_ms <= 0 or chunk_samples <= 0:
                raise ValueError(f"frame_size_ms must give at least one sample: {frame_size_ms}")
        self._track: Track = track
        self._fanout = fanout
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._frame_size_ms = frame_size_ms
        self._chunk_bytes = chunk_samples * num_channels * _SAMPLE_BYTES
        self._frame_bytes = num_channels * _SAMPLE_BYTES
        self._layout = av.AudioLayout(f"{num_channels}c")
        self._queue: FrameQueue = fanout.subscribe(capacity or DEFAULT_QUEUE_FRAMES)
        self._resampler: av.AudioResampler | None = None
        self._upmix = False
        self._input_key: tuple[str, str, int] | None = None
        self._pending = bytearray()
        self._ready: deque[AudioFrame] = deque()
        self._ended = False
        self._closed = False

    @classmethod
    def from_track(
        cls,
        *,
        track: Track,
        loop: asyncio.AbstractEventLoop | None = None,
        capacity: int = 0,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: int | None = None,
        **kwargs: object,
    ) -> AudioStream:
        """Same as the constructor, keyword-only (official shape), except that a
        ``noise_cancellation`` processor is left open when the stream closes unless
        ``auto_close_noise_cancellation=True``: the official ``from_track`` defaults it to False
        (livekit.rtc ``audio_stream.py``), so one processor can serve several streams."""
        kwargs.setdefault("auto_close_noise_cancellation", False)
        return cls(
            track,
            loop=loop,
            capacity=capacity,
            sample_rate=sample_rate,
            num_channels=num_channels,
            frame_size_ms=frame_size_ms,
            **kwargs,
        )

    @classmethod
    def from_participant(
        cls,
        *,
        participant: Participant,
        track_source: int,
        loop: asyncio.AbstractEventLoop | None = None,
        capacity: int = 0,
        sample_rate: int = 48000,
        num_channels: int = 1,
        frame_size_ms: int | None = None,
        **kwargs: object,
    ) -> ParticipantStream[AudioFrameEvent]:
        """The frames of ``participant``'s audio track of ``track_source``, whichever track
        that is over time (official shape; see :mod:`lkproto.rtc.participant_stream`).

        A ``noise_cancellation`` processor serves every track followed and is closed (unless
        ``auto_close_noise_cancellation=False``) when the returned stream is.
        """
        processor, auto_close = _processor(kwargs)
        rest = {k: v for k, v in kwargs.items() if k not in _PROCESSOR_OPTIONS}

        def open_stream(track: Track) -> AudioStream:
            return cls(
                track,
                loop=loop,
                capacity=capacity,
                sample_rate=sample_rate,
                num_channels=num_channels,
                frame_size_ms=frame_size_ms,
                noise_cancellation=processor,
                auto_close_noise_cancellation=False,
                **rest,
            )

        on_close = processor._close if processor is not None and auto_close else None
        return ParticipantStream(
            participant, track_source, TrackKind.KIND_AUDIO, open_stream, on_close
        )

    @property
    def sample_rate(self) -> int:
        """lkproto extra: the rate of the frames yielded, in Hz."""
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        """lkproto extra: the channel count of the frames yielded."""
        return self._num_channels

    @property
    def dropped_frames(self) -> int:
        """lkproto extra: decoded frames lost because this reader fell ``capacity`` behind."""
        return self._queue.dropped

    def __aiter__(self) -> AsyncIterator[AudioFrameEvent]:
        return self

    async def __anext__(self) -> AudioFrameEvent:
        while not self._ready:
            if self._closed or self._ended:
                raise StopAsyncIteration
            frame = await self._queue.get()
            if self._closed:
                raise StopAsyncIteration
            if frame is None:
                self._ended = True
                self._convert(None)
            else:
                self._convert(frame)
        ready = self._ready.popleft()
        processor = self._processor
        if processor is not None and processor.enabled:
            try:
                ready = processor._process(ready)
            except Exception:
                # As the official stream: a failing processor passes the frame through.
                _log.warning(
                    "noise_cancellation processor failed; frame passed through", exc_info=True
                )
        return AudioFrameEvent(ready)

    async def aclose(self) -> None:
        """Stop reading the track; iteration ends at once (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._fanout.unsubscribe(self._queue)
        self._ready.clear()
        self._pending.clear()
        if self._processor is not None and self._close_processor:
            self._processor._close()

    def _convert(self, frame: av.AudioFrame | None) -> None:
        """Resample ``frame`` (None: flush) into ready frames."""
        if frame is None:
            self._emit(self._flush())
            return
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._input_key:
            # A new input shape (PyAV's resampler takes one): flush the old one first.
            self._emit(self._flush())
            self._input_key = key
            # Mono to stereo is resampled as mono, then copied: FFmpeg's remix costs 3 dB.
            self._upmix = frame.layout.nb_channels == 1 and self._num_channels == 2
            self._resampler = av.AudioResampler(
                format="s16",
                layout="mono" if self._upmix else self._layout,
                rate=self._sample_rate,
            )
        assert self._resampler is not None
        self._emit(self._resampler.resample(frame))

    def _emit(self, parts: list[av.AudioFrame]) -> None:
        for part in parts:
            size = part.samples * part.layout.nb_channels * _SAMPLE_BYTES
            data = memoryview(part.planes[0])[:size]  # planes may be padded
            pcm = mono_to_stereo(data) if self._upmix else bytearray(data)
            if not self._chunk_bytes:
                if part.samples:
                    self._ready.append(self._frame(pcm))
                continue
            self._pending += pcm
        while self._chunk_bytes and len(self._pending) >= self._chunk_bytes:
            self._ready.append(self._frame(self._pending[: self._chunk_bytes]))
            del self._pending[: self._chunk_bytes]

    def _flush(self) -> list[av.AudioFrame]:
        return self._resampler.resample(None) if self._resampler is not None else []

    def _frame(self, data: bytearray) -> AudioFrame:
        samples = len(data) // self._frame_bytes
        return AudioFrame(data, self._sample_rate, self._num_channels, samples)


def _processor(kwargs: dict[str, object]) -> tuple[FrameProcessor | None, bool]:
    """The frame processor and whether to close it with the stream, from the keyword args."""
    unknown = sorted(set(kwargs) - _PROCESSOR_OPTIONS)
    if unknown:
        raise TypeError(f"AudioStream got unexpected keyword argument(s): {', '.join(unknown)}")
    processor = kwargs.get("noise_cancellation")
    auto_close = bool(kwargs.get("auto_close_noise_cancellation", True))
    if processor is None:
        return None, False
    if not isinstance(processor, FrameProcessor):
        refuse(
            "AudioStream.noise_cancellation",
            f"{type(processor).__name__} needs the official SDK's native audio filter modules; "
            "pass a frame processor (enabled, _process(frame), _close()) instead",
        )
    return processor, auto_close
