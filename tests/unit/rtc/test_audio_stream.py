"""AudioStream over a real FrameFanout fed by a fake decoded-audio source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from lkproto.asyncio.fanout import DEFAULT_QUEUE_FRAMES, FrameFanout
from lkproto.errors import UnsupportedFeatureError
from lkproto.rtc.audio_frame import AudioFrame
from lkproto.rtc.audio_stream import AudioFrameEvent, AudioStream
from lkproto.rtc.track import RemoteAudioTrack, RemoteVideoTrack, Track, TrackKind
from tests.conftest import scaled


class FakeSource:
    """What aiortc's RemoteStreamTrack looks like to the fanout: ``kind`` and ``recv()``."""

    def __init__(self, kind: str = "audio") -> None:
        self.kind = kind
        self._frames: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()

    def push(self, frame: av.AudioFrame | None) -> None:
        self._frames.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        frame = await self._frames.get()
        if frame is None:
            raise MediaStreamError
        return frame


def decoded_frames(
    freq: float, seconds: float, rate: int = 48_000, channels: int = 2
) -> list[av.AudioFrame]:
    """20 ms s16 frames like aiortc's Opus decoder gives (48 kHz stereo by default)."""
    per_frame = rate // 50
    n = round(rate * seconds)
    wave = (0.3 * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)
    pcm = np.repeat(wave, channels)
    frames = []
    for index in range(n // per_frame):
        chunk = pcm[index * per_frame * channels : (index + 1) * per_frame * channels]
        frame = av.AudioFrame.from_ndarray(
            chunk.reshape(1, -1), format="s16", layout="mono" if channels == 1 else "stereo"
        )
        frame.sample_rate = rate
        frame.pts = index * per_frame
        frame.time_base = Fraction(1, rate)
        frames.append(frame)
    return frames


@pytest.fixture
async def fed() -> AsyncIterator[tuple[FakeSource, RemoteAudioTrack]]:
    source = FakeSource()
    fanout = FrameFanout(source)
    yield source, RemoteAudioTrack(sid="TR_a", name="a", kind=TrackKind.KIND_AUDIO, fanout=fanout)
    await fanout.aclose()


async def collect(stream: AudioStream) -> list[AudioFrameEvent]:
    async def run() -> list[AudioFrameEvent]:
        return [event async for event in stream]

    return await asyncio.wait_for(run(), scaled(10))


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def test_resamples_48k_stereo_to_16k_mono(fed: tuple[FakeSource, RemoteAudioTrack]) -> None:
    source, track = fed
    stream = AudioStream(track, sample_rate=16_000, num_channels=1)
    for frame in decoded_frames(440, 1.0):
        source.push(frame)
    source.push(None)

    events = await collect(stream)

    assert all(isinstance(e, AudioFrameEvent) for e in events)
    assert {(e.frame.sample_rate, e.frame.num_channels) for e in events} == {(16_000, 1)}
    pcm = np.concatenate([np.frombuffer(e.frame.data, dtype=np.int16) for e in events])
    assert abs(len(pcm) - 16_000) <= 16  # the resampler is flushed at the end
    assert peak_hz(pcm, 16_000) == pytest.approx(440, abs=5)
    level = 20 * np.log10(np.sqrt(np.mean(pcm[800:-800].astype(np.float64) ** 2)))
    assert level == pytest.approx(20 * np.log10(0.3 * 32767 / np.sqrt(2)), abs=1)


async def test_same_format_passes_through_unchanged(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    stream = AudioStream.from_track(track=track, sample_rate=48_000, num_channels=2)
    frames = decoded_frames(1000, 0.1)
    for frame in frames:
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    assert [bytes(e.frame.data) for e in events] == [bytes(f.planes[0]) for f in frames]


@pytest.mark.parametrize(("frame_size_ms", "samples"), [(10, 160), (30, 480), (100, 1600)])
async def test_frame_size_ms_rechunks_to_exact_sizes(
    fed: tuple[FakeSource, RemoteAudioTrack], frame_size_ms: int, samples: int
) -> None:
    source, track = fed
    stream = AudioStream(track, sample_rate=16_000, frame_size_ms=frame_size_ms)
    for frame in decoded_frames(440, 0.5):
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    assert events
    assert {e.frame.samples_per_channel for e in events} == {samples}
    assert {len(e.frame.data) for e in events} == {samples}
    total = sum(e.frame.samples_per_channel for e in events)
    assert 8000 - samples < total <= 8000  # only a last partial frame is dropped


async def test_input_format_change_mid_stream_is_handled(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    stream = AudioStream(track, sample_rate=48_000, num_channels=1)
    for frame in decoded_frames(440, 0.1) + decoded_frames(440, 0.1, rate=24_000, channels=1):
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    total = sum(e.frame.samples_per_channel for e in events)
    assert abs(total - 9600) <= 48


async def test_mono_input_is_upmixed_to_stereo_at_full_level(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    stream = AudioStream(track, sample_rate=24_000, num_channels=2, frame_size_ms=20)
    for frame in decoded_frames(440, 0.2, channels=1):
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    assert {(e.frame.num_channels, e.frame.samples_per_channel) for e in events} == {(2, 480)}
    pcm = np.concatenate([np.frombuffer(e.frame.data, dtype=np.int16) for e in events])
    left, right = pcm[0::2], pcm[1::2]
    assert np.array_equal(left, right)
    assert np.max(np.abs(left)) == pytest.approx(0.3 * 32767, rel=0.05)  # no 3 dB loss


async def test_end_of_track_ends_iteration(fed: tuple[FakeSource, RemoteAudioTrack]) -> None:
    source, track = fed
    stream = AudioStream(track)
    source.push(None)
    assert await collect(stream) == []
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_aclose_unsubscribes_and_stops_iteration(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    stream = AudioStream(track)
    other = AudioStream(track)
    assert track._fanout.readers == 2
    frames = decoded_frames(440, 0.1)
    source.push(frames[0])
    first = await asyncio.wait_for(stream.__anext__(), scaled(5))
    assert first.frame.samples_per_channel == 960
    waiting = asyncio.create_task(stream.__anext__())  # blocks: nothing more was decoded
    await asyncio.sleep(0)
    assert not waiting.done()
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert track._fanout.readers == 1
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, scaled(5))
    # the other reader is unaffected
    source.push(frames[1])
    assert (await asyncio.wait_for(other.__anext__(), scaled(5))).frame.samples_per_channel == 960
    assert (await asyncio.wait_for(other.__anext__(), scaled(5))).frame.samples_per_channel == 960
    await other.aclose()


async def test_slow_reader_drops_oldest_frames_and_counts_them(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    stream = AudioStream(track, capacity=2, num_channels=2)
    frames = decoded_frames(440, 0.2)
    for frame in frames:
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    assert stream.dropped_frames == 8
    assert [bytes(e.frame.data) for e in events] == [bytes(f.planes[0]) for f in frames[-2:]]


async def test_capacity_zero_means_the_default_bound(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    _, track = fed
    stream = AudioStream(track)
    assert stream._queue.capacity == DEFAULT_QUEUE_FRAMES
    assert (stream.sample_rate, stream.num_channels) == (48_000, 1)
    await stream.aclose()


async def test_tracks_without_a_fanout_are_rejected() -> None:
    with pytest.raises(ValueError, match="local track"):
        AudioStream(Track(sid="TR_l", name="l", kind=TrackKind.KIND_AUDIO))  # no fanout
    video = FrameFanout(FakeSource(kind="video"))
    try:
        with pytest.raises(ValueError, match="audio track"):
            AudioStream(
                RemoteVideoTrack(sid="TR_v", name="v", kind=TrackKind.KIND_VIDEO, fanout=video)
            )
    finally:
        await video.aclose()


@pytest.mark.parametrize(
    "kwargs",
    [{"sample_rate": 0}, {"num_channels": 0}, {"capacity": -1}, {"frame_size_ms": 0}],
)
async def test_bad_arguments_raise_value_error(
    fed: tuple[FakeSource, RemoteAudioTrack], kwargs: dict[str, int]
) -> None:
    _, track = fed
    with pytest.raises(ValueError, match="must"):
        AudioStream(track, **kwargs)  # type: ignore[arg-type]


class Halver:
    """A frame processor of the official shape: halves every sample while enabled."""

    def __init__(self) -> None:
        self.enabled = True
        self.processed = 0
        self.closed = 0

    def _process(self, frame: AudioFrame) -> AudioFrame:
        self.processed += 1
        pcm = np.frombuffer(frame.data, dtype=np.int16) // 2
        return AudioFrame(
            pcm.tobytes(), frame.sample_rate, frame.num_channels, frame.samples_per_channel
        )

    def _close(self) -> None:
        self.closed += 1


async def test_noise_cancellation_processor_runs_on_every_frame_and_closes(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    processor = Halver()
    stream = AudioStream(track, sample_rate=48_000, num_channels=2, noise_cancellation=processor)
    frames = decoded_frames(1000, 0.1)
    for frame in frames:
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    assert processor.processed == len(events) == len(frames)
    expected = [np.frombuffer(bytes(f.planes[0]), dtype=np.int16) // 2 for f in frames]
    assert [bytes(e.frame.data) for e in events] == [e.tobytes() for e in expected]
    await stream.aclose()
    assert processor.closed == 1


async def test_disabled_processor_passes_frames_and_auto_close_false_keeps_it_open(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    source, track = fed
    processor = Halver()
    processor.enabled = False
    stream = AudioStream.from_track(
        track=track,
        sample_rate=48_000,
        num_channels=2,
        noise_cancellation=processor,
        auto_close_noise_cancellation=False,
    )
    frames = decoded_frames(1000, 0.06)
    for frame in frames:
        source.push(frame)
    source.push(None)
    events = await collect(stream)
    assert processor.processed == 0
    assert [bytes(e.frame.data) for e in events] == [bytes(f.planes[0]) for f in frames]
    await stream.aclose()
    assert processor.closed == 0


async def test_from_track_leaves_the_processor_open_by_default(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    # The official from_track defaults auto_close_noise_cancellation to False (the constructor
    # and from_participant to True); tests/interop/test_av_sync_interop.py compares both SDKs.
    source, track = fed
    processor = Halver()
    stream = AudioStream.from_track(track=track, sample_rate=48_000, noise_cancellation=processor)
    source.push(decoded_frames(1000, 0.02)[0])
    source.push(None)
    events = await collect(stream)
    assert processor.processed == len(events) > 0
    await stream.aclose()
    assert processor.closed == 0


async def test_native_noise_cancellation_options_are_refused(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    _, track = fed
    with pytest.raises(UnsupportedFeatureError) as info:
        AudioStream(track, noise_cancellation=object())
    assert info.value.feature == "AudioStream.noise_cancellation"
    with pytest.raises(TypeError, match="sample_rat"):
        AudioStream(track, sample_rat=16_000)


async def test_loop_is_honoured_as_the_running_loop_and_another_is_refused(
    fed: tuple[FakeSource, RemoteAudioTrack],
) -> None:
    _, track = fed
    running = AudioStream(track, loop=asyncio.get_running_loop())
    await running.aclose()
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(UnsupportedFeatureError) as info:
            AudioStream(track, loop=other)
        assert info.value.feature == "AudioStream.loop"
    finally:
        other.close()
