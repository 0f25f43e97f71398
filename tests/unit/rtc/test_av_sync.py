"""AVSynchronizer and its FramePacer (lkproto.rtc.av_sync)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

import pytest

from lkproto import rtc
from lkproto.errors import LocalProtocolError
from lkproto.rtc.av_sync import FramePacer

if TYPE_CHECKING:
    from lkproto.rtc.audio_source import AudioSource
    from lkproto.rtc.video_source import VideoSource

_BOUND_S = 5.0


def test_pacer_spaces_frames_one_interval_apart() -> None:
    pacer = FramePacer(25, 0.3)
    assert pacer.delay(10.0) == 0.0  # the first frame is due at once
    pacer.sent(10.0)
    assert pacer.delay(10.0) == pytest.approx(0.04)
    assert pacer.delay(10.03) == pytest.approx(0.01)
    pacer.sent(10.04)
    assert pacer.delay(10.05) == pytest.approx(0.03)
    assert pacer.actual_fps == pytest.approx(25)


def test_pacer_catches_up_then_restarts_after_a_long_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pacer = FramePacer(10, 0.3)
    pacer.sent(pacer.delay(0.0) or 0.0)
    # 0.25 s late: inside the tolerance, so the frames due meanwhile go at once.
    assert pacer.delay(0.35) == 0.0
    pacer.sent(0.35)
    assert pacer.delay(0.35) == 0.0  # the one due at 0.2 as well
    pacer.sent(0.35)
    with caplog.at_level(logging.WARNING):
        assert pacer.delay(2.0) == 0.0  # 1.7 s late: restart from now
    assert "behind schedule" in caplog.text
    pacer.sent(2.0)
    assert pacer.delay(2.0) == pytest.approx(0.1)
    pacer.reset()
    assert pacer.delay(5.0) == 0.0
    assert pacer.actual_fps == 0.0


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), True])
def test_pacer_refuses_a_bad_rate(fps: float) -> None:
    with pytest.raises(LocalProtocolError):
        FramePacer(fps, 0.3)


class _Audio:
    def __init__(self) -> None:
        self.frames: list[rtc.AudioFrame] = []
        self.queued_duration = 0.5
        self.cleared = 0
        self.drained = asyncio.Event()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.frames.append(frame)

    def clear_queue(self) -> None:
        self.cleared += 1

    async def wait_for_playout(self) -> None:
        await self.drained.wait()


class _Video:
    def __init__(self, fail_on: int = -1) -> None:
        self.frames: list[rtc.VideoFrame] = []
        self.fail_on = fail_on
        self.sent = asyncio.Event()

    def capture_frame(self, frame: rtc.VideoFrame) -> None:
        if len(self.frames) == self.fail_on:
            self.fail_on = -1
            raise ValueError("refused")
        self.frames.append(frame)
        self.sent.set()


def _sync(audio: _Audio, video: _Video, fps: float = 200, **kw: float) -> rtc.AVSynchronizer:
    return rtc.AVSynchronizer(
        audio_source=cast("AudioSource", audio),
        video_source=cast("VideoSource", video),
        video_fps=fps,
        **kw,
    )


def _frames(n: int) -> list[rtc.VideoFrame]:
    return [rtc.VideoFrame(2, 2, rtc.VideoBufferType.RGBA, bytes([i]) * 16) for i in range(n)]


async def test_frames_reach_their_sources_in_order() -> None:
    audio, video = _Audio(), _Video()
    sync = _sync(audio, video)
    frames = _frames(5)
    tone = rtc.AudioFrame.create(48_000, 1, 480)
    for i, frame in enumerate(frames):
        await sync.push(frame, timestamp=i / 200)
        await sync.push(tone, timestamp=(i + 1) / 200)
    audio.drained.set()
    async with asyncio.timeout(_BOUND_S):
        await sync.wait_for_playout()
    assert video.frames == frames
    assert audio.frames == [tone] * 5
    assert sync.last_video_time == pytest.approx(4 / 200)
    assert sync.last_audio_time == pytest.approx(5 / 200 - 0.5)
    await sync.aclose()
    with pytest.raises(LocalProtocolError, match="closed"):
        await sync.push(frames[0])


async def test_a_refused_video_frame_does_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audio, video = _Audio(), _Video(fail_on=1)
    audio.drained.set()
    sync = _sync(audio, video)
    frames = _frames(3)
    for frame in frames:
        await sync.push(frame)
    async with asyncio.timeout(_BOUND_S):
        await sync.wait_for_playout()
    assert video.frames == [frames[0], frames[2]]
    assert "could not send a video frame" in caplog.text
    await sync.aclose()


async def test_the_video_queue_is_bounded_and_clear_queue_empties_it() -> None:
    audio, video = _Audio(), _Video()
    audio.drained.set()
    # 1 fps and a 1 s queue of one frame: frame 0 goes out, frame 1 waits in the sending task
    # for its turn, frame 2 fills the queue, and the push of frame 3 must wait.
    sync = _sync(audio, video, fps=1, video_queue_size_ms=1000)
    frames = _frames(4)
    await sync.push(frames[0])
    async with asyncio.timeout(_BOUND_S):
        await video.sent.wait()
    await sync.push(frames[1])
    await sync.push(frames[2])
    blocked = asyncio.ensure_future(sync.push(frames[3]))
    await asyncio.sleep(0)
    assert not blocked.done()
    await sync.clear_queue()
    assert audio.cleared == 1
    async with asyncio.timeout(_BOUND_S):
        await blocked  # room again
    await sync.clear_queue()
    async with asyncio.timeout(_BOUND_S):
        await sync.wait_for_playout()
    assert video.frames == frames[:2]  # 2 and 3 were dropped
    await sync.aclose()


async def test_aclose_releases_wait_for_playout() -> None:
    audio, video = _Audio(), _Video()
    audio.drained.set()
    sync = _sync(audio, video, fps=1, video_queue_size_ms=5000)
    for frame in _frames(3):
        await sync.push(frame)
    waiter = asyncio.ensure_future(sync.wait_for_playout())
    await asyncio.sleep(0)
    assert not waiter.done()
    await sync.aclose()
    async with asyncio.timeout(_BOUND_S):
        await waiter
    assert len(video.frames) < 3


async def test_bad_rate_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        _sync(_Audio(), _Video(), fps=0)
