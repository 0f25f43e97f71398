"""Video sources to publish, shaped like ``livekit.rtc.video_source``.

:class:`VideoSource` takes raw :class:`~lkproto.rtc.video_frame.VideoFrame` objects, like the
official one; aiortc encodes them (VP8 or H.264, whichever the publication negotiated).
:class:`EncodedVideoSource` (an lkproto extra) takes frames that are already VP8 or H.264
encoded and sends them without re-encoding.

Both are synchronous to feed and safe to feed from another thread; neither blocks or queues
without bound (see :mod:`lkproto.asyncio.video` for the drop rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, Protocol, overload

from lkproto.asyncio.video import (
    EncodedVideoFeed,
    EncodedVideoTrack,
    VideoFrameFeed,
    VideoFrameTrack,
)
from lkproto.errors import LocalProtocolError, UnsupportedFeatureError
from lkproto.rtc.encoded import (
    EncodedFrameType,
    EncodedVideoFrame,
    EncodedVideoSourceFeedback,
    codec_name,
)
from lkproto.rtc.video_frame import VideoFrame, VideoRotation, buffer_size

__all__ = ["EncodedVideoCodec", "EncodedVideoSource", "VideoSource"]

EncodedVideoCodec = Literal["vp8", "h264"]
"""The codecs :class:`EncodedVideoSource` accepts pre-encoded frames in (lkproto extra)."""

_CODECS: Final[frozenset[str]] = frozenset({"vp8", "h264"})

# Annex-B start codes (ITU-T H.264 Annex B.1); aiortc's H264Encoder.pack splits on them.
_ANNEX_B_PREFIXES: Final = (b"\x00\x00\x01", b"\x00\x00\x00\x01")


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be > 0, got {width}x{height}")


class _FeedCounters(Protocol):
    @property
    def dropped(self) -> int: ...

    @property
    def captured(self) -> int: ...


class _SizedSource:
    """What both video sources share: the announced size and the feed's counters."""

    def __init__(self, width: int, height: int, feed: _FeedCounters) -> None:
        _check_size(width, height)
        self._width = width
        self._height = height
        self._counters = feed

    @property
    def width(self) -> int:
        """lkproto extra: the announced width."""
        return self._width

    @property
    def height(self) -> int:
        """lkproto extra: the announced height."""
        return self._height

    @property
    def dropped_frames(self) -> int:
        """lkproto extra: frames dropped before the sender took them (replaced by newer ones;
        for pre-encoded sources also delta frames without a keyframe before them)."""
        return self._counters.dropped

    @property
    def captured_frames(self) -> int:
        """lkproto extra: frames accepted so far."""
        return self._counters.captured


class VideoSource(_SizedSource):
    """A raw video source to publish.

    Args:
        width: the announced width (what the track's publication advertises).
        height: the announced height.
        is_screencast: the official hint for screen content. aiortc has no content hint or
            degradation preference, so lkproto only records it (the publication may use it).

    Frames of another size than announced are sent as they are (aiortc's encoders follow size
    changes); keeping the announced size up to date is the publication's business.

    ``capture_frame`` keeps at most :data:`~lkproto.asyncio.video.PENDING_VIDEO_FRAMES` frames
    for the encoder; when it falls behind, older frames are dropped and counted in
    :attr:`dropped_frames`, so latency never builds up.
    """

    def __init__(self, width: int, height: int, *, is_screencast: bool = False) -> None:
        self._feed = VideoFrameFeed()
        super().__init__(width, height, self._feed)
        self._is_screencast = is_screencast
        self._track: VideoFrameTrack | None = None

    @property
    def is_screencast(self) -> bool:
        """lkproto extra."""
        return self._is_screencast

    def capture_frame(
        self,
        frame: VideoFrame,
        *,
        timestamp_us: int = 0,
        rotation: int = VideoRotation.VIDEO_ROTATION_0,
        metadata: object | None = None,
    ) -> None:
        """Queue ``frame`` for sending.

        Args:
            frame: any :class:`~lkproto.rtc.video_frame.VideoFrame` type; converted to I420
                for the encoder. A frame over a mutable buffer (``bytearray``, writable
                ``memoryview``) is copied, so the caller may reuse its buffer at once.
            timestamp_us: capture time in µs (any origin); 0 stamps the frame with the clock.
                Timestamps that do not increase are nudged forward.
            rotation: a :class:`~lkproto.rtc.video_frame.VideoRotation`; validated and recorded
                but not signalled (aiortc cannot send the video-orientation extension).
            metadata: accepted for compatibility with the official signature; not sent.

        Raises:
            TypeError: ``frame`` is not a VideoFrame.
            ValueError: negative ``timestamp_us`` or unknown ``rotation``.
            LocalProtocolError: the source was closed.
        """
        del metadata
        if not isinstance(frame, VideoFrame):
            raise TypeError(f"expected a VideoFrame, got {type(frame).__name__}")
        if timestamp_us < 0:
            raise ValueError(f"timestamp_us must be >= 0, got {timestamp_us}")
        try:
            rotation = VideoRotation(rotation)
        except ValueError:
            raise ValueError(f"unsupported video rotation: {rotation!r}") from None
        if self._feed.closed:
            raise LocalProtocolError("video source is closed")
        if not frame.data.readonly:
            size = buffer_size(frame.type, frame.width, frame.height)
            frame = VideoFrame(frame.width, frame.height, frame.type, bytes(frame.data[:size]))
        self._feed.push(frame, timestamp_us, rotation)

    def _media_track(self) -> VideoFrameTrack:
        """The aiortc track fed by this source (created on first use, same one while live;
        after aiortc stopped it, e.g. on unpublish, a new one takes over the feed)."""
        if self._feed.closed:
            raise LocalProtocolError("video source is closed")
        if self._track is None or self._track.readyState != "live":
            self._track = VideoFrameTrack(self._feed)
        return self._track

    async def aclose(self) -> None:
        """Stop the source: its track ends (the sender stops sending) and captures are refused."""
        self._feed.close()
        if self._track is not None:
            self._track.stop()


class EncodedVideoSource(_SizedSource):
    """A source of already encoded VP8 or H.264 frames, sent without re-encoding.

    Two call shapes: lkproto's ``EncodedVideoSource(codec, width, height)`` with
    :meth:`capture_encoded`, and the official ``EncodedVideoSource(width, height)`` with
    :meth:`capture_frame` / :meth:`take_feedback` (see :mod:`lkproto.rtc.encoded`), whose codec
    is fixed by the first frame or by the publication's ``video_codec``, whichever comes first.

    Args:
        codec: ``"vp8"`` or ``"h264"`` (case-insensitive); the publication must negotiate this
            codec. H.264 must be an Annex-B byte stream (start codes, SPS/PPS in band with each
            keyframe), preferably Constrained Baseline for browser receivers.
        width: the announced width.
        height: the announced height.

    One :meth:`capture_encoded` call is one frame (one access unit for H.264), in decoding
    order, which must also be presentation order: no B-frames (RTP timestamps only move
    forward here; x264's ``tune=zerolatency`` or Baseline profile guarantees it). Until the first
    keyframe, and after an overflow of
    :data:`~lkproto.asyncio.video.ENCODED_PENDING_FRAMES` unsent frames, delta frames are
    dropped; each time a keyframe becomes necessary :attr:`keyframe_requests` grows and
    :attr:`on_keyframe_request` is called. Server keyframe requests (RTCP PLI/FIR) arrive the
    same way once the publication has bound the sender (``_media_track().bind_sender``).
    """

    @overload
    def __init__(self, width: int, height: int) -> None: ...

    @overload
    def __init__(self, codec: str, width: int, height: int) -> None: ...

    def __init__(self, *args: str | int, **kwargs: str | int) -> None:
        codec, width, height = _encoded_source_args(args, kwargs)
        self._codec: EncodedVideoCodec | None = None if codec is None else _codec(codec)
        self._feed = EncodedVideoFeed()
        super().__init__(width, height, self._feed)
        self._track: EncodedVideoTrack | None = None
        self._requests_taken = 0

    @property
    def codec(self) -> EncodedVideoCodec | None:
        """``"vp8"`` or ``"h264"``; None for an official-shape source not yet fixed to one."""
        return self._codec

    @property
    def pre_encoded(self) -> bool:
        """Always True: what a publication checks to treat this source as pre-encoded."""
        return True

    def _bind_codec(self, codec: str) -> EncodedVideoCodec:
        """Fix the codec (the first frame's, or the publication's); the same one again is fine.

        Raises:
            LocalProtocolError: the source already sends another codec.
        """
        chosen = _codec(codec)
        if self._codec is None:
            self._codec = chosen
        elif self._codec != chosen:
            raise LocalProtocolError(
                f"this EncodedVideoSource sends {self._codec}, not {chosen}: the codec is fixed"
            )
        return self._codec

    def capture_frame(self, frame: EncodedVideoFrame) -> bool:
        """Queue one frame, the official shape; True when it was queued, False when dropped.

        A delta frame is dropped while a keyframe is awaited (at the start, and after an
        overflow); see the class docs.

        Raises:
            UnsupportedFeatureError: frame metadata, or a codec other than VP8/H.264.
            LocalProtocolError: the source was closed, or the frame's codec is not the
                source's.
            ValueError: H.264 data that is not Annex-B, a negative timestamp.
        """
        if frame.metadata is not None:
            raise UnsupportedFeatureError(
                "EncodedVideoFrame.metadata", "lkproto sends no frame metadata trailer"
            )
        self._bind_codec(codec_name(frame.codec))
        keyframe = frame.frame_type == EncodedFrameType.ENCODED_FRAME_KEY
        before = self._feed.dropped
        self.capture_encoded(frame.data, timestamp_us=frame.timestamp_us, keyframe=keyframe)
        # A keyframe is always kept (an overflow drops the older frames instead).
        return keyframe or self._feed.dropped == before

    def take_feedback(self) -> EncodedVideoSourceFeedback:
        """Keyframe requests since the previous call, the official shape.

        ``rate_control`` is always None: aiortc has no send-side bandwidth estimate.
        """
        requests = self._feed.keyframe_requests
        requested = requests != self._requests_taken
        self._requests_taken = requests
        return EncodedVideoSourceFeedback(keyframe_requested=requested, rate_control=None)

    @property
    def keyframe_requests(self) -> int:
        """How many times a keyframe was asked for (locally or by the server)."""
        return self._feed.keyframe_requests

    @property
    def on_keyframe_request(self) -> Callable[[], None] | None:
        """Called (without arguments) whenever a keyframe is needed: produce one soon.

        Runs on the event loop for server requests and on the capturing thread for local ones;
        it must not block. Exceptions are logged and ignored.
        """
        return self._feed.on_keyframe_request

    @on_keyframe_request.setter
    def on_keyframe_request(self, callback: Callable[[], None] | None) -> None:
        self._feed.on_keyframe_request = callback

    def capture_encoded(self, data: bytes, *, timestamp_us: int, keyframe: bool) -> None:
        """Queue one encoded frame.

        Args:
            data: the frame (copied).
            timestamp_us: capture time in µs (any origin; 0 stamps with the clock).
            keyframe: True for a keyframe (VP8 key frame, H.264 IDR access unit).

        Raises:
            ValueError: empty data, H.264 data that is not Annex-B, negative timestamp.
            LocalProtocolError: the source was closed.
        """
        if self._codec is None:
            raise LocalProtocolError(
                "the codec of this EncodedVideoSource(width, height) is not known yet: use "
                "capture_frame, or publish the track first"
            )
        if not data:
            raise ValueError("encoded frame is empty")
        if timestamp_us < 0:
            raise ValueError(f"timestamp_us must be >= 0, got {timestamp_us}")
        if self._codec == "h264" and not bytes(data[:4]).startswith(_ANNEX_B_PREFIXES):
            raise ValueError("H.264 frames must be an Annex-B byte stream (start codes)")
        if self._feed.closed:
            raise LocalProtocolError("video source is closed")
        self._feed.push(bytes(data), timestamp_us=timestamp_us, keyframe=keyframe)

    def _media_track(self) -> EncodedVideoTrack:
        """The aiortc track fed by this source (created on first use, same one while live).

        A new track (first publication, or after aiortc stopped the previous one) starts at a
        keyframe: pending delta frames are dropped and a keyframe is requested.
        """
        if self._feed.closed:
            raise LocalProtocolError("video source is closed")
        if self._track is None or self._track.readyState != "live":
            self._track = EncodedVideoTrack(self._feed)
            self._feed.require_keyframe()
        return self._track

    async def aclose(self) -> None:
        """Stop the source: its track ends and captures are refused."""
        self._feed.close()
        if self._track is not None:
            self._track.stop()


def _codec(codec: str) -> EncodedVideoCodec:
    normalized = codec.lower()
    if normalized not in _CODECS:
        raise ValueError(f"unsupported codec {codec!r}, expected one of {sorted(_CODECS)}")
    return "vp8" if normalized == "vp8" else "h264"


def _encoded_source_args(
    args: tuple[str | int, ...], kwargs: dict[str, str | int]
) -> tuple[str | None, int, int]:
    """``(codec or None, width, height)`` from either call shape of EncodedVideoSource."""
    names = (
        ("codec", "width", "height") if args and isinstance(args[0], str) else ("width", "height")
    )
    if "codec" in kwargs and "codec" not in names:
        names = ("codec", "width", "height")
    if len(args) > len(names):
        raise TypeError(f"EncodedVideoSource takes at most {len(names)} arguments")
    values: dict[str, str | int] = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names or key in values:
            raise TypeError(f"EncodedVideoSource got an unexpected or repeated argument {key!r}")
        values[key] = value
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"EncodedVideoSource missing arguments: {', '.join(missing)}")
    codec, width, height = values.get("codec"), values["width"], values["height"]
    if (codec is not None and not isinstance(codec, str)) or not (
        isinstance(width, int) and isinstance(height, int)
    ):
        raise TypeError("EncodedVideoSource takes a str codec and int width and height")
    return codec, width, height
