"""``AVSynchronizer``: audio and video published in step, shaped like the official one.

An application that generates both (an avatar, a video file) pushes each video frame and the
audio that goes with it. Audio goes straight to the :class:`~lkproto.rtc.AudioSource`, whose
queue already sends it in real time (20 ms frames, waiting when the queue is full). Video frames
wait in a small queue and go to the :class:`~lkproto.rtc.VideoSource` at ``video_fps``, so the
pushing side is held back by whichever runs out of room first and both stay within the queue
sizes of each other. This is what the official ``AVSynchronizer`` does (livekit.rtc
``synchronizer.py``); the pacing rule is :class:`FramePacer`, a sans-I/O machine fed with
``now``.

Differences: pushing after :meth:`AVSynchronizer.aclose` raises
:class:`~lkproto.errors.LocalProtocolError` (the official one queues the frame forever), and
``video_fps`` must be positive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from typing import TYPE_CHECKING, Final

from lkproto.core.durations import positive_seconds
from lkproto.errors import LocalProtocolError
from lkproto.rtc.audio_frame import AudioFrame

if TYPE_CHECKING:
    from lkproto.rtc.audio_source import AudioSource
    from lkproto.rtc.video_frame import VideoFrame
    from lkproto.rtc.video_source import VideoSource

__all__ = ["AVSynchronizer", "FramePacer"]

_log = logging.getLogger("lkproto.media")

# The official defaults (livekit.rtc synchronizer.py AVSynchronizer.__init__).
DEFAULT_VIDEO_QUEUE_MS: Final = 100.0
DEFAULT_MAX_DELAY_TOLERANCE_MS: Final = 300.0


class FramePacer:
    """When the next video frame is due, as a sans-I/O machine (time is an input).

    Frames are due every ``1 / fps`` seconds from the first one. A sender that falls behind
    catches up by sending at once, unless it is more than ``max_lag_s`` late: then the schedule
    starts again from now (so a stall does not cause a burst of frames).

    Args:
        fps: frames per second.
        max_lag_s: how late the schedule may run before it restarts.

    Raises:
        LocalProtocolError: ``fps`` or ``max_lag_s`` is not a positive number.
    """

    def __init__(self, fps: float, max_lag_s: float) -> None:
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < math.inf:
            raise LocalProtocolError(f"video_fps must be a positive number, got {fps!r}")
        self.fps = fps
        self.interval_s = 1 / fps
        self.max_lag_s = positive_seconds("max delay tolerance", max_lag_s)
        self._next: float | None = None
        # Send times over about a second: what actual_fps averages.
        self._sent: collections.deque[float] = collections.deque(maxlen=max(2, math.ceil(fps)))

    def delay(self, now: float) -> float:
        """Seconds to wait before sending the next frame (0: send now)."""
        if self._next is None:
            self._next = now
        late = now - self._next
        if late > self.max_lag_s:
            _log.warning("video frames are %.0f ms behind schedule; restarting it", late * 1000)
            self._next = now
        return max(0.0, self._next - now)

    def sent(self, now: float) -> None:
        """A frame was sent at ``now``; the next is due one interval after its due time."""
        if self._next is None:
            self._next = now
        self._sent.append(now)
        self._next += self.interval_s

    def reset(self) -> None:
        """Forget the schedule: the next frame is due at once."""
        self._next = None
        self._sent.clear()

    @property
    def actual_fps(self) -> float:
        """Frames per second over the last second or so of sends (0 before two sends)."""
        if len(self._sent) < 2 or self._sent[-1] == self._sent[0]:
            return 0.0
        return (len(self._sent) - 1) / (self._sent[-1] - self._sent[0])


class AVSynchronizer:
    """Publishes pushed audio and video frames in step (official ``AVSynchronizer`` shape).

    Args:
        audio_source: where audio frames go (sent in real time by the source itself).
        video_source: where video frames go, ``video_fps`` per second.
        video_fps: the video frame rate.
        video_queue_size_ms: how much video may wait, in ms of frames (at least one frame;
            0 or less: unbounded).
        _max_delay_tolerance_ms: how late video may run before its schedule restarts (the
            official keyword, underscore included).

    Must be created on the event loop that pushes (it starts the video task there).

    Example:
        ::

            sync = rtc.AVSynchronizer(audio_source=audio, video_source=video, video_fps=30)
            async for video_frame, audio_frame in generate():
                await sync.push(video_frame)
                await sync.push(audio_frame)
            await sync.wait_for_playout()
            await sync.aclose()
    """

    def __init__(
        self,
        *,
        audio_source: AudioSource,
        video_source: VideoSource,
        video_fps: float,
        video_queue_size_ms: float = DEFAULT_VIDEO_QUEUE_MS,
        _max_delay_tolerance_ms: float = DEFAULT_MAX_DELAY_TOLERANCE_MS,
    ) -> None:
        self._pacer = FramePacer(video_fps, _max_delay_tolerance_ms / 1000)
        self._audio_source = audio_source
        self._video_source = video_source
        self._video_fps = video_fps
        size = max(1, int(video_fps * video_queue_size_ms / 1000)) if video_queue_size_ms > 0 else 0
        self._queue: asyncio.Queue[tuple[VideoFrame, float | None]] = asyncio.Queue(size)
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._last_video_time = 0.0
        self._last_audio_time = 0.0
        self._task = self._loop.create_task(self._send_video())

    @property
    def actual_fps(self) -> float:
        """The video frame rate achieved over the last second or so."""
        return self._pacer.actual_fps

    @property
    def last_video_time(self) -> float:
        """The ``timestamp`` pushed with the last video frame sent (0 until one is)."""
        return self._last_video_time

    @property
    def last_audio_time(self) -> float:
        """The last pushed audio ``timestamp`` minus the audio still queued: what is playing."""
        return self._last_audio_time - self._audio_source.queued_duration

    async def push(self, frame: VideoFrame | AudioFrame, timestamp: float | None = None) -> None:
        """Queue a frame; returns once there is room for it.

        Args:
            frame: a video or an audio frame.
            timestamp: optional, the frame's time in seconds (for audio, its end), reported by
                :attr:`last_video_time` / :attr:`last_audio_time`.

        Raises:
            LocalProtocolError: the synchronizer was closed.
        """
        if self._closed:
            raise LocalProtocolError("AVSynchronizer is closed")
        if isinstance(frame, AudioFrame):
            await self._audio_source.capture_frame(frame)
            if timestamp is not None:
                self._last_audio_time = timestamp
            return
        await self._queue.put((frame, timestamp))

    async def clear_queue(self) -> None:
        """Drop the audio and video not yet sent (e.g. to interrupt)."""
        self._audio_source.clear_queue()
        self._drop_video()

    def _drop_video(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._queue.task_done()

    async def wait_for_playout(self) -> None:
        """Wait until every pushed frame, audio and video, has been sent."""
        await asyncio.gather(self._audio_source.wait_for_playout(), self._queue.join())

    def reset(self) -> None:
        """Restart the video schedule (after a pause, so frames do not rush to catch up)."""
        self._pacer.reset()

    async def aclose(self) -> None:
        """Stop sending video; later pushes raise. The sources stay open (they are yours)."""
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        # Releases wait_for_playout: frames nobody will send are done.
        self._drop_video()

    async def _send_video(self) -> None:
        while True:
            frame, timestamp = await self._queue.get()
            try:
                wait = self._pacer.delay(self._loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
                self._video_source.capture_frame(frame)
                self._pacer.sent(self._loop.time())
                if timestamp is not None:
                    self._last_video_time = timestamp
            except Exception:
                # A frame the source refuses (wrong size, closed source) must not stop the rest.
                _log.exception("AVSynchronizer could not send a video frame")
            finally:
                self._queue.task_done()
