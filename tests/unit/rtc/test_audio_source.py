"""AudioSource: official shape, frame checks, back-pressure, playout and the aiortc track."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from lkproto.asyncio.audio import SAMPLES_PER_FRAME
from lkproto.rtc.audio_frame import AudioFrame
from lkproto.rtc.audio_source import AudioSource
from tests.conftest import scaled


def tone_frame(rate: int, channels: int, seconds: float, freq: float = 440) -> AudioFrame:
    n = round(rate * seconds)
    wave = (0.3 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)
    return AudioFrame(np.repeat(wave, channels).tobytes(), rate, channels, n)


async def test_official_properties() -> None:
    source = AudioSource(24_000, 2)
    assert (source.sample_rate, source.num_channels) == (24_000, 2)
    assert source.queued_duration == 0.0
    assert (source.silence_frames, source.dropped_frames) == (0, 0)
    await source.aclose()


async def test_media_track_is_created_once() -> None:
    source = AudioSource(48_000, 1)
    track = source._media_track()
    assert isinstance(track, MediaStreamTrack)
    assert track.kind == "audio"
    assert source._media_track() is track
    await source.aclose()


@pytest.mark.parametrize(("rate", "channels"), [(16_000, 1), (48_000, 2)])
async def test_capture_frame_rejects_a_different_rate_or_channel_count(
    rate: int, channels: int
) -> None:
    source = AudioSource(48_000, 1)
    with pytest.raises(ValueError, match="source takes 48000 Hz x 1"):
        await source.capture_frame(AudioFrame.create(rate, channels, 480))
    await source.aclose()


def test_unsupported_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="1 or 2"):
        AudioSource(48_000, 6)


async def test_captured_audio_is_queued_then_played_out_by_the_track() -> None:
    source = AudioSource(48_000, 1)
    frame = tone_frame(48_000, 1, 0.04)
    await source.capture_frame(frame)
    await source.capture_frame(AudioFrame.create(48_000, 1, 0))  # empty: ignored
    assert source.queued_duration == pytest.approx(0.04)
    track = source._media_track()
    played: list[av.AudioFrame] = []
    for _ in range(2):
        frame_out = await track.recv()
        assert isinstance(frame_out, av.AudioFrame)
        played.append(frame_out)
    sent = b"".join(bytes(f.planes[0])[: 2 * SAMPLES_PER_FRAME] for f in played)
    assert sent == bytes(frame.data)
    await asyncio.wait_for(source.wait_for_playout(), scaled(1))
    assert source.queued_duration == 0.0
    await track.recv()
    assert source.silence_frames == 1
    await source.aclose()


async def test_capture_frame_waits_when_more_than_queue_size_is_captured() -> None:
    source = AudioSource(16_000, 1, queue_size_ms=1000)
    producer = asyncio.create_task(source.capture_frame(tone_frame(16_000, 1, 3.0)))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(producer), scaled(0.05))
    assert source.queued_duration == pytest.approx(1.0)  # never more than queue_size_ms
    source.clear_queue()  # room again: the producer queues the next second
    await asyncio.sleep(0)
    assert not producer.done()
    source.clear_queue()  # and the last one
    await asyncio.wait_for(producer, scaled(5))
    assert source.queued_duration == pytest.approx(1.0, abs=0.01)
    await source.aclose()


async def test_wait_for_playout_follows_real_playout() -> None:
    source = AudioSource(48_000, 2, queue_size_ms=100)
    await source.capture_frame(tone_frame(48_000, 2, 0.06))
    waiter = asyncio.create_task(source.wait_for_playout())
    track = source._media_track()
    await track.recv()
    await track.recv()
    assert not waiter.done()
    await track.recv()
    await asyncio.wait_for(waiter, scaled(1))
    await source.aclose()


async def test_wait_for_playout_returns_at_once_when_nothing_is_queued() -> None:
    source = AudioSource(48_000, 1)
    await asyncio.wait_for(source.wait_for_playout(), scaled(1))
    await source.aclose()


async def test_real_time_playout_of_a_resampled_source() -> None:
    source = AudioSource(16_000, 1, queue_size_ms=200)
    track = source._media_track()

    async def consume() -> None:
        while True:
            await track.recv()

    consumer = asyncio.create_task(consume())
    try:
        for _ in range(10):  # 300 ms, pushed faster than real time
            await source.capture_frame(tone_frame(16_000, 1, 0.03))
        await asyncio.wait_for(source.wait_for_playout(), scaled(5))
    finally:
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    assert source.queued_duration == 0.0
    assert source.dropped_frames == 0
    await source.aclose()


async def test_aclose_ends_the_track_and_releases_everyone() -> None:
    source = AudioSource(48_000, 1, queue_size_ms=100)
    producer = asyncio.create_task(source.capture_frame(tone_frame(48_000, 1, 0.5)))
    playout = asyncio.create_task(source.wait_for_playout())
    await asyncio.sleep(0)
    track = source._media_track()
    await source.aclose()
    await asyncio.wait_for(asyncio.gather(producer, playout), scaled(5))
    with pytest.raises(MediaStreamError):
        await track.recv()
    await source.capture_frame(tone_frame(48_000, 1, 0.02))  # ignored after close
    assert source.queued_duration == 0.0
    await source.aclose()


async def test_track_made_after_close_is_already_ended() -> None:
    source = AudioSource(48_000, 1)
    await source.aclose()
    with pytest.raises(MediaStreamError):
        await source._media_track().recv()


async def test_capture_without_a_reader_is_paced_not_blocked() -> None:
    """Nothing publishes the source: like the official SDK's source, audio beyond the queue is
    played out into the void in real time, so the producer finishes instead of hanging."""
    source = AudioSource(48_000, 1, queue_size_ms=100)
    frame = AudioFrame(bytes(2 * 4_800), 48_000, 1, 4_800)  # 100 ms
    await asyncio.wait_for(
        asyncio.gather(*(source.capture_frame(frame) for _ in range(4))), scaled(10)
    )
    assert source._buffer.unsent_samples >= 2 * 4_800
    assert source._buffer.queued_samples <= 4_800  # never more than the queue holds


async def test_a_stopped_track_is_replaced_by_a_live_one() -> None:
    """aiortc stops a sender's track when its connection closes (full reconnect): the source
    then hands out a fresh track on the same queue."""
    source = AudioSource(48_000, 1)
    first = source._media_track()
    assert source._media_track() is first
    first.stop()
    second = source._media_track()
    assert second is not first
    assert second.readyState == "live"
    await source.aclose()
    assert source._media_track().readyState == "ended"
