"""Received video as an async iterator, shaped like ``livekit.rtc.video_stream``.

``async for event in VideoStream(track): ...`` yields a :class:`VideoFrameEvent` per decoded
frame of a subscribed remote video track. Each stream is one bounded reader of the track's
:class:`~lkproto.asyncio.fanout.FrameFanout`, so any number of streams can read one track and a
slow one only loses frames (counted in :attr:`VideoStream.dropped_frames`), never memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import av

from lkproto.asyncio.fanout import FrameFanout, FrameQueue
from lkproto.asyncio.video import run_conversion
from lkproto.rtc._options import check_loop
from lkproto.rtc.participant_stream import ParticipantStream
from lkproto.rtc.track import Track, TrackKind
from lkproto.rtc.video_frame import VideoBufferType, VideoFrame, VideoRotation

if TYPE_CHECKING:
    from lkproto.rtc.participant import Participant

__all__ = ["DEFAULT_VIDEO_STREAM_CAPACITY", "VideoFrameEvent", "VideoStream"]

DEFAULT_VIDEO_STREAM_CAPACITY: Final = 2
"""Frames a stream keeps for a slow reader when ``capacity=0``. The official SDK's 0 means
unbounded; for video only the newest frames matter, so lkproto keeps a small bound instead."""

# RTP timestamps are 32-bit (RFC 3550 §5.1); aiortc's decoders use them as pts in 1/90000.
_RTP_TIMESTAMP_MODULUS: Final = 1 << 32
_RTP_CLOCK_RATE_HZ: Final = 90_000


@dataclass(slots=True)
class VideoFrameEvent:
    """One received frame.

    Attributes:
        frame: the pixels, in the stream's ``format`` (I420 by default).
        timestamp_us: the frame's presentation time in µs, from its RTP timestamp: increasing
            within a stream (32-bit wraps are unfolded), arbitrary origin.
        rotation: always ``VIDEO_ROTATION_0`` (aiortc does not parse the orientation extension).
        metadata: always None (official field; aiortc carries no frame metadata).
    """

    frame: VideoFrame
    timestamp_us: int
    rotation: VideoRotation
    metadata: object | None = None


class VideoStream:
    """An async iterator of :class:`VideoFrameEvent` from a subscribed remote video track.

    Args:
        track: a subscribed remote video track (it reads the track's received media).
        loop: the running loop or None (another loop raises
            :class:`~lkproto.errors.UnsupportedFeatureError`).
        capacity: frames kept for a slow reader, oldest dropped first; 0 means
            :data:`DEFAULT_VIDEO_STREAM_CAPACITY`.
        format: the :class:`~lkproto.rtc.video_frame.VideoBufferType` frames are converted to
            (None: I420, which needs no conversion from aiortc's decoders). Large conversions
            run in the default executor.

    Iteration ends when the track ends, is unsubscribed, or :meth:`aclose` is called.

    Raises:
        ValueError: the track has no received media, negative capacity, unknown format.
        TypeError: unexpected keyword arguments.
    """

    def __init__(
        self,
        track: Track,
        loop: asyncio.AbstractEventLoop | None = None,
        capacity: int = 0,
        format: int | None = None,
        **kwargs: object,
    ) -> None:
        if kwargs:
            raise TypeError(f"VideoStream got unexpected arguments: {', '.join(sorted(kwargs))}")
        check_loop("VideoStream.loop", loop)
        fanout = getattr(track, "_fanout", None)
        if not isinstance(fanout, FrameFanout):
            raise ValueError(
                "VideoStream needs a subscribed remote video track (this track receives no media)"
            )
        if fanout.kind != "video":
            raise ValueError(f"VideoStream needs a video track, got a {fanout.kind} track")
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self._format = VideoBufferType.I420 if format is None else _buffer_type(format)
        self._loop = loop
        self._fanout = fanout
        self._queue: FrameQueue = fanout.subscribe(capacity or DEFAULT_VIDEO_STREAM_CAPACITY)
        self._closed = False
        self._last_rtp: int | None = None
        self._rtp_wraps = 0

    @classmethod
    def from_track(
        cls,
        *,
        track: Track,
        loop: asyncio.AbstractEventLoop | None = None,
        format: int | None = None,
        capacity: int = 0,
    ) -> VideoStream:
        """Official shape: the same as ``VideoStream(track, ...)``, arguments by keyword."""
        return cls(track, loop=loop, capacity=capacity, format=format)

    @classmethod
    def from_participant(
        cls,
        *,
        participant: Participant,
        track_source: int,
        loop: asyncio.AbstractEventLoop | None = None,
        format: int | None = None,
        capacity: int = 0,
    ) -> ParticipantStream[VideoFrameEvent]:
        """The frames of ``participant``'s video track of ``track_source``, whichever track
        that is over time (official shape; see :mod:`lkproto.rtc.participant_stream`)."""

        def open_stream(track: Track) -> VideoStream:
            return cls(track, loop=loop, capacity=capacity, format=format)

        return ParticipantStream(participant, track_source, TrackKind.KIND_VIDEO, open_stream)

    @property
    def dropped_frames(self) -> int:
        """lkproto extra: frames this stream lost because its reader fell behind."""
        return self._queue.dropped

    def __aiter__(self) -> AsyncIterator[VideoFrameEvent]:
        return self

    async def __anext__(self) -> VideoFrameEvent:
        if self._closed:
            raise StopAsyncIteration
        frame = await self._queue.get()
        if frame is None or self._closed:
            self._closed = True
            raise StopAsyncIteration
        return await self._event(frame)

    async def aclose(self) -> None:
        """Stop reading (idempotent); a pending ``__anext__`` ends the iteration."""
        self._closed = True
        self._fanout.unsubscribe(self._queue)

    async def _event(self, frame: av.VideoFrame) -> VideoFrameEvent:
        target = self._format
        converted = await run_conversion(
            frame.width * frame.height, lambda: VideoFrame._from_av(frame, target)
        )
        return VideoFrameEvent(
            frame=converted,
            timestamp_us=self._timestamp_us(frame),
            rotation=VideoRotation.VIDEO_ROTATION_0,
        )

    def _timestamp_us(self, frame: av.VideoFrame) -> int:
        pts, time_base = frame.pts, frame.time_base
        if pts is None or time_base is None:
            return 0
        num, den = time_base.numerator, time_base.denominator
        if num == 1 and den == _RTP_CLOCK_RATE_HZ and 0 <= pts < _RTP_TIMESTAMP_MODULUS:
            # Unfold wraps (every ~13 h at 90 kHz): a backwards jump of more than half the
            # range is a wrap, a smaller one is reordering.
            if self._last_rtp is not None:
                delta = pts - self._last_rtp
                if delta < -(_RTP_TIMESTAMP_MODULUS // 2):
                    self._rtp_wraps += 1
                elif delta > _RTP_TIMESTAMP_MODULUS // 2 and self._rtp_wraps:
                    self._rtp_wraps -= 1
            self._last_rtp = pts
            pts += self._rtp_wraps * _RTP_TIMESTAMP_MODULUS
        return pts * num * 1_000_000 // den


def _buffer_type(value: int) -> VideoBufferType:
    try:
        return VideoBufferType(value)
    except ValueError:
        raise ValueError(f"unsupported video buffer type: {value!r}") from None
