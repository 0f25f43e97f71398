"""Audio you publish, shaped like ``livekit.rtc.AudioSource``.

Push :class:`~lkproto.rtc.AudioFrame` s with :meth:`AudioSource.capture_frame`; once the track
made from the source is published, the audio is sent in real time, 20 ms per RTP packet, as
mono or stereo Opus (see :mod:`lkproto.asyncio.audio` for the pipeline).

Differences from the official SDK, all deliberate:

- the queue drains as audio is *sent*: until the track is published and its sender runs, no
  audio leaves the queue, so :meth:`AudioSource.capture_frame` blocks once ``queue_size_ms`` is
  full (the official source discards audio in real time even when nothing is published);
- ``queue_size_ms=0`` (the official "no buffering" mode) means a queue of one 20 ms frame;
- only mono and stereo sources are supported.
"""

from __future__ import annotations

import asyncio

from lkproto.asyncio.audio import AudioSourceTrack, PlayoutBuffer
from lkproto.rtc.audio_frame import AudioFrame

__all__ = ["AudioSource"]


class AudioSource:
    """A real-time audio source with a bounded queue.

    Args:
        sample_rate: rate of the frames you will capture, in Hz (any rate: it is resampled to
            48 kHz for Opus).
        num_channels: 1 or 2; captured frames must match.
        queue_size_ms: how far ahead of playout :meth:`capture_frame` may get, in ms.
        loop: accepted for compatibility; the running loop is always used.

    Raises:
        ValueError: a non-positive rate, a negative queue size, or a channel count other than
            1 or 2.
    """

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        queue_size_ms: int = 1000,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._buffer = PlayoutBuffer(
            input_rate=sample_rate, num_channels=num_channels, capacity_ms=queue_size_ms
        )
        self._track: AudioSourceTrack | None = None

    @property
    def sample_rate(self) -> int:
        """Sample rate captured frames must have, in Hz."""
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        """Channel count captured frames must have."""
        return self._num_channels

    @property
    def queued_duration(self) -> float:
        """Seconds of captured audio not yet sent."""
        return self._buffer.queued_duration

    @property
    def silence_frames(self) -> int:
        """lkproto extra: 20 ms frames of silence sent because too little audio was queued."""
        return self._track.silence_frames if self._track is not None else 0

    @property
    def dropped_frames(self) -> int:
        """lkproto extra: 20 ms of queued audio dropped, each, because sending fell behind by
        more than :data:`~lkproto.asyncio.audio.MAX_LAG_S` and skipped ahead."""
        return self._track.dropped_frames if self._track is not None else 0

    def clear_queue(self) -> None:
        """Drop all audio not yet sent (e.g. to interrupt speech); waiters are released."""
        self._buffer.clear()

    async def capture_frame(self, frame: AudioFrame) -> None:
        """Queue ``frame`` for sending.

        Returns once the whole frame is queued: at once while the queue has room, later if
        it would overflow ``queue_size_ms`` (it then waits for playout to make room). Empty
        frames, and frames captured after :meth:`aclose`, are ignored, as in the official SDK.

        Raises:
            ValueError: the frame's sample rate or channel count differ from the source's.
        """
        if frame.sample_rate != self._sample_rate or frame.num_channels != self._num_channels:
            raise ValueError(
                f"frame is {frame.sample_rate} Hz x {frame.num_channels} channel(s), but the "
                f"source takes {self._sample_rate} Hz x {self._num_channels} channel(s)"
            )
        if frame.samples_per_channel == 0:
            return
        await self._buffer.put(frame.data)

    async def wait_for_playout(self) -> None:
        """Wait until everything captured so far has been sent (returns at once if nothing is
        queued, or once the source is closed)."""
        await self._buffer.wait_drained()

    async def aclose(self) -> None:
        """Close the source: queued audio is dropped, waiters are released and the track ends
        (its sender stops). Idempotent."""
        self._buffer.close()
        if self._track is not None:
            self._track.stop()

    def _media_track(self) -> AudioSourceTrack:
        """The aiortc track that sends this source (created on first use, the same one while
        live; after aiortc stopped it, e.g. when a full reconnect closed its connection, a new
        one takes over the queue)."""
        if self._track is None or (self._track.readyState != "live" and not self._buffer.closed):
            self._track = AudioSourceTrack(self._buffer)
            if self._buffer.closed:
                self._track.stop()
        return self._track
