"""The aiortc side of published video: feeds that captured frames wait in, and the tracks that
aiortc's ``RTCRtpSender`` reads.

Theory of operation. ``VideoSource.capture_frame`` is synchronous, may be called from any thread,
and must never block or pile up memory, so it only stamps the frame and drops it into a
:class:`VideoFrameFeed`: a tiny mailbox (:data:`PENDING_VIDEO_FRAMES`) where the newest frame
wins and older ones are dropped and counted. aiortc's sender loop calls
:meth:`VideoFrameTrack.recv`, which takes the oldest pending frame, converts it to ``yuv420p``
(the format aiortc's VP8 and H.264 encoders want) and returns it; aiortc then encodes it in its
executor (``RTCRtpSender._next_encoded_frame``). A slow encoder therefore costs frames, never
latency.

Pre-encoded video takes the other branch of ``_next_encoded_frame``: when ``recv()`` returns an
``av.Packet`` instead of a frame, aiortc skips its encoder and only packetizes
(``Vp8Encoder.pack`` / ``H264Encoder.pack``). :class:`EncodedVideoFeed` and
:class:`EncodedVideoTrack` carry such packets. Their drop rule differs: losing a delta frame
breaks decoding until the next keyframe, so on overflow every pending frame goes, delta frames
are refused until a keyframe arrives, and the producer is asked for one.

Keyframe requests. On RTCP PLI/FIR aiortc's sender only sets a private flag that its encode path
reads and its pack path ignores. An :class:`EncodedVideoTrack` that was given its sender
(:meth:`EncodedVideoTrack.bind_sender`) polls and clears that flag through
:func:`lkproto.asyncio._seam.take_force_keyframe`, so the producer hears about server keyframe
requests; without the binding (or if a future aiortc renames the flag) only locally detected
needs are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.stream import Stream
from av.video.reformatter import VideoReformatter

from lkproto.asyncio._seam import current_encoder, preset_encoder, take_force_keyframe
from lkproto.errors import LocalProtocolError

__all__ = [
    "CONVERT_INLINE_MAX_PIXELS",
    "ENCODED_PENDING_FRAMES",
    "KEYFRAME_POLL_INTERVAL_S",
    "PENDING_VIDEO_FRAMES",
    "VIDEO_CLOCK_RATE_HZ",
    "CapturedFrame",
    "EncodedVideoFeed",
    "EncodedVideoTrack",
    "LayerTrack",
    "PtsStamper",
    "SimulcastSplitter",
    "VideoFrameFeed",
    "VideoFrameTrack",
    "install_video_encoder",
    "run_conversion",
]

_log = logging.getLogger("lkproto.media")

VIDEO_CLOCK_RATE_HZ: Final = 90_000
"""RTP clock of every video codec (RFC 3551 §5, RFC 7741 §4.1, RFC 6184 §5.1); aiortc's
``VIDEO_TIME_BASE``."""

_TIME_BASE: Final = fractions.Fraction(1, VIDEO_CLOCK_RATE_HZ)

PENDING_VIDEO_FRAMES: Final = 2
"""Raw frames a source holds for its track. Two absorb one frame of scheduling jitter between
the capturer and aiortc's sender loop; anything older is stale and dropped."""

ENCODED_PENDING_FRAMES: Final = 60
"""Encoded frames a source holds for its track (2 s at 30 fps), mostly while nobody reads yet."""

CONVERT_INLINE_MAX_PIXELS: Final = 640 * 480 * 2
"""Largest frame converted on the event loop. Measured (PyAV 18, 2-CPU VM, 100 frames): copying
an RGBA frame into PyAV and converting it to yuv420p takes ~1.2-1.4 ms at 640x480, ~2.4 ms at
1280x720 and ~4.3 ms at 1920x1080. Past ~2 ms the hop to the default executor is the cheaper
price for the loop (``sws_scale`` releases the GIL, so the work really runs in parallel)."""

KEYFRAME_POLL_INTERVAL_S: Final = 0.1
"""How often an idle :class:`EncodedVideoTrack` with a bound sender checks for PLI/FIR."""

_T = TypeVar("_T")
_R = TypeVar("_R")


async def run_conversion(pixels: int, convert: Callable[[], _R]) -> _R:
    """Run a pixel conversion of a ``pixels``-sized frame inline or in the default executor.

    See :data:`CONVERT_INLINE_MAX_PIXELS` for the threshold and why.
    """
    if pixels <= CONVERT_INLINE_MAX_PIXELS:
        return convert()
    return await asyncio.get_running_loop().run_in_executor(None, convert)


class PtsStamper:
    """Turns capture timestamps into strictly increasing 90 kHz presentation timestamps.

    A positive ``timestamp_us`` is scaled to 90 kHz; 0 means "now", measured with ``clock`` (the
    asyncio default loop's clock, ``time.monotonic``) from the first such frame. A stamp that
    does not move forward (a producer bug, or mixing the two kinds) is bumped one tick past the
    previous one, because RTP receivers order frames by timestamp.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._origin: float | None = None
        self._last: int | None = None

    def stamp(self, timestamp_us: int) -> int:
        if timestamp_us > 0:
            pts = timestamp_us * VIDEO_CLOCK_RATE_HZ // 1_000_000
        else:
            now = self.clock()
            if self._origin is None:
                self._origin = now
            pts = round((now - self._origin) * VIDEO_CLOCK_RATE_HZ)
        if self._last is not None and pts <= self._last:
            pts = self._last + 1
        self._last = pts
        return pts


class _Mailbox(Generic[_T]):
    """A small thread-safe queue with one asyncio consumer.

    Producers (any thread) add items under the subclass's admission rule; the consumer
    calls :meth:`pop` and, when empty, ``await wait()``. A producer on another thread wakes the
    consumer through ``call_soon_threadsafe``.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.dropped = 0
        self._stamper = PtsStamper(clock)
        self._lock = threading.Lock()
        self._items: deque[_T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._waiter_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def pop(self) -> _T | None:
        """The oldest pending item, or None."""
        with self._lock:
            return self._items.popleft() if self._items else None

    async def wait(self) -> None:
        """Return once something is pending, the feed closed, or :meth:`wake` ran."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._items or self._closed:
                return
            waiter = self._waiter = loop.create_future()
            self._waiter_loop = loop
        try:
            await waiter
        finally:
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
            waiter.cancel()

    def wake(self) -> None:
        """Wake the waiting consumer (from any thread)."""
        with self._lock:
            waiter, loop = self._waiter, self._waiter_loop
        if waiter is None or loop is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _resolve(waiter)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, waiter)

    def close(self) -> None:
        """End the feed: pending items are discarded, the consumer sees the end."""
        with self._lock:
            self._closed = True
            self._items.clear()
        self.wake()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class CapturedFrame(Protocol):
    """What a :class:`VideoFrameFeed` carries: ``lkproto.rtc.VideoFrame`` (kept abstract so this
    driver layer does not import the public API layer)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def _to_av(self) -> av.VideoFrame: ...


@dataclass(frozen=True, slots=True)
class _PendingFrame:
    frame: CapturedFrame
    pts: int
    rotation: int


class VideoFrameFeed(_Mailbox[_PendingFrame]):
    """Raw frames waiting for the track; newest wins.

    Args:
        max_pending: frames kept; a new frame beyond it drops (and counts) the oldest.
        clock: seconds, for frames captured without a timestamp.
    """

    def __init__(
        self,
        max_pending: int = PENDING_VIDEO_FRAMES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        super().__init__(clock)
        self.max_pending = max_pending
        self.captured = 0

    def push(self, frame: CapturedFrame, timestamp_us: int = 0, rotation: int = 0) -> None:
        """Queue ``frame`` (not copied: the caller hands over an immutable buffer)."""
        with self._lock:
            if self._closed:
                return
            self.captured += 1
            pts = self._stamper.stamp(timestamp_us)
            if len(self._items) >= self.max_pending:
                self._items.popleft()
                self.dropped += 1
            self._items.append(_PendingFrame(frame, pts, rotation))
        self.wake()


class VideoFrameTrack(MediaStreamTrack):
    """The aiortc video track of a ``VideoSource``: ``recv()`` returns yuv420p ``av.VideoFrame``.

    Frames carry ``pts`` in :data:`VIDEO_CLOCK_RATE_HZ` units (``time_base`` 1/90000), which
    aiortc's encoders turn into RTP timestamps. Frames whose size differs from earlier ones go
    through unchanged: aiortc's encoders reopen themselves at the new size. Rotation is not
    applied or signalled (aiortc has no video-orientation header extension).
    """

    kind = "video"

    def __init__(self, feed: VideoFrameFeed) -> None:
        super().__init__()
        self._feed = feed
        # One scaler for the track's life: ``av.VideoFrame.reformat`` gives every frame a fresh
        # VideoReformatter, so swscale builds its context (filters, tables) 30 times a second;
        # reusing one halves the RGBA->I420 cost at 640x480 (0.56 -> 0.26 ms per frame on this
        # VM, docs/reference/benchmarks.md). recv() converts one frame at a time, so the scaler
        # is never used by two threads at once.
        self._scaler = VideoReformatter()

    @property
    def feed(self) -> VideoFrameFeed:
        return self._feed

    async def recv(self) -> av.VideoFrame:
        """The next captured frame as yuv420p.

        Raises:
            MediaStreamError: the track was stopped or its source closed.
        """
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            pending = self._feed.pop()
            if pending is not None:
                break
            if self._feed.closed:
                self.stop()
                raise MediaStreamError
            await self._feed.wait()
        captured = pending.frame
        pixels = captured.width * captured.height
        frame = await run_conversion(pixels, captured_to_yuv420p(captured, self._scaler))
        frame.pts = pending.pts
        frame.time_base = _TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        # A recv() parked in wait() re-checks readyState; the feed stays usable by a new track.
        self._feed.wake()


def captured_to_yuv420p(
    captured: CapturedFrame, scaler: VideoReformatter | None = None
) -> Callable[[], av.VideoFrame]:
    """A conversion job for :func:`run_conversion`: copy into PyAV, then swscale to yuv420p.

    Args:
        captured: the frame to convert.
        scaler: a reformatter to reuse (its swscale context is kept between frames of the same
            size and format); None converts with a new one. A scaler must not run two jobs at once.
    """

    def convert() -> av.VideoFrame:
        frame = captured._to_av()
        if frame.format.name == "yuv420p":
            return frame
        if scaler is None:
            return frame.reformat(format="yuv420p")
        return scaler.reformat(frame, format="yuv420p")

    return convert


@dataclass(frozen=True, slots=True)
class _EncodedFrame:
    data: bytes
    pts: int
    keyframe: bool


class EncodedVideoFeed(_Mailbox[_EncodedFrame]):
    """Encoded frames waiting for the track.

    Starts (and restarts after an overflow) by waiting for a keyframe: delta frames before it
    are useless to a decoder and are dropped. Every time a keyframe becomes necessary,
    ``keyframe_requests`` grows and ``on_keyframe_request`` is called (on the thread that
    noticed: the capturing thread for overflows, the event loop for PLI/FIR). Exceptions raised
    by the callback are logged and ignored.

    Args:
        max_pending: frames kept before the feed drops them all and waits for a keyframe.
        clock: seconds, for frames captured without a timestamp.
    """

    def __init__(
        self,
        max_pending: int = ENCODED_PENDING_FRAMES,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        super().__init__(clock)
        self.max_pending = max_pending
        self.captured = 0
        self.keyframe_requests = 0
        self.on_keyframe_request: Callable[[], None] | None = None
        self._need_keyframe = True

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._need_keyframe

    def push(self, data: bytes, *, timestamp_us: int, keyframe: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self.captured += 1
            pts = self._stamper.stamp(timestamp_us)
            request = False
            if keyframe:
                self._need_keyframe = False
                if len(self._items) >= self.max_pending:
                    self.dropped += len(self._items)
                    self._items.clear()
                self._items.append(_EncodedFrame(data, pts, keyframe))
            elif self._need_keyframe:
                self.dropped += 1
            elif len(self._items) >= self.max_pending:
                # A gap in a delta chain corrupts every frame up to the next keyframe.
                self.dropped += len(self._items) + 1
                self._items.clear()
                self._need_keyframe = request = True
            else:
                self._items.append(_EncodedFrame(data, pts, keyframe))
        if request:
            self.request_keyframe()
        self.wake()

    def require_keyframe(self) -> None:
        """Drop pending delta frames, refuse new ones until a keyframe, and ask for one.

        Used when a new track starts reading (a receiver joining mid-stream needs a keyframe).
        """
        with self._lock:
            if self._items and self._items[0].keyframe:
                need = False
            else:
                self.dropped += len(self._items)
                self._items.clear()
                self._need_keyframe = need = True
        if need:
            self.request_keyframe()

    def request_keyframe(self) -> None:
        """Count a keyframe request and tell the producer."""
        with self._lock:
            self.keyframe_requests += 1
            callback = self.on_keyframe_request
        if callback is None:
            return
        try:
            callback()
        except Exception:
            _log.exception("on_keyframe_request callback failed")


class EncodedVideoTrack(MediaStreamTrack):
    """The aiortc track of an ``EncodedVideoSource``: ``recv()`` returns ``av.Packet`` objects,
    so aiortc's sender packetizes them (``Vp8Encoder.pack`` / ``H264Encoder.pack``) instead of
    encoding. ``pts`` is in 1/90000, ``is_keyframe`` is set.

    Call :meth:`bind_sender` with the ``RTCRtpSender`` that sends this track to forward RTCP
    PLI/FIR keyframe requests to the feed.
    """

    kind = "video"

    def __init__(self, feed: EncodedVideoFeed) -> None:
        super().__init__()
        self._feed = feed
        self._sender: RTCRtpSender | None = None
        self._flag_missing_logged = False

    @property
    def feed(self) -> EncodedVideoFeed:
        return self._feed

    def bind_sender(self, sender: RTCRtpSender | None) -> None:
        """Watch ``sender`` for keyframe requests (None stops watching)."""
        self._sender = sender
        self._feed.wake()

    def poll_keyframe_request(self) -> bool:
        """Move a pending PLI/FIR from the bound sender to the feed; True if there was one."""
        sender = self._sender
        if sender is None:
            return False
        taken = take_force_keyframe(sender)
        if taken is None:
            if not self._flag_missing_logged:
                self._flag_missing_logged = True
                _log.warning("= aiortc sender has no keyframe flag; PLI/FIR will not be forwarded")
            return False
        if not taken:
            return False
        _log.debug("< keyframe request (PLI/FIR)")
        self._feed.request_keyframe()
        return True

    async def recv(self) -> av.Packet[Stream]:
        """The next encoded frame as a packet.

        Raises:
            MediaStreamError: the track was stopped or its source closed.
        """
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            self.poll_keyframe_request()
            pending = self._feed.pop()
            if pending is not None:
                break
            if self._feed.closed:
                self.stop()
                raise MediaStreamError
            if self._sender is None:
                await self._feed.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KEYFRAME_POLL_INTERVAL_S):
                    await self._feed.wait()
        packet = av.Packet(pending.data)
        packet.pts = pending.pts
        packet.time_base = _TIME_BASE
        packet.is_keyframe = pending.keyframe
        return packet

    def stop(self) -> None:
        super().stop()
        self._sender = None
        self._feed.wake()


def install_video_encoder(sender: RTCRtpSender, *, mime_type: str, bitrate: int) -> None:
    """Start ``sender``'s VP8/H.264 encoder at ``bitrate`` (``VideoEncoding.max_bitrate``).

    aiortc starts every encoder at its own default (VP8 500 kbps, H.264 1 Mbps) and only moves it
    on REMB (against livekit-server v1.13.5 a VP8 publication stayed at ~505 kbps), so without
    this the publish option would only reach the announcement. aiortc clamps the value to its
    encoder's range (VP8 250 kbps to 1.5 Mbps, H.264 0.5 to 3 Mbps). The encoder is preset with
    :func:`lkproto.asyncio._seam.preset_encoder`, like
    :func:`lkproto.asyncio.audio.install_opus_encoder`: call it before the first frame.

    Raises:
        ValueError: not a video sender, or a non-positive bitrate.
        LocalProtocolError: the sender already created an encoder.
        LkError: this aiortc lacks the internals relied on.
    """
    current = current_encoder(sender)
    if sender.kind != "video":
        raise ValueError(f"install_video_encoder needs a video sender, not {sender.kind!r}")
    if bitrate <= 0:
        raise ValueError(f"bitrate must be > 0, got {bitrate}")
    if current is not None:
        raise LocalProtocolError("the sender already has an encoder: it has started sending")
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime_type, clockRate=VIDEO_CLOCK_RATE_HZ))
    encoder.target_bitrate = bitrate  # type: ignore[attr-defined]
    preset_encoder(sender, encoder)


class SimulcastSplitter:
    """One captured stream, several sizes: the layers of a simulcast track (core/simulcast.py).

    The source's track (a :class:`VideoFrameTrack`) is read by one task; each frame is offered
    to every running :class:`LayerTrack`, which keeps only the newest (a slow layer encoder costs
    that layer frames, never latency) and scales it to its size when aiortc's layer sender asks
    for it. A paused layer is offered nothing, so its sender waits in ``recv()`` and encodes
    nothing: dynacast stops the layers no subscriber watches at no CPU cost. While every layer is
    paused the source is not read either (its own mailbox drops the stale frames).
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        self._source = source
        self._layers: list[LayerTrack] = []
        self._task: asyncio.Task[None] | None = None
        self._resumed = asyncio.Event()

    @property
    def layers(self) -> tuple[LayerTrack, ...]:
        return tuple(self._layers)

    def layer(self, width: int, height: int, max_framerate: float = 0.0) -> LayerTrack:
        """A new layer track of ``width`` x ``height`` (``max_framerate`` 0: every frame)."""
        track = LayerTrack(self, width, height, max_framerate)
        self._layers.append(track)
        return track

    def _layer_changed(self) -> None:
        if any(layer.running for layer in self._layers):
            self._resumed.set()
        else:
            self._resumed.clear()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="lkproto-simulcast-splitter"
            )

    async def _run(self) -> None:
        try:
            while True:
                await self._resumed.wait()
                frame = await self._source.recv()
                if not isinstance(frame, av.VideoFrame):
                    continue  # a source of captured frames returns only these
                for layer in self._layers:
                    if layer.running:
                        layer._offer(frame)
        except MediaStreamError:
            pass
        finally:
            for layer in self._layers:
                layer._end()

    def stop(self) -> None:
        """Stop reading the source and end every layer track."""
        if self._task is not None:
            self._task.cancel()
        for layer in self._layers:
            layer._end()


class LayerTrack(MediaStreamTrack):
    """One simulcast layer: the newest frame of its :class:`SimulcastSplitter`, scaled.

    ``recv()`` returns yuv420p frames of the layer's size with the source frame's ``pts``, at
    most ``max_framerate`` per second (frames closer than that to the last one are skipped, as
    the official SDKs' lower layers run at 15 and 20 fps).
    """

    kind = "video"

    def __init__(
        self, splitter: SimulcastSplitter, width: int, height: int, max_framerate: float
    ) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self._splitter = splitter
        self._min_gap_pts = int(VIDEO_CLOCK_RATE_HZ / max_framerate) if max_framerate else 0
        self._last_pts: int | None = None
        self._pending: av.VideoFrame | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._running = True
        self._ended = False
        # Its own scaler: every layer scales the same source frame at once, in executor threads,
        # and a frame's built-in reformat() shares one scaler (SwsContext) between them, which
        # hung a layer for good in testing.
        self._scaler = VideoReformatter()

    @property
    def running(self) -> bool:
        """False while paused (dynacast: no subscriber watches this layer)."""
        return self._running and not self._ended

    def set_running(self, running: bool) -> None:
        """Pause (no frames, so no encoding) or resume the layer."""
        self._running = running
        if not running:
            self._pending = None
        self._splitter._layer_changed()

    def _offer(self, frame: av.VideoFrame) -> None:
        pts = int(frame.pts or 0)
        # A millisecond of slack: capture timestamps of a 15 fps source are not exact.
        slack = VIDEO_CLOCK_RATE_HZ // 1000
        if (
            self._last_pts is not None
            and self._min_gap_pts
            and pts - self._last_pts < self._min_gap_pts - slack
        ):
            return
        self._pending = frame
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _end(self) -> None:
        self._ended = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.VideoFrame:
        """The layer's next frame.

        Raises:
            MediaStreamError: the source ended or the track was stopped.
        """
        self._splitter._layer_changed()
        while self._pending is None:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        frame, self._pending = self._pending, None
        self._last_pts = int(frame.pts or 0)
        if (frame.width, frame.height) == (self.width, self.height):
            return frame
        width, height, scaler = self.width, self.height, self._scaler
        scaled = await run_conversion(
            frame.width * frame.height,
            lambda: scaler.reformat(frame, width=width, height=height, format="yuv420p"),
        )
        scaled.pts = frame.pts
        scaled.time_base = frame.time_base
        return scaled

    def stop(self) -> None:
        super().stop()
        self._end()
