"""The aiortc side of audio: playout buffer, paced track, Opus encoder and its installation.

Pacing runs on the real event-loop clock; tests assert what the track does (frames, pts,
counters, whether ``recv`` is still waiting), never how long it took.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, cast

import aiortc
import av
import numpy as np
import pytest
from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusEncoder as AiortcOpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import (
    AudioStreamTrack,
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import compute_audio_level_dbov

from lkproto.asyncio import _seam, audio
from lkproto.asyncio._seam import current_encoder, preset_encoder
from lkproto.asyncio.audio import (
    DEFAULT_OPUS_BITRATE,
    SAMPLES_PER_FRAME,
    AudioSourceTrack,
    BatchWorker,
    OpusEncoder,
    PlayoutBuffer,
    audio_level_dbov,
    batch_worker,
    decode_on_batch_worker,
    encode_step,
    install_opus_encoder,
    mono_to_stereo,
)
from lkproto.errors import LkError, LocalProtocolError
from tests.conftest import scaled

RATE = 48_000


def tone(freq: float, rate: int, seconds: float, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    """Interleaved int16 sine, the same on every channel."""
    n = round(rate * seconds)
    wave = amp * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    return np.repeat(wave.astype(np.int16), channels)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms_db(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2))))


def pcm_of(frame: av.AudioFrame) -> np.ndarray:
    channels = frame.layout.nb_channels
    return np.frombuffer(bytes(frame.planes[0]), dtype=np.int16)[: frame.samples * channels]


def pcm_frames(pcm: np.ndarray, channels: int, rate: int = RATE) -> Iterator[av.AudioFrame]:
    per_frame = SAMPLES_PER_FRAME * channels
    layout = "mono" if channels == 1 else "stereo"
    for index, start in enumerate(range(0, len(pcm), per_frame)):
        frame = av.AudioFrame.from_ndarray(
            pcm[start : start + per_frame].reshape(1, -1), format="s16", layout=layout
        )
        frame.sample_rate = rate
        frame.pts = index * SAMPLES_PER_FRAME
        frame.time_base = Fraction(1, rate)
        yield frame


# --- PlayoutBuffer -------------------------------------------------------------------------


async def test_buffer_queues_and_takes_48k_pcm_unchanged() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=2, capacity_ms=100)
    pcm = tone(440, RATE, 0.03, channels=2)
    await buffer.put(pcm.tobytes())
    assert buffer.queued_samples == 1440
    assert buffer.queued_duration == pytest.approx(0.03)
    taken = buffer.take(SAMPLES_PER_FRAME) + buffer.take(SAMPLES_PER_FRAME)
    assert taken == pcm.tobytes()
    assert buffer.take(SAMPLES_PER_FRAME) == b""


async def test_buffer_rejects_partial_samples_and_bad_arguments() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=2, capacity_ms=100)
    with pytest.raises(ValueError, match="whole number"):
        await buffer.put(bytes(6))
    with pytest.raises(ValueError, match="1 or 2"):
        PlayoutBuffer(input_rate=RATE, num_channels=3, capacity_ms=100)
    with pytest.raises(ValueError, match="sample_rate"):
        PlayoutBuffer(input_rate=0, num_channels=1, capacity_ms=100)
    with pytest.raises(ValueError, match="queue_size_ms"):
        PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=-1)


def test_buffer_capacity_is_at_least_one_frame() -> None:
    assert PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=0).capacity_samples == 960
    assert PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=1000).capacity_samples == (
        48_000
    )


@pytest.mark.parametrize("rate", [16_000, 24_000, 44_100])
async def test_buffer_resamples_to_48k_keeping_pitch_and_level(rate: int) -> None:
    buffer = PlayoutBuffer(input_rate=rate, num_channels=1, capacity_ms=2000)
    pcm = tone(440, rate, 1.0)
    for start in range(0, len(pcm), rate // 100):  # 10 ms captures, as producers do
        await buffer.put(pcm[start : start + rate // 100].tobytes())
    out = np.frombuffer(buffer.take(buffer.queued_samples), dtype=np.int16)
    assert abs(len(out) - RATE) <= 64  # the resampler's filter keeps a few samples
    assert peak_hz(out, RATE) == pytest.approx(440, abs=5)
    assert rms_db(out[480:-480]) == pytest.approx(rms_db(pcm), abs=1)


async def test_buffer_put_waits_while_full_and_resumes_as_audio_is_taken() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=1000)
    producer = asyncio.create_task(buffer.put(tone(440, RATE, 3.0).tobytes()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(producer), scaled(0.05))
    assert buffer.queued_samples == 48_000  # exactly the capacity, never more
    taken = 0
    while not producer.done():
        taken += len(buffer.take(SAMPLES_PER_FRAME)) // 2
        assert buffer.queued_samples <= 48_000
        await asyncio.sleep(0)
    assert taken + buffer.queued_samples == 3 * 48_000
    assert taken >= 2 * 48_000  # it could only finish once 2 s had made room


async def test_concurrent_puts_do_not_interleave() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=20)
    first = np.full(2000, 1, dtype=np.int16)
    second = np.full(2000, 2, dtype=np.int16)
    tasks = [asyncio.create_task(buffer.put(x.tobytes())) for x in (first, second)]
    out = bytearray()
    while not all(t.done() for t in tasks) or buffer.queued_samples:
        out += buffer.take(100)
        await asyncio.sleep(0)
    assert np.frombuffer(out, dtype=np.int16).tolist() == [1] * 2000 + [2] * 2000


async def test_a_small_put_that_fits_still_waits_behind_a_blocked_one() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=20)
    big = asyncio.create_task(buffer.put(np.full(2000, 1, dtype=np.int16).tobytes()))
    await asyncio.sleep(0)
    assert not big.done()  # 960 of 2000 samples queued, waiting for room
    small = asyncio.create_task(buffer.put(np.full(10, 2, dtype=np.int16).tobytes()))
    # Room for the small put, which runs before the woken big one resumes.
    out = bytearray(buffer.take(SAMPLES_PER_FRAME))
    while not (big.done() and small.done()) or buffer.queued_samples:
        out += buffer.take(100)
        await asyncio.sleep(0)
    assert np.frombuffer(out, dtype=np.int16).tolist() == [1] * 2000 + [2] * 10


async def test_wait_drained_clear_and_close_release_waiters() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=20)
    await buffer.wait_drained()  # nothing queued: returns at once
    producer = asyncio.create_task(buffer.put(bytes(2 * 3 * SAMPLES_PER_FRAME)))
    drained = asyncio.create_task(buffer.wait_drained())
    await asyncio.sleep(0)
    assert not drained.done()
    buffer.clear()  # the producer moves on with the rest, so still not drained
    await asyncio.sleep(0)
    assert not drained.done()
    assert buffer.discard(10_000) == SAMPLES_PER_FRAME
    buffer.close()
    await asyncio.wait_for(asyncio.gather(producer, drained), scaled(5))
    await buffer.put(bytes(4))  # ignored once closed
    assert buffer.queued_samples == 0


async def test_cancelled_put_keeps_what_was_queued() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=20)
    producer = asyncio.create_task(buffer.put(bytes(2 * 3 * SAMPLES_PER_FRAME)))
    await asyncio.sleep(0)
    producer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await producer
    assert buffer.queued_samples == SAMPLES_PER_FRAME
    buffer.take(SAMPLES_PER_FRAME)
    await asyncio.wait_for(buffer.wait_drained(), scaled(1))


# --- AudioSourceTrack ----------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "layout"), [(1, "mono"), (2, "stereo")])
async def test_track_frames_are_20ms_48k_s16_with_continuous_pts(
    channels: int, layout: str
) -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=channels, capacity_ms=200)
    pcm = tone(1000, RATE, 0.06, channels=channels)
    await buffer.put(pcm.tobytes())
    track = AudioSourceTrack(buffer)
    assert track.kind == "audio"
    frames = [await track.recv() for _ in range(4)]
    for index, frame in enumerate(frames):
        assert frame.format.name == "s16"
        assert frame.layout.name == layout
        assert (frame.samples, frame.sample_rate) == (960, 48_000)
        assert frame.time_base == Fraction(1, 48_000)
        assert frame.pts == index * 960
    assert np.concatenate([pcm_of(f) for f in frames[:3]]).tobytes() == pcm.tobytes()
    assert not pcm_of(frames[3]).any()
    assert (track.frames_sent, track.silence_frames, track.dropped_frames) == (4, 1, 0)


async def test_track_plays_resampled_16k_input_as_960_sample_frames() -> None:
    buffer = PlayoutBuffer(input_rate=16_000, num_channels=1, capacity_ms=500)
    await buffer.put(tone(440, 16_000, 0.2).tobytes())
    track = AudioSourceTrack(buffer)
    frames = [await track.recv() for _ in range(8)]
    assert all(f.samples == 960 for f in frames)
    out = np.concatenate([pcm_of(f) for f in frames])
    assert peak_hz(out, RATE) == pytest.approx(440, abs=10)


async def test_track_recv_waits_until_the_frame_is_due() -> None:
    loop = asyncio.get_running_loop()
    track = AudioSourceTrack(PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=100))
    await track.recv()
    start = track._start
    assert start is not None
    for index in range(1, 4):
        await track.recv()
        # never early: frame n leaves at t0 + n * 20 ms or later (1 ms of clock slack)
        assert loop.time() >= start + index * 0.020 - 0.001
    # Move the timeline so the next frame is due far in the future: recv must keep waiting.
    track._start = loop.time() + 3600
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(track.recv(), scaled(0.1))
    track._start = loop.time() - 4 * 0.020
    frame = await asyncio.wait_for(track.recv(), scaled(5))
    assert frame.pts == 4 * 960


async def test_tracks_share_one_20ms_grid_so_their_frames_fall_due_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audio, "BATCH_WORKER", True)
    loop = asyncio.get_running_loop()
    first = AudioSourceTrack(PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=100))
    await first.recv()  # due at once: no wait before the first frame
    await asyncio.sleep(0.007)  # a track published later, off the first one's phase
    second = AudioSourceTrack(PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=100))
    await second.recv()
    assert first._start is not None
    assert second._start is not None
    assert first._start <= loop.time()
    frames_apart = (second._start - first._start) / 0.020
    assert frames_apart == pytest.approx(round(frames_apart), abs=1e-6)


# --- BatchWorker ---------------------------------------------------------------------------


async def test_worker_runs_one_loop_turns_jobs_as_one_batch_off_the_loop() -> None:
    worker = BatchWorker(asyncio.get_running_loop())
    threads: list[int] = []

    def job(n: int) -> int:
        threads.append(threading.get_ident())
        return n * n

    count = audio.DELIVERY_SLICE_JOBS + 2  # one batch, handed back in two slices
    futures = [worker.submit(lambda n=n: job(n)) for n in range(count)]  # type: ignore[misc]
    results = await asyncio.wait_for(asyncio.gather(*futures), scaled(5))
    assert results == [n * n for n in range(count)]
    assert (worker.batches, worker.jobs) == (2, count)
    assert len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    # A later turn is a new batch on the same thread.
    assert await asyncio.wait_for(worker.submit(lambda: job(99)), scaled(5)) == 99 * 99
    assert (worker.batches, worker.jobs, worker.threads_started) == (3, count + 1, 1)
    assert len(set(threads)) == 1


async def test_worker_raises_a_jobs_error_from_its_future_and_survives_cancellation() -> None:
    worker = BatchWorker(asyncio.get_running_loop())
    release = threading.Event()

    def boom() -> int:
        raise ValueError("bad frame")

    blocked = worker.submit(lambda: release.wait(scaled(5)))
    failing = worker.submit(boom)
    cancelled = worker.submit(lambda: 1)
    cancelled.cancel()  # its awaiting coroutine went away while the job was queued
    release.set()
    assert await asyncio.wait_for(blocked, scaled(5)) is True
    with pytest.raises(ValueError, match="bad frame"):
        await asyncio.wait_for(failing, scaled(5))
    assert await asyncio.wait_for(worker.submit(lambda: 2), scaled(5)) == 2


async def test_worker_thread_ends_when_idle_and_a_new_one_takes_the_next_job() -> None:
    worker = BatchWorker(asyncio.get_running_loop(), idle_exit_s=0.01)
    assert await asyncio.wait_for(worker.submit(lambda: 1), scaled(5)) == 1
    thread = worker._thread
    assert thread is not None
    await asyncio.wait_for(asyncio.to_thread(thread.join, scaled(5)), scaled(6))
    assert not thread.is_alive()
    assert worker._thread is None
    assert await asyncio.wait_for(worker.submit(lambda: 2), scaled(5)) == 2
    assert worker.threads_started == 2


async def test_batch_worker_is_one_per_loop() -> None:
    assert batch_worker() is batch_worker(asyncio.get_running_loop())
    other = asyncio.new_event_loop()
    try:
        assert batch_worker(other) is not batch_worker()
    finally:
        other.close()


async def test_track_bursts_when_a_little_late_without_dropping() -> None:
    loop = asyncio.get_running_loop()
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=1000)
    await buffer.put(tone(440, RATE, 0.2).tobytes())
    track = AudioSourceTrack(buffer)
    await track.recv()
    track._start = loop.time() - 0.1  # 100 ms behind: under MAX_LAG_S
    pts = [(await track.recv()).pts for _ in range(5)]
    assert pts == [960, 1920, 2880, 3840, 4800]
    assert track.dropped_frames == 0
    assert buffer.queued_samples == 200 * 48 - 6 * 960


async def test_track_skips_ahead_when_far_behind_and_drops_that_audio() -> None:
    loop = asyncio.get_running_loop()
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=2000)
    await buffer.put(tone(440, RATE, 2.0).tobytes())
    track = AudioSourceTrack(buffer)
    await track.recv()
    track._start = loop.time() - 1.0  # the sender stalled for a second
    frame = await asyncio.wait_for(track.recv(), scaled(5))
    skipped = track.dropped_frames
    assert skipped >= 40
    assert frame.pts == (1 + skipped) * 960  # the timeline jumps with the wall clock
    assert buffer.queued_samples == 96_000 - (2 + skipped) * 960
    next_frame = await track.recv()
    assert next_frame.pts == frame.pts + 960  # and then continues without bursting


async def test_track_sends_silence_when_empty() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=2, capacity_ms=100)
    track = AudioSourceTrack(buffer)
    frames = [await track.recv() for _ in range(3)]
    assert all(not pcm_of(f).any() for f in frames)
    assert [f.pts for f in frames] == [0, 960, 1920]
    assert track.silence_frames == 3


async def test_track_holds_a_partial_frame_once_then_sends_it_padded() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=100)
    await buffer.put(np.full(480, 1000, dtype=np.int16).tobytes())
    track = AudioSourceTrack(buffer)
    held = pcm_of(await track.recv())
    assert not held.any()
    assert buffer.queued_samples == 480
    padded = pcm_of(await track.recv())
    assert padded[:480].tolist() == [1000] * 480
    assert not padded[480:].any()
    assert buffer.queued_samples == 0
    await asyncio.wait_for(buffer.wait_drained(), scaled(1))


async def test_track_partial_frame_completed_in_time_is_sent_whole() -> None:
    buffer = PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=100)
    track = AudioSourceTrack(buffer)
    await buffer.put(np.full(480, 5, dtype=np.int16).tobytes())
    assert not pcm_of(await track.recv()).any()  # held
    await buffer.put(np.full(480, 5, dtype=np.int16).tobytes())  # the real-time producer
    assert pcm_of(await track.recv()).tolist() == [5] * 960
    assert track.silence_frames == 1


async def test_stopped_track_raises_media_stream_error() -> None:
    track = AudioSourceTrack(PlayoutBuffer(input_rate=RATE, num_channels=1, capacity_ms=100))
    await track.recv()
    pending = asyncio.create_task(track.recv())  # sleeping until its frame is due
    await asyncio.sleep(0)
    track.stop()
    assert track.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, scaled(5))
    with pytest.raises(MediaStreamError):
        await track.recv()


# --- OpusEncoder ---------------------------------------------------------------------------


def decode_opus(packets: list[bytes]) -> np.ndarray:
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = RATE
    decoder.layout = "mono"
    decoder.format = "s16"
    out: list[np.ndarray] = []
    for data in packets:
        for frame in decoder.decode(av.Packet(data)):
            out.append(frame.to_ndarray().reshape(-1, frame.layout.nb_channels)[:, 0])
    return np.concatenate(out)


def toc_is_stereo(packet: bytes) -> bool:
    return bool(packet[0] & 0x04)  # RFC 6716 §3.1: the TOC byte's "s" bit


def test_mono_encoder_round_trips_a_1khz_tone_in_smaller_packets() -> None:
    pcm = tone(1000, RATE, 1.0)
    ours, theirs = OpusEncoder(channels=1), AiortcOpusEncoder()
    our_packets: list[bytes] = []
    their_packets: list[bytes] = []
    timestamps: list[int] = []
    for frame in pcm_frames(pcm, 1):
        payloads, timestamp = ours.encode(frame)
        our_packets += payloads
        timestamps.append(timestamp)
        their_packets += theirs.encode(frame)[0]

    assert len(our_packets) == 50
    assert timestamps == [i * 960 for i in range(50)]
    assert not any(toc_is_stereo(p) for p in our_packets)
    assert all(toc_is_stereo(p) for p in their_packets)
    assert sum(map(len, our_packets)) < sum(map(len, their_packets))

    decoded = decode_opus(our_packets)
    assert peak_hz(decoded[4800:], RATE) == pytest.approx(1000, abs=5)


def test_stereo_encoder_sends_stereo_packets() -> None:
    encoder = OpusEncoder(channels=2, bitrate=64_000)
    packets: list[bytes] = []
    for frame in pcm_frames(tone(1000, RATE, 0.2, channels=2), 2):
        packets += encoder.encode(frame)[0]
    assert len(packets) == 10
    assert all(toc_is_stereo(p) for p in packets)


def test_encoder_converts_other_rates_and_layouts() -> None:
    encoder = OpusEncoder(channels=1)
    packets: list[bytes] = []
    for frame in pcm_frames(tone(1000, 16_000, 0.5, channels=2), 2, rate=16_000):
        packets += encoder.encode(frame)[0]
    assert len(packets) >= 24  # 0.5 s of 20 ms packets, less the resampler's delay
    assert not any(toc_is_stereo(p) for p in packets)
    assert peak_hz(decode_opus(packets)[4800:], RATE) == pytest.approx(1000, abs=5)


def test_idle_silence_costs_almost_nothing() -> None:
    """An idle source sends silence all the time: it must not cost the full bitrate."""
    encoder = OpusEncoder(channels=1)
    sizes = [
        len(p) for f in pcm_frames(np.zeros(48_000, np.int16), 1) for p in encoder.encode(f)[0]
    ]
    assert max(sizes[5:]) <= 10


def test_stereo_encoder_upmixes_mono_input_at_full_level() -> None:
    encoder = OpusEncoder(channels=2, bitrate=64_000)
    packets: list[bytes] = []
    for frame in pcm_frames(tone(1000, RATE, 0.5), 1):
        packets += encoder.encode(frame)[0]
    assert len(packets) == 25
    assert all(toc_is_stereo(p) for p in packets)
    decoded = decode_opus(packets)
    assert rms_db(decoded[4800:]) == pytest.approx(rms_db(tone(1000, RATE, 0.5)), abs=1)


def test_mono_to_stereo_copies_samples() -> None:
    mono = np.array([1, -2, 300], dtype=np.int16)
    stereo = np.frombuffer(mono_to_stereo(mono.tobytes()), dtype=np.int16)
    assert stereo.tolist() == [1, 1, -2, -2, 300, 300]


def test_encoder_arguments_are_checked() -> None:
    assert (OpusEncoder().channels, OpusEncoder().bitrate) == (1, DEFAULT_OPUS_BITRATE)
    with pytest.raises(ValueError, match="1 or 2"):
        OpusEncoder(channels=6)
    with pytest.raises(ValueError, match="bitrate"):
        OpusEncoder(bitrate=1000)
    with pytest.raises(ValueError, match="application"):
        OpusEncoder(application="music")
    assert OpusEncoder(application="voip").application == "voip"
    with pytest.raises(TypeError, match="AudioFrame"):
        OpusEncoder().encode(av.VideoFrame(16, 16))


def test_pack_passes_encoded_packets_through() -> None:
    packet = av.Packet(b"\x78\x01\x02")
    assert OpusEncoder().pack(packet) == ([b"\x78\x01\x02"], 0)
    packet.pts = 10
    packet.time_base = Fraction(1, 1000)
    assert OpusEncoder().pack(packet) == ([b"\x78\x01\x02"], 480)


# --- install_opus_encoder ------------------------------------------------------------------


async def test_install_opus_encoder_presets_a_real_sender() -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(AudioStreamTrack())
        install_opus_encoder(sender, channels=1, bitrate=32_000)
        encoder = current_encoder(sender)
        assert isinstance(encoder, OpusEncoder)
        assert (encoder.channels, encoder.bitrate) == (1, 32_000)
        install_opus_encoder(sender, channels=2, bitrate=64_000)  # ours may be replaced
        assert isinstance(encoder := current_encoder(sender), OpusEncoder)
        assert encoder.channels == 2

        video = pc.addTrack(VideoStreamTrack())
        with pytest.raises(ValueError, match="audio sender"):
            install_opus_encoder(video, channels=1, bitrate=32_000)
    finally:
        await pc.close()


async def test_install_refuses_a_sender_that_already_encodes() -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(AudioStreamTrack())
        preset_encoder(sender, AiortcOpusEncoder())
        with pytest.raises(LocalProtocolError, match="started"):
            install_opus_encoder(sender, channels=1, bitrate=32_000)
    finally:
        await pc.close()


async def test_install_fails_clearly_when_aiortc_internals_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(AudioStreamTrack())

        async def eager(self: aiortc.RTCRtpSender, codec: object) -> None:
            return None

        monkeypatch.setattr(aiortc.RTCRtpSender, "_next_encoded_frame", eager)
        with pytest.raises(LkError, match=r"aiortc .*RTCRtpSender.__encoder.*_seam.py"):
            install_opus_encoder(sender, channels=1, bitrate=32_000)
    finally:
        await pc.close()


# --- the audio level computed with numpy (issue 18) ----------------------------------------

OPUS_CODEC = RTCRtpCodecParameters(
    mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111
)


class ToneTrack(MediaStreamTrack):
    """Yields 20 ms mono frames of a 1 kHz tone at once (no pacing), counting reads."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.frames = list(pcm_frames(tone(1000, RATE, 1.0), 1))
        self.reads = 0

    async def recv(self) -> av.AudioFrame:
        frame = self.frames[self.reads % len(self.frames)]
        self.reads += 1
        return frame


async def _encoded(sender: aiortc.RTCRtpSender) -> Any:
    return await asyncio.wait_for(sender._next_encoded_frame(OPUS_CODEC), scaled(5))


@pytest.mark.parametrize("batch", [False, True], ids=["executor", "batch-worker"])
async def test_installed_sender_encodes_off_the_loop_with_the_level_aiortc_computes(
    monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    monkeypatch.setattr(audio, "BATCH_WORKER", batch)
    pc = aiortc.RTCPeerConnection()
    try:
        track = ToneTrack()
        sender = pc.addTrack(track)
        install_opus_encoder(sender, channels=1, bitrate=32_000)
        loop = asyncio.get_running_loop()
        hops: list[object] = []
        run_in_executor = loop.run_in_executor

        def counting(executor: Any, func: Any, *args: Any) -> Any:
            hops.append(func)
            return run_in_executor(executor, func, *args)

        monkeypatch.setattr(loop, "run_in_executor", counting)
        # aiortc's per-sample level is not computed at all any more.
        monkeypatch.setattr(aiortc.rtp, "compute_audio_level_dbov", None)
        reference = OpusEncoder(channels=1, bitrate=32_000)  # libopus is deterministic
        jobs_before = batch_worker().jobs
        levels = []
        for index in range(5):
            frame = await _encoded(sender)
            assert frame is not None
            assert frame.payloads == reference.encode(track.frames[index])[0]
            assert frame.timestamp == index * SAMPLES_PER_FRAME
            levels.append(frame.audio_level)
        assert levels == [compute_audio_level_dbov(f) for f in track.frames[:5]]
        assert levels[0] in (-14, -13)  # a 0.3 full-scale sine: RMS 0.212, -13.5 dBov
        if batch:  # off the loop on its batch worker, not in its default executor
            assert hops == []
            assert batch_worker().jobs - jobs_before == 5
        else:  # one executor job per frame, as aiortc encodes
            assert hops == [encode_step] * 5
            assert batch_worker().jobs == jobs_before
        assert isinstance(current_encoder(sender), OpusEncoder)
    finally:
        await pc.close()


async def test_replaced_step_still_drops_frames_while_disabled_and_follows_replace_track() -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        track = ToneTrack()
        sender = pc.addTrack(track)
        install_opus_encoder(sender, channels=1, bitrate=32_000)
        assert _seam.set_sender_enabled(sender, False)
        assert await _encoded(sender) is None
        assert track.reads == 1  # read, so nothing piles up, and dropped
        assert _seam.set_sender_enabled(sender, True)
        other = ToneTrack()
        sender.replaceTrack(other)
        assert await _encoded(sender) is not None
        assert (track.reads, other.reads) == (1, 1)
    finally:
        await pc.close()


async def test_replaced_step_creates_aiortcs_encoder_when_none_was_preset() -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        sender = pc.addTrack(ToneTrack())
        _seam.encode_audio_with(sender, encode_step)
        frame = await _encoded(sender)
        assert frame is not None
        assert frame.payloads
        assert isinstance(current_encoder(sender), AiortcOpusEncoder)
    finally:
        await pc.close()


def test_encode_step_passes_packets_through_without_a_level() -> None:
    packet = av.Packet(b"\x78\x01\x02")
    assert encode_step(OpusEncoder(), packet) == ([b"\x78\x01\x02"], 0, None)
    with pytest.raises(TypeError, match="str"):
        encode_step(OpusEncoder(), "not a frame")


async def test_encode_audio_with_refuses_video_and_changed_internals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pc = aiortc.RTCPeerConnection()
    try:
        with pytest.raises(ValueError, match="audio sender"):
            _seam.encode_audio_with(pc.addTrack(VideoStreamTrack()), encode_step)
        sender = pc.addTrack(AudioStreamTrack())
        monkeypatch.delattr(aiortc.rtcrtpsender, "RTCEncodedFrame")
        with pytest.raises(LkError, match="_next_encoded_frame"):
            _seam.encode_audio_with(sender, encode_step)
    finally:
        await pc.close()


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("amp", [0.0, 1e-5, 0.001, 0.3, 1.0])
def test_audio_level_equals_aiortcs(channels: int, amp: float) -> None:
    for frame in pcm_frames(tone(440, RATE, 0.1, channels, amp), channels):
        assert audio_level_dbov(frame) == compute_audio_level_dbov(frame)


def test_module_constants_agree() -> None:
    assert audio.SAMPLES_PER_FRAME == audio.OPUS_SAMPLE_RATE_HZ * audio.FRAME_DURATION_MS // 1000


# --- decode_on_batch_worker ------------------------------------------------------------------


def _opus_packets(count: int) -> list[bytes]:
    encoder = OpusEncoder(channels=1)
    packets: list[bytes] = []
    for frame in pcm_frames(tone(440, RATE, 0.02 * count), 1):
        packets += encoder.encode(frame)[0]
    return packets


async def test_received_audio_is_decoded_in_order_on_the_batch_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audio, "BATCH_WORKER", True)
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        receiver._track = RemoteStreamTrack(kind="audio")  # as setRemoteDescription makes it
        assert decode_on_batch_worker(receiver)
        assert not decode_on_batch_worker(receiver)  # once per receiver
        input_q = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        track = receiver.track
        assert isinstance(track, RemoteStreamTrack)
        output_q = track._queue
        worker = batch_worker()
        jobs_before = worker.jobs
        packets = _opus_packets(10)
        for index, packet in enumerate(packets):  # as _handle_rtp_packet does, on the loop
            input_q.put((OPUS_CODEC, JitterFrame(packet, index * SAMPLES_PER_FRAME)))
        frames = [await asyncio.wait_for(output_q.get(), scaled(5)) for _ in packets]
        assert worker.jobs - jobs_before == len(packets)
        assert input_q.qsize() == 0  # nothing went to aiortc's own decoder thread
        # The same samples aiortc's decoder gives for the same packets, in order.
        reference = get_decoder(OPUS_CODEC)
        expected = [
            f for i, p in enumerate(packets) for f in reference.decode(JitterFrame(p, i * 960))
        ]
        assert all(isinstance(f, av.AudioFrame) for f in expected)
        assert [pcm_of(f).tobytes() for f in frames] == [
            pcm_of(cast(av.AudioFrame, f)).tobytes() for f in expected
        ]
        # The end of the track still goes to aiortc's thread, which ends the track.
        input_q.put(None)
        assert input_q.get_nowait() is None
    finally:
        await pc.close()


async def test_e2ee_receivers_keep_aiortcs_decoder_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "BATCH_WORKER", True)
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        receiver._track = RemoteStreamTrack(kind="audio")
        assert decode_on_batch_worker(receiver)
        _seam.transform_decoder_input(receiver, lambda data: data)  # what E2EE installs
        input_q = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        item = (OPUS_CODEC, JitterFrame(_opus_packets(1)[0], 0))
        input_q.put(item)
        assert input_q.qsize() == 1  # left for the thread whose get() decrypts
        track = receiver.track
        assert isinstance(track, RemoteStreamTrack)
        assert track._queue.empty()
    finally:
        await pc.close()


async def test_receivers_keep_aiortcs_decoder_thread_by_default() -> None:
    assert audio.BATCH_WORKER is False
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        receiver._track = RemoteStreamTrack(kind="audio")
        assert not decode_on_batch_worker(receiver)
        input_q = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        assert "put" not in vars(input_q)
    finally:
        await pc.close()


async def test_decode_on_batch_worker_needs_an_audio_receiver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audio, "BATCH_WORKER", True)
    pc = aiortc.RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        receiver._track = RemoteStreamTrack(kind="video")
        with pytest.raises(ValueError, match="audio receiver"):
            decode_on_batch_worker(receiver)
    finally:
        await pc.close()
