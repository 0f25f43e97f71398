"""``AVSynchronizer`` and ``FrameProcessor`` against the official SDK 1.2.1 (issue 17).

AVSynchronizer: a publisher pushes numbered video frames and their audio through
``rtc.AVSynchronizer`` (30 fps, ten seconds; each video frame carries its number in nine black/white
bars; from the third second on, every 30th frame starts a 100 ms 1 kHz burst of audio, the rest is
silence). An official subscriber reads both tracks. The test checks that the video numbers arrive
strictly increasing with non-decreasing timestamps, that every burst and every marked frame arrives,
and that each burst arrives at most :data:`SYNC_EARLY_TOLERANCE_S` before and
:data:`SYNC_LATE_TOLERANCE_S` after the video frame it was pushed with, plus, for late audio, the
silence lkproto's ``AudioSource`` reports having sent because the pushing task fell behind
(``silence_frames``: a stall of a loaded machine, which no sender can take back once the audio has
played out late). The same run with the official publisher and the official ``AVSynchronizer`` is
printed next to it as the reference (not asserted: it is the yardstick).

FrameProcessor: the official SDK publishes a 440 Hz microphone tone; an lkproto ``AudioStream`` and
an official one each get a processor that halves every sample. lkproto's must hand the processor the
publisher's frames, yield exactly what it returns, pass frames through unprocessed while it is
disabled, and close it as the official stream does: with the stream by default (the constructor),
but not after ``from_track`` (official default ``auto_close_noise_cancellation=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import statistics
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from livekit import rtc as lrtc

from lkproto import rtc
from lkproto.testing import LocalServer, scaled
from tests.interop._helpers import connect_official, connect_ours, disconnect_all, unique_room
from tests.interop.test_media import publish_tone, subscribed_track

__all__: list[str] = []

pytestmark = pytest.mark.interop

FPS = 30
SAMPLE_RATE = 48_000
SAMPLES_PER_VIDEO_FRAME = SAMPLE_RATE // FPS
W, H = 320, 240
BITS = 9  # frame number bars: 512 numbers, more than one run pushes
FRAMES = 10 * FPS
MARK_EVERY = FPS
# The first marked frame: after the receiver has had time to ask for and decode a keyframe
# (frames before that are not shown by any SDK), so every mark can be checked.
FIRST_MARK = 2 * FPS
BURST_HZ = 1000.0
BURST_FRAMES = 3  # 100 ms: a burst survives the receiver's concealment of a lost packet
BURST_AMPLITUDE = 0.5
ONSET_LEVEL = 0.05  # of full scale: far above Opus's noise on silence, far below the burst
# How far a burst may arrive from its video frame at the official subscriber. ITU-R BT.1359
# puts the acceptability limits near 90 ms audio early and 185 ms audio late. Audio is never
# early here; late audio grows with the publishing process's packet-timing jitter, which the
# subscriber's audio jitter buffer absorbs with delay: lkproto's (Python) sender on this 2-core
# machine under a load average of 11-15 measured medians of +0.03 to +0.18 s, the official
# (Rust) sender in the same runs +0.04 to +0.13 s. The late bound leaves room for that.
SYNC_EARLY_TOLERANCE_S = 0.1
SYNC_LATE_TOLERANCE_S = 0.3
RUN_TIMEOUT_S = 60.0
STARVED_RUNS = 3


# -- the publisher side (either SDK) ------------------------------------------------------------


def numbered_frame(mod: ModuleType, number: int) -> Any:
    """A frame whose top half shows ``number`` in :data:`BITS` bars (white: 1), MSB first."""
    img = np.zeros((H, W, 4), np.uint8)
    img[..., 3] = 255
    bar = W // BITS
    for bit in range(BITS):
        if number >> (BITS - 1 - bit) & 1:
            img[: H // 2, bit * bar : (bit + 1) * bar, :3] = 255
    return mod.VideoFrame(W, H, mod.VideoBufferType.RGBA, img.tobytes())


def is_mark(number: int) -> bool:
    return number >= FIRST_MARK and number % MARK_EVERY == 0


def in_burst(number: int) -> bool:
    return number >= FIRST_MARK and number % MARK_EVERY < BURST_FRAMES


def audio_for(mod: ModuleType, number: int) -> Any:
    """The audio pushed with video frame ``number``: a burst on marked frames, else silence."""
    if not in_burst(number):
        samples = np.zeros(SAMPLES_PER_VIDEO_FRAME, np.int16)
    else:
        t = (np.arange(SAMPLES_PER_VIDEO_FRAME) + number * SAMPLES_PER_VIDEO_FRAME) / SAMPLE_RATE
        wave = BURST_AMPLITUDE * 32767 * np.sin(2 * np.pi * BURST_HZ * t)
        samples = wave.astype(np.int16)
    return mod.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, SAMPLES_PER_VIDEO_FRAME)


@dataclass
class Publisher:
    sync: Any
    audio: Any
    tracks: list[Any]

    def counters(self) -> tuple[int, int] | None:
        """lkproto's audio track counters ``(silence_frames, dropped_frames)``: 20 ms of silence
        sent because nothing was queued (everything after it plays that much later), and 20 ms
        slots skipped because the process was stalled too long (their audio is discarded so the
        rest stays on schedule). None for the official source, which reports neither."""
        silence = getattr(self.audio, "silence_frames", None)
        dropped = getattr(self.audio, "dropped_frames", None)
        if silence is None or dropped is None:
            return None
        return int(silence), int(dropped)


async def publish_synchronized(mod: ModuleType, room: Any) -> Publisher:
    audio = mod.AudioSource(SAMPLE_RATE, 1)
    video = mod.VideoSource(W, H)
    audio_track = mod.LocalAudioTrack.create_audio_track("sync-audio", audio)
    video_track = mod.LocalVideoTrack.create_video_track("sync-video", video)
    await room.local_participant.publish_track(
        audio_track, mod.TrackPublishOptions(source=mod.TrackSource.SOURCE_MICROPHONE)
    )
    await room.local_participant.publish_track(
        video_track,
        mod.TrackPublishOptions(source=mod.TrackSource.SOURCE_CAMERA, simulcast=False),
    )
    sync = mod.AVSynchronizer(audio_source=audio, video_source=video, video_fps=FPS)
    return Publisher(sync, audio, [audio_track, video_track])


async def push_frames(mod: ModuleType, sync: Any) -> None:
    """The official documented pattern: each video frame, then the audio that goes with it."""
    for number in range(FRAMES):
        await sync.push(numbered_frame(mod, number), timestamp=number / FPS)
        await sync.push(audio_for(mod, number), timestamp=(number + 1) / FPS)
    await sync.wait_for_playout()


# -- the official subscriber ---------------------------------------------------------------------


@dataclass
class Received:
    video: list[tuple[float, int, int]] = field(default_factory=list)  # (arrival, number, ts_us)
    onsets: list[float] = field(default_factory=list)  # arrival of each audio burst


def read_number(frame: Any) -> int:
    data = np.frombuffer(bytes(frame.data), np.uint8).reshape(frame.height, frame.width, 4)
    bar = frame.width // BITS
    row = data[frame.height // 4]
    number = 0
    for bit in range(BITS):
        number = number << 1 | int(row[bit * bar + bar // 2, 1] > 128)
    return number


async def receive(track_a: Any, track_v: Any, received: Received, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    video = lrtc.VideoStream(track_v, format=lrtc.VideoBufferType.RGBA)
    audio = lrtc.AudioStream(track_a, sample_rate=SAMPLE_RATE, num_channels=1)

    async def read_video() -> None:
        async for event in video:
            received.video.append((loop.time(), read_number(event.frame), event.timestamp_us))

    async def read_audio() -> None:
        loud = False
        async for event in audio:
            pcm = np.frombuffer(bytes(event.frame.data), np.int16)
            peak = float(np.max(np.abs(pcm))) / 32767 if pcm.size else 0.0
            if peak > ONSET_LEVEL and not loud:
                received.onsets.append(loop.time())
            loud = peak > ONSET_LEVEL

    tasks = [asyncio.ensure_future(read_video()), asyncio.ensure_future(read_audio())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await video.aclose()
        await audio.aclose()


@dataclass(frozen=True)
class SyncResult:
    numbers: list[int]
    timestamps_us: list[int]
    offsets_s: list[float]  # burst arrival minus its video frame's arrival
    bursts: int
    marks_seen: int
    slip_s: float | None  # silence sent while pushing (Publisher.counters), in seconds
    skipped: int  # audio slots skipped while pushing: the publishing process was starved


def analyse(received: Received, counted: tuple[int, int] | None) -> SyncResult:
    numbers = [n for _, n, _ in received.video]
    first_seen: dict[int, float] = {}
    for when, number, _ in received.video:
        first_seen.setdefault(number, when)
    offsets: list[float] = []
    marks: list[float] = []
    for mark in range(FIRST_MARK, FRAMES, MARK_EVERY):
        # A receiver may drop a frame; the next one of the burst's frames stands in for it, at
        # the time the mark would have been shown (one frame interval earlier per frame late).
        shown = [n for n in range(mark, mark + BURST_FRAMES) if n in first_seen]
        if shown:
            marks.append(first_seen[shown[0]] - (shown[0] - mark) / FPS)
    for when in marks:
        nearest = min(received.onsets, key=lambda onset: abs(onset - when), default=None)
        if nearest is not None and abs(nearest - when) < 0.5:
            offsets.append(nearest - when)
    return SyncResult(
        numbers=numbers,
        timestamps_us=[ts for _, _, ts in received.video],
        offsets_s=offsets,
        bursts=len(received.onsets),
        marks_seen=len(marks),
        slip_s=None if counted is None else counted[0] * 0.020,
        skipped=0 if counted is None else counted[1],
    )


async def run_sync(server: LocalServer, publisher_mod: ModuleType) -> SyncResult:
    name = unique_room("av-sync")
    pub_room: Any = None
    sub_room: lrtc.Room | None = None
    try:
        if publisher_mod is rtc:
            pub_room = await connect_ours(server, "pub", name)
        else:
            pub_room = await connect_official(server, "pub", name)
        sub_room = await connect_official(server, "sub", name)
        publisher = await publish_synchronized(publisher_mod, pub_room)
        track_a = await subscribed_track(sub_room, "audio")
        track_v = await subscribed_track(sub_room, "video")
        received = Received()
        stop = asyncio.Event()
        reader = asyncio.ensure_future(receive(track_a, track_v, received, stop))
        try:
            # Let both streams attach before the first mark is pushed.
            await asyncio.sleep(0.5)
            before = publisher.counters()
            await asyncio.wait_for(
                push_frames(publisher_mod, publisher.sync), scaled(RUN_TIMEOUT_S)
            )
            after = publisher.counters()
            counted = None
            if before is not None and after is not None:
                counted = (after[0] - before[0], after[1] - before[1])
            assert publisher.sync.last_video_time == pytest.approx((FRAMES - 1) / FPS)
            # What is still in the receivers' jitter buffers.
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await reader
            await publisher.sync.aclose()
        return analyse(received, counted)
    finally:
        await disconnect_all(pub_room, sub_room)


def check_sync(result: SyncResult, who: str) -> None:
    numbers = result.numbers
    assert len(numbers) > FRAMES // 2, f"{who}: {len(numbers)} of {FRAMES} video frames arrived"
    assert all(a < b for a, b in itertools.pairwise(numbers)), f"{who}: out of order {numbers}"
    stamps = result.timestamps_us
    assert all(a <= b for a, b in itertools.pairwise(stamps)), f"{who}: timestamps go back"
    expected = len(range(FIRST_MARK, FRAMES, MARK_EVERY))
    assert result.bursts == expected, f"{who}: {result.bursts} audio bursts, {expected} pushed"
    assert result.marks_seen == expected, f"{who}: {result.marks_seen} of {expected} marked frames"
    assert len(result.offsets_s) == result.marks_seen, f"{who}: a burst is missing, {result}"
    # Audio that could not be sent on time (the pushing task starved on a loaded machine) is
    # replaced by silence and the rest plays that much later; AudioSource.silence_frames says
    # how much, so the bound allows exactly that on top of the tolerance.
    late_bound = SYNC_LATE_TOLERANCE_S + max(0.0, result.slip_s or 0.0)
    offsets = fmt(result.offsets_s)
    assert min(result.offsets_s) >= -SYNC_EARLY_TOLERANCE_S, f"{who}: audio early: {offsets} s"
    assert max(result.offsets_s) <= late_bound, f"{who}: {offsets} s, slip {result.slip_s}"


def fmt(offsets: list[float]) -> str:
    return "[" + ", ".join(f"{x:+.3f}" for x in offsets) + "]"


async def test_av_synchronizer_reaches_the_official_sdk_in_sync(
    livekit_server: LocalServer,
) -> None:
    # The reference first: it also warms this process up (codecs, imports), whose first media
    # run would otherwise stall lkproto's publisher.
    reference = await run_sync(livekit_server, lrtc)
    for attempt in range(1, STARVED_RUNS + 1):
        ours = await run_sync(livekit_server, rtc)
        report("lkproto", ours)
        try:
            check_sync(ours, "lkproto")
        except AssertionError:
            # A run in which the publishing process itself was stalled past the audio track's
            # lag limit (other jobs on this machine: audio discarded, the subscriber's jitter
            # buffer grown to ride out the stall) measured the machine, not the synchronizer;
            # it is made again. A failing run without such a stall fails the test.
            if not ours.skipped or attempt == STARVED_RUNS:
                raise
            print(f"\nAVSynchronizer lkproto run {attempt} starved; again")
        else:
            break
    report("official", reference)


def report(who: str, result: SyncResult) -> None:
    median = statistics.median(result.offsets_s) if result.offsets_s else math.nan
    slip = result.slip_s if result.slip_s is None else round(result.slip_s, 3)
    print(
        f"\nAVSynchronizer {who}: {len(result.numbers)}/{FRAMES} frames, "
        f"{result.marks_seen} marked frames, {result.bursts} bursts; burst minus frame "
        f"arrival (s) {fmt(result.offsets_s)}, median {median:+.3f}; audio slip {slip} s, "
        f"{result.skipped} slots skipped"
    )


# -- FrameProcessor ------------------------------------------------------------------------------


def halving_processor(mod: ModuleType) -> Any:
    """A processor (of ``mod``'s base class) that halves every sample and records what it saw."""

    class Halve(mod.FrameProcessor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._enabled = True
            self.inputs: list[bytes] = []
            self.outputs: list[Any] = []
            self.closed = 0

        @property
        def enabled(self) -> bool:
            return self._enabled

        @enabled.setter
        def enabled(self, value: bool) -> None:
            self._enabled = value

        def _process(self, frame: Any) -> Any:
            self.inputs.append(bytes(frame.data))
            half = (np.frombuffer(bytes(frame.data), np.int16) // 2).astype(np.int16)
            out = mod.AudioFrame(
                half.tobytes(), frame.sample_rate, frame.num_channels, frame.samples_per_channel
            )
            self.outputs.append(out)
            return out

        def _close(self) -> None:
            self.closed += 1

    return Halve()


def peak_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


@dataclass(frozen=True)
class ProcessorRun:
    processed: int  # frames yielded while enabled
    yielded_outputs: bool  # every one of them is the processor's own output object
    input_peak_hz: float  # of what the processor was given
    half_level: bool  # the yielded samples are the inputs halved
    passed_through: int  # frames yielded while disabled (not given to the processor)
    closed_by_constructor_stream: int
    closed_by_from_track_stream: int
    processed_while_disabled: int


async def run_processor(mod: ModuleType, track: Any) -> ProcessorRun:
    """``mod``'s AudioStream with a halving processor on ``track``; see :class:`ProcessorRun`."""
    processor = halving_processor(mod)
    stream = mod.AudioStream(
        track, sample_rate=SAMPLE_RATE, num_channels=1, noise_cancellation=processor
    )
    yielded: list[Any] = []
    passed = 0
    seen = 0
    try:
        async with asyncio.timeout(scaled(RUN_TIMEOUT_S)):
            async for event in stream:
                if processor.enabled:
                    yielded.append(event.frame)
                    if len(yielded) == 150:  # 1.5 s of 10 ms frames
                        processor.enabled = False
                        seen = len(processor.inputs)
                else:
                    passed += 1
                    if passed == 50:
                        break
    finally:
        await stream.aclose()
    closed_by_constructor = processor.closed

    second = halving_processor(mod)
    other = mod.AudioStream.from_track(
        track=track, sample_rate=SAMPLE_RATE, noise_cancellation=second
    )
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(scaled(5.0)):
            async for _ in other:
                break
    await other.aclose()

    # Frames queued when the switch happened were processed already; compare from the start.
    outputs_ok = all(a is b for a, b in zip(yielded, processor.outputs, strict=False))
    inputs = np.concatenate([np.frombuffer(x, np.int16) for x in processor.inputs[:seen]])
    outs = np.concatenate([np.frombuffer(bytes(f.data), np.int16) for f in yielded])
    n = min(inputs.size, outs.size)
    half_ok = bool(np.array_equal(outs[:n], (inputs[:n] // 2).astype(np.int16)))
    tail = inputs[-SAMPLE_RATE // 2 :].astype(np.float64)
    return ProcessorRun(
        processed=len(yielded),
        yielded_outputs=outputs_ok,
        input_peak_hz=peak_hz(tail),
        half_level=half_ok,
        passed_through=passed,
        closed_by_constructor_stream=closed_by_constructor,
        closed_by_from_track_stream=second.closed,
        processed_while_disabled=len(processor.inputs) - seen,
    )


async def test_frame_processor_on_the_official_publishers_audio(
    livekit_server: LocalServer,
) -> None:
    name = unique_room("frame-proc")
    publisher = await connect_official(livekit_server, "pub", name)
    ours = await connect_ours(livekit_server, "lk", name)
    theirs = await connect_official(livekit_server, "official", name)
    feeder = None
    try:
        feeder = await publish_tone(lrtc, publisher, 440.0)
        our_track = await subscribed_track(ours, "audio")
        their_track = await subscribed_track(theirs, "audio")
        got = await run_processor(rtc, our_track)
        reference = await run_processor(lrtc, their_track)
    finally:
        if feeder is not None:
            await feeder.stop()
        await disconnect_all(publisher, ours, theirs)

    assert got.processed == 150
    assert reference.processed == 150
    assert got.yielded_outputs, "lkproto yielded frames that are not the processor's output"
    assert reference.yielded_outputs
    assert abs(got.input_peak_hz - 440.0) <= 5.0, got
    assert got.half_level, "lkproto's stream did not yield the processed samples"
    assert got.passed_through == 50
    assert got.processed_while_disabled == 0, got
    assert (
        (got.closed_by_constructor_stream, got.closed_by_from_track_stream)
        == (
            reference.closed_by_constructor_stream,
            reference.closed_by_from_track_stream,
        )
        == (1, 0)
    )
