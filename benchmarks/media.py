"""Media CPU, concurrent Opus tracks and memory: lkproto against the official SDK, same run.

Run from the repository root::

    .venv/bin/python benchmarks/media.py [--window 10] [--warmup 3] [--tracks 5,10,20,30]
        [--sections cpu,tracks,rss,e2ee] [--sdks lkproto,official] [--pin separate|same|none]
        [--json benchmarks/results/media.json]

One loopback livekit-server (:class:`lkproto.testing.LocalServer`) serves the whole run. Every
client is a **child process of its own** (this script with ``--child SPEC``) that imports only its
SDK, so one side's CPU is never charged to the other. A scenario joins two children of the same
SDK to a fresh room (``sub`` joins first, then ``pub`` joins and publishes; the ``rss`` scenario
has two children that each publish one track and subscribe to the other's), waits until the
subscriber decodes every track, then measures all children over the same window: ``--warmup``
seconds after the start signal, ``--window`` seconds long. The SDKs run one after the other,
scenario by scenario.

lkproto joins with ``RtcConfiguration(ice_addresses=["127.0.0.1"])``, the official SDK
(``livekit`` over its Rust FFI) with ``RtcConfiguration(ice_servers=[])``. Both publish the same
media with the same caps: Opus mono at ``AudioEncoding(max_bitrate=48000)`` (the official SDK
also with ``dtx=False, red=False``: lkproto has neither), and one VP8 layer of 640x480 at
``VideoEncoding(max_bitrate=1_000_000, max_framerate=30)`` (the official SDK with
``simulcast=False``: lkproto/aiortc sends one layer). aiortc's VP8 encoder picks its own bitrate
(500 kbps start, REMB-driven), so the table shows what each publisher actually sent.

Sections (``--sections``)
-------------------------
``cpu``
    ``audio-1``: one published Opus track, read by the subscriber with
    ``AudioStream(track, sample_rate=48000, num_channels=1)``; ``video``: one published 640x480
    VP8 track fed 30 frames/s (``VideoSource.capture_frame`` of pre-generated RGBA frames with a
    moving gradient, a moving box and +-6 levels of per-frame noise, so the encoder always has
    work), read with ``VideoStream(track)`` (I420, no conversion).
``tracks``
    ``audio-N``: N Opus tracks published by one process and subscribed by another, for each N of
    ``--tracks``. The publisher feeds every source a 20 ms frame every 20 ms (one feeder task,
    absolute schedule, 60 ms ahead), the subscriber reads one ``AudioStream`` per track.
``rss``
    two processes, each publishing one Opus track and subscribing to the other's (shorter window:
    ``--rss-window``).
``e2ee``
    the two ``cpu`` scenarios again with end-to-end encryption (``RoomOptions(encryption=...)``,
    the same shared key on both sides): compare with ``cpu`` for the cost of encrypting (publish)
    and decrypting (subscribe) one Opus and one 640x480 VP8 track.

Pinning (``--pin``): ``separate`` (default) pins the publisher (and the rss scenario's first
process) to the first usable CPU and the subscriber to the second with ``os.sched_setaffinity``
before the SDK is imported, so every thread of a child (aiortc's encoder executor and decoder
threads, the official SDK's Rust runtime) is on one core; livekit-server is not pinned and shares
both. ``same`` puts every child on the first CPU; ``none`` pins nothing.

What each number measures
-------------------------
``CPU-s/s``
    (user + system) CPU seconds of the child's whole process (``getrusage(RUSAGE_SELF)``, all
    threads) during the window, divided by the window's wall time: 1.0 = one core busy.
``server CPU-s/s``
    the same for livekit-server (``/proc/PID/stat``), over the same window; context only.
``frames per track``
    audio samples yielded by each subscriber ``AudioStream`` during the window, in 20 ms frames
    (the official stream yields 10 ms frames; samples are what is counted); ``expected`` = window /
    20 ms. ``lost`` = expected - the fewest any track got. The window edges cut frames that arrive
    every 20 ms, so +-1 is jitter, not loss. lkproto passes lost packets through as missing
    audio, so its count is a loss signal; the official SDK conceals losses (NetEq) and always
    yields real-time audio, so for it ``RTP lost`` and ``concealed`` are the signals.
``RTP lost``
    the increase of the subscriber's inbound-RTP ``packetsLost`` summed over tracks (aiortc
    ``RTCRtpReceiver.getStats()`` found with ``gc``; the official SDK's ``track.get_stats()``),
    read 0.5 s before the window (then a ``gc.collect()`` and a pause, so that neither this nor
    the backlog it causes lands in the window) and at its end.
    ``stream drops`` (lkproto) are frames an ``AudioStream`` discarded because its reader fell a
    second behind; ``source skips`` (lkproto) are 20 ms slots its ``AudioSource`` skipped because
    aiortc's sender fell behind. ``real time`` = lost <= 1 and no RTP loss, drops or skips.
``sent kbps``
    the publisher's outbound-RTP bytes (payload + RTP header, before SRTP) over the same interval
    as ``RTP lost``.
``RSS``
    ``VmRSS`` of the child after importing its SDK, after connecting, and at the end of the window,
    and ``VmHWM`` (the kernel's high-water mark). The official SDK's figures include its Rust
    runtime and libwebrtc, so they are context, not a target.

Targets (from issue 7; reported, never asserted): >= 20 concurrent Opus tracks published and
subscribed in real time, each process on one core; one 640x480 VP8 30 fps publication < 0.2
core; a connected client with one audio track each way < 100 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import math
import os
import random
import resource
import signal
import sys
import time
import traceback
import uuid
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from _common import machine_info, utc_now, write_json

DEFAULT_WINDOW_S: Final = 10.0
DEFAULT_WARMUP_S: Final = 3.0
DEFAULT_RSS_WINDOW_S: Final = 5.0
DEFAULT_TRACKS: Final = "5,10,20,30"
DEFAULT_SECTIONS: Final = "cpu,tracks,rss"
DEFAULT_JSON: Final = Path(__file__).parent / "results" / "media.json"
SECTIONS: Final = ("cpu", "tracks", "rss", "e2ee")
E2EE_KEY: Final = "benchmark-shared-key"
"""Shared key of the ``e2ee`` section (both SDKs: PBKDF2, AES-GCM, issue 16)."""
SDKS: Final = ("lkproto", "official")
PIN_MODES: Final = ("separate", "same", "none")
_THIS_FILE: Final = str(Path(__file__).resolve())

SAMPLE_RATE: Final = 48_000
FRAME_S: Final = 0.02
SAMPLES_PER_FRAME: Final = 960
AUDIO_LOOP_FRAMES: Final = 50  # 1 s of pre-generated audio, repeated
AUDIO_LEAD_FRAMES: Final = 3  # the feeder runs 60 ms ahead of real time
AUDIO_BITRATE: Final = 48_000
VIDEO_WIDTH: Final = 640
VIDEO_HEIGHT: Final = 480
VIDEO_FPS: Final = 30
VIDEO_BITRATE: Final = 1_000_000
VIDEO_LOOP_FRAMES: Final = 32  # the gradient moves 8 px per frame: 32 frames wrap seamlessly

CONNECT_TIMEOUT_S: Final = 30.0
PRE_WINDOW_S: Final = 0.5  # RTP stats and gc happen this long before the window
DEFAULT_READY_TIMEOUT_S: Final = 90.0
QUIT_TIMEOUT_S: Final = 20.0
RESULT_SLACK_S: Final = 60.0

TARGET_TRACKS: Final = 20
TARGET_VIDEO_CPU: Final = 0.2
TARGET_RSS_MB: Final = 100.0

MIB: Final = 1024 * 1024

Room = Any  # lkproto.rtc.Room | livekit.rtc.Room: the same duck-typed surface


# ---------------------------------------------------------------------------------------------
# media content (pre-generated, identical for both SDKs)


def audio_pcm_frames(count: int = AUDIO_LOOP_FRAMES, seed: int = 7) -> list[bytes]:
    """``count`` 20 ms frames of 48 kHz mono int16: two tones with a slow vibrato and some noise,
    continuous across frames and across the loop (so Opus never encodes silence)."""
    rnd = random.Random(seed)
    total = count * SAMPLES_PER_FRAME
    samples = array("h")
    for n in range(total):
        t = n / SAMPLE_RATE
        value = (
            0.30 * math.sin(2 * math.pi * 440 * t + 2 * math.sin(2 * math.pi * 3 * t))
            + 0.15 * math.sin(2 * math.pi * 660 * t)
            + 0.03 * (rnd.random() - 0.5)
        )
        samples.append(int(value * 32767))
    raw = samples.tobytes()
    size = SAMPLES_PER_FRAME * 2
    return [raw[i * size : (i + 1) * size] for i in range(count)]


def video_rgba_frames(
    width: int = VIDEO_WIDTH, height: int = VIDEO_HEIGHT, count: int = VIDEO_LOOP_FRAMES
) -> list[bytes]:
    """``count`` RGBA frames: a diagonal gradient moving 8 px per frame, a white box crossing the
    picture, and fresh +-6 levels of noise on every frame (camera-like, never static)."""
    import numpy as np  # lazily: after the child pinned itself

    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:height, 0:width].astype(np.int16)
    box = 96
    frames: list[bytes] = []
    for k in range(count):
        shift = 8 * k
        img = np.empty((height, width, 4), dtype=np.int16)
        img[..., 0] = (x + shift) % 256
        img[..., 1] = (y + shift) % 256
        img[..., 2] = ((x + y) // 2 + shift) % 256
        img[..., 3] = 255
        bx = (k * (width - box)) // max(1, count - 1)
        by = height // 3
        img[by : by + box, bx : bx + box, :3] = 235
        img[..., :3] += rng.integers(-6, 7, size=(height, width, 3), dtype=np.int16)
        frames.append(np.clip(img, 0, 255).astype(np.uint8).tobytes())
    return frames


# ---------------------------------------------------------------------------------------------
# child process: one client of one SDK


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """What one child does (passed as JSON on its command line)."""

    label: str
    sdk: str
    url: str
    token: str
    publish_audio: int = 0
    publish_video: bool = False
    expect_audio: int = 0
    expect_video: int = 0
    e2ee_key: str = ""
    cpu: int | None = None
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child if the parent dies (no orphans); best effort."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _sdk(sdk: str) -> Any:
    if sdk == "lkproto":
        from lkproto import rtc  # each child imports only its SDK

        return rtc
    from livekit import rtc as lrtc

    return lrtc


@dataclass(slots=True)
class TrackCounter:
    """What a subscriber read from one remote track."""

    sid: str
    kind: str
    units: int = 0  # audio: samples per channel; video: frames
    events: int = 0
    width: int = 0
    height: int = 0
    stream: Any = None
    first: asyncio.Event = field(default_factory=asyncio.Event)

    def dropped(self) -> int | None:
        value = getattr(self.stream, "dropped_frames", None)
        return int(value) if isinstance(value, int) else None


@dataclass(slots=True)
class FeederStats:
    ticks: int = 0
    late_ticks: int = 0  # started more than one period late
    skipped: int = 0  # video periods skipped because the feeder fell a period behind
    max_lag_s: float = 0.0


class Client:
    """One connected room of one SDK: publishes, subscribes and counts."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.rtc = _sdk(spec.sdk)
        self.room: Room = self.rtc.Room()
        self.counters: dict[str, TrackCounter] = {}
        self.audio_sources: list[Any] = []
        self.video_sources: list[Any] = []
        self.local_tracks: list[Any] = []
        self.remote_tracks: dict[str, Any] = {}
        self.audio_feed = FeederStats()
        self.video_feed = FeederStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.rss_imported_kib = _status_kib("VmRSS")
        self.rss_connected_kib = 0

    # -- setup ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            print(f"[{self.spec.label}] task failed: {exc!r}", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)

    async def connect(self) -> None:
        rtc = self.rtc
        self.room.on("track_subscribed", self._on_track_subscribed)
        if self.spec.sdk == "lkproto":
            options: Any = rtc.RoomOptions(
                rtc_config=rtc.RtcConfiguration(ice_addresses=["127.0.0.1"])
            )
        else:
            options = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(ice_servers=[]))
        if self.spec.e2ee_key:
            options.encryption = rtc.E2EEOptions(
                key_provider_options=rtc.KeyProviderOptions(shared_key=self.spec.e2ee_key.encode())
            )
        await asyncio.wait_for(
            self.room.connect(self.spec.url, self.spec.token, options), CONNECT_TIMEOUT_S
        )
        self.rss_connected_kib = _status_kib("VmRSS")

    def _on_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        rtc = self.rtc
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            counter = TrackCounter(sid=track.sid, kind="audio")
            counter.stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        elif track.kind == rtc.TrackKind.KIND_VIDEO:
            counter = TrackCounter(sid=track.sid, kind="video")
            counter.stream = rtc.VideoStream(track)
        else:
            return
        self.counters[track.sid] = counter
        self.remote_tracks[track.sid] = track
        self._spawn(self._read(counter))

    async def _read(self, counter: TrackCounter) -> None:
        audio = counter.kind == "audio"
        async for event in counter.stream:
            frame = event.frame
            if audio:
                counter.units += frame.samples_per_channel
            else:
                counter.units += 1
                counter.width, counter.height = frame.width, frame.height
            counter.events += 1
            if not counter.first.is_set():
                counter.first.set()
                self._changed.set()

    async def publish(self, audio_frames: list[bytes], video_frames: list[bytes]) -> None:
        rtc = self.rtc
        official = self.spec.sdk == "official"
        for i in range(self.spec.publish_audio):
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            track = rtc.LocalAudioTrack.create_audio_track(f"audio-{i}", source)
            if official:
                options: Any = rtc.TrackPublishOptions(
                    source=rtc.TrackSource.SOURCE_MICROPHONE,
                    audio_encoding={"max_bitrate": AUDIO_BITRATE},
                    dtx=False,
                    red=False,
                )
            else:
                options = rtc.TrackPublishOptions(
                    source=rtc.TrackSource.SOURCE_MICROPHONE,
                    audio_encoding=rtc.AudioEncoding(max_bitrate=AUDIO_BITRATE),
                )
            await asyncio.wait_for(
                self.room.local_participant.publish_track(track, options), CONNECT_TIMEOUT_S
            )
            self.audio_sources.append(source)
            self.local_tracks.append(track)
        if self.spec.publish_video:
            vsource = rtc.VideoSource(VIDEO_WIDTH, VIDEO_HEIGHT)
            vtrack = rtc.LocalVideoTrack.create_video_track("video", vsource)
            encoding: Any
            if official:
                encoding = {"max_bitrate": VIDEO_BITRATE, "max_framerate": float(VIDEO_FPS)}
                voptions: Any = rtc.TrackPublishOptions(
                    source=rtc.TrackSource.SOURCE_CAMERA,
                    video_codec=rtc.VideoCodec.VP8,
                    video_encoding=encoding,
                    simulcast=False,
                )
            else:
                encoding = rtc.VideoEncoding(
                    max_bitrate=VIDEO_BITRATE, max_framerate=float(VIDEO_FPS)
                )
                voptions = rtc.TrackPublishOptions(
                    source=rtc.TrackSource.SOURCE_CAMERA,
                    video_codec=rtc.VideoCodec.VP8,
                    video_encoding=encoding,
                )
            await asyncio.wait_for(
                self.room.local_participant.publish_track(vtrack, voptions), CONNECT_TIMEOUT_S
            )
            self.video_sources.append(vsource)
            self.local_tracks.append(vtrack)
        if self.audio_sources:
            frames = [
                rtc.AudioFrame(pcm, SAMPLE_RATE, 1, SAMPLES_PER_FRAME) for pcm in audio_frames
            ]
            self._spawn(self._feed_audio(frames))
        if self.video_sources:
            vframes = [
                rtc.VideoFrame(VIDEO_WIDTH, VIDEO_HEIGHT, rtc.VideoBufferType.RGBA, data)
                for data in video_frames
            ]
            self._spawn(self._feed_video(vframes))

    async def _feed_audio(self, frames: list[Any]) -> None:
        """Every source gets one 20 ms frame per 20 ms, on an absolute schedule."""
        stats = self.audio_feed
        sources = self.audio_sources
        start = time.monotonic()
        k = 0
        while True:
            due = start + (k - AUDIO_LEAD_FRAMES) * FRAME_S
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            elif k >= AUDIO_LEAD_FRAMES:  # the first frames are due "before" the start
                lag = now - due
                stats.max_lag_s = max(stats.max_lag_s, lag)
                if lag > FRAME_S:
                    stats.late_ticks += 1
            frame = frames[k % len(frames)]
            for source in sources:
                await source.capture_frame(frame)
            stats.ticks += 1
            k += 1

    async def _feed_video(self, frames: list[Any]) -> None:
        """``capture_frame`` every 1/30 s; a feeder a period late skips ahead (never bursts)."""
        stats = self.video_feed
        period = 1 / VIDEO_FPS
        source = self.video_sources[0]
        start = time.monotonic()
        k = 0
        while True:
            due = start + k * period
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = now - due
                stats.max_lag_s = max(stats.max_lag_s, lag)
                if lag > period:
                    stats.late_ticks += 1
                    behind = int(lag / period)
                    stats.skipped += behind
                    k += behind
            source.capture_frame(frames[k % len(frames)])
            stats.ticks += 1
            k += 1

    async def wait_subscribed(self) -> None:
        """Until every expected remote track has yielded a frame."""
        want = {"audio": self.spec.expect_audio, "video": self.spec.expect_video}
        deadline = time.monotonic() + self.spec.ready_timeout_s
        while True:
            have = {"audio": 0, "video": 0}
            for counter in self.counters.values():
                if counter.first.is_set():
                    have[counter.kind] += 1
            if all(have[k] >= want[k] for k in want):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(self.counters)} tracks subscribed; "
                    f"decoded frames from {have['audio']}/{want['audio']} audio and "
                    f"{have['video']}/{want['video']} video tracks in "
                    f"{self.spec.ready_timeout_s:.0f} s"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    # -- measuring -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counters that the window differences (cheap: taken right beside getrusage)."""
        pub: dict[str, int] = {
            "audio_feeder_ticks": self.audio_feed.ticks,
            "audio_feeder_late_ticks": self.audio_feed.late_ticks,
            "video_feeder_ticks": self.video_feed.ticks,
            "video_feeder_late_ticks": self.video_feed.late_ticks,
            "video_feeder_skipped": self.video_feed.skipped,
        }
        for name in ("silence_frames", "dropped_frames"):
            values = [getattr(s, name, None) for s in self.audio_sources]
            if values and all(isinstance(v, int) for v in values):
                pub[f"audio_source_{name}"] = sum(int(v) for v in values if v is not None)
        for name in ("captured_frames", "dropped_frames"):
            values = [getattr(s, name, None) for s in self.video_sources]
            if values and all(isinstance(v, int) for v in values):
                pub[f"video_source_{name}"] = sum(int(v) for v in values if v is not None)
        tracks = {
            sid: {"units": c.units, "events": c.events, "dropped": c.dropped()}
            for sid, c in self.counters.items()
        }
        return {"publisher": pub, "tracks": tracks}

    async def rtp_stats(self) -> dict[str, float]:
        """Cumulative RTP counters of this client (taken outside the CPU window)."""
        if self.spec.sdk == "lkproto":
            return await _aiortc_rtp_stats()
        return await _official_rtp_stats(self.local_tracks, list(self.remote_tracks.values()))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for counter in list(self.counters.values()):  # subscriptions may still add to it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(counter.stream.aclose(), 5.0)
        for source in self.audio_sources + self.video_sources:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(source.aclose(), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.room.disconnect(), 10.0)


async def _aiortc_rtp_stats() -> dict[str, float]:
    from aiortc import RTCRtpReceiver, RTCRtpSender

    out: dict[str, float] = {
        "sent_packets": 0,
        "sent_bytes": 0,
        "recv_packets": 0,
        "recv_lost": 0,
    }
    # type(), not isinstance(): isinstance on a dead weakref.proxy (PyAV keeps some) raises
    # ReferenceError.
    objects = [o for o in gc.get_objects() if issubclass(type(o), RTCRtpSender | RTCRtpReceiver)]
    for obj in objects:
        with contextlib.suppress(Exception):
            report = await obj.getStats()
            for stat in report.values():
                if stat.type == "outbound-rtp":
                    out["sent_packets"] += stat.packetsSent
                    out["sent_bytes"] += stat.bytesSent
                elif stat.type == "inbound-rtp":
                    out["recv_packets"] += stat.packetsReceived
                    out["recv_lost"] += stat.packetsLost
    return out


async def _official_rtp_stats(local: Sequence[Any], remote: Sequence[Any]) -> dict[str, float]:
    seen: dict[str, Any] = {}
    for track in [*local, *remote]:
        with contextlib.suppress(Exception):
            for stat in await asyncio.wait_for(track.get_stats(), 5.0):
                kind = stat.WhichOneof("stats")
                if kind in ("inbound_rtp", "outbound_rtp"):
                    seen[getattr(stat, kind).rtc.id] = stat
    out: dict[str, float] = {
        "sent_packets": 0,
        "sent_bytes": 0,
        "recv_packets": 0,
        "recv_lost": 0,
        "concealed_samples": 0,
        "frames_encoded": 0,
        "frames_decoded": 0,
    }
    for stat in seen.values():
        if stat.WhichOneof("stats") == "outbound_rtp":
            o = stat.outbound_rtp
            out["sent_packets"] += o.sent.packets_sent
            out["sent_bytes"] += o.sent.bytes_sent
            out["frames_encoded"] += o.outbound.frames_encoded
            if o.outbound.frame_width:
                out["sent_width"] = o.outbound.frame_width
                out["sent_height"] = o.outbound.frame_height
        else:
            i = stat.inbound_rtp
            out["recv_packets"] += i.received.packets_received
            out["recv_lost"] += i.received.packets_lost
            out["concealed_samples"] += i.inbound.concealed_samples
            out["frames_decoded"] += i.inbound.frames_decoded
    return out


def _diff(after: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in after.items():
        prev = before.get(key)
        if isinstance(value, int | float) and isinstance(prev, int | float):
            out[key] = value - prev
        else:
            out[key] = value
    return out


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def measure(client: Client, go: Mapping[str, Any]) -> dict[str, Any]:
    """Wait for the window and measure this process over it."""
    start = float(go["go"]) + float(go["warmup"])
    # RTP stats (gc scan, getStats/FFI calls) and a collection first, then a pause for the loop
    # to catch up with what arrived meanwhile, so none of it is counted in the window.
    await _sleep_until(start - PRE_WINDOW_S)
    stats0 = await client.rtp_stats()
    rtp_t0 = time.monotonic()
    gc.collect()
    await _sleep_until(max(start, time.monotonic() + 0.1))
    snap0 = client.snapshot()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await _sleep_until(t0 + float(go["window"]))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    t1 = time.monotonic()
    snap1 = client.snapshot()
    rss = _status_kib("VmRSS")
    stats1 = await client.rtp_stats()
    rtp_window = time.monotonic() - rtp_t0
    wall = t1 - t0
    user = r1.ru_utime - r0.ru_utime
    system = r1.ru_stime - r0.ru_stime
    tracks = []
    for sid, after in snap1["tracks"].items():
        before = snap0["tracks"].get(sid, {"units": 0, "events": 0, "dropped": None})
        counter = client.counters[sid]
        dropped = (
            after["dropped"] - before["dropped"]
            if after["dropped"] is not None and before["dropped"] is not None
            else None
        )
        tracks.append(
            {
                "sid": sid,
                "kind": counter.kind,
                "units": after["units"] - before["units"],
                "events": after["events"] - before["events"],
                "dropped": dropped,
                "width": counter.width,
                "height": counter.height,
            }
        )
    return {
        "label": client.spec.label,
        "sdk": client.spec.sdk,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "window_s": wall,
        "window_start_late_s": t0 - start,
        "rtp_window_s": rtp_window,
        "user_s": user,
        "system_s": system,
        "cpu_s": user + system,
        "cpu_per_s": (user + system) / wall,
        "rss_imported_kib": client.rss_imported_kib,
        "rss_connected_kib": client.rss_connected_kib,
        "rss_kib": rss,
        "hwm_kib": _status_kib("VmHWM"),
        "threads": _status_kib("Threads"),
        "published_audio": len(client.audio_sources),
        "published_video": len(client.video_sources),
        "publisher": _diff(snap1["publisher"], snap0["publisher"]),
        "audio_feeder_max_lag_ms": client.audio_feed.max_lag_s * 1000,
        "video_feeder_max_lag_ms": client.video_feed.max_lag_s * 1000,
        "rtp": _diff(stats1, stats0),
        "tracks": tracks,
        "loadavg_1m": os.getloadavg()[0],
    }


class Pipe:
    """The child's side of the JSON-lines protocol: commands on stdin, replies on a private fd
    (fd 1 is pointed at stderr, so nothing an SDK prints can corrupt the protocol)."""

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        self._reader = asyncio.StreamReader()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self._reader), os.fdopen(0, "rb")
        )

    def say(self, message: Mapping[str, object]) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    async def read(self) -> dict[str, Any] | None:
        line = await self._reader.readline()
        return json.loads(line) if line else None


async def child_main(spec: ChildSpec) -> int:
    pipe = Pipe()
    await pipe.open()
    client: Client | None = None
    try:
        client = Client(spec)
        audio = audio_pcm_frames() if spec.publish_audio else []
        video = video_rgba_frames() if spec.publish_video else []
        await client.connect()
        await client.publish(audio, video)
        pipe.say({"connected": spec.label})
        await client.wait_subscribed()
        pipe.say({"ready": spec.label})
        command = await pipe.read()
        if command is None or "go" not in command:
            return 0
        result = await measure(client, command)
        pipe.say({"result": result})
        await pipe.read()  # {"quit": true} or EOF
        return 0
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        pipe.say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        if client is not None:
            await client.close()


# ---------------------------------------------------------------------------------------------
# parent


class Child:
    """A running child process and the parent's side of its pipe."""

    def __init__(self, spec: ChildSpec, proc: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.proc = proc

    @classmethod
    async def start(cls, spec: ChildSpec) -> Child:
        env = dict(os.environ)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's pool: idle threads only
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            _THIS_FILE,
            "--child",
            json.dumps(asdict(spec)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(spec, proc)

    async def send(self, message: Mapping[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, key: str, limit_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), limit_s)
        except TimeoutError:
            raise TimeoutError(
                f"child {self.spec.label} ({self.spec.sdk}) sent no {key!r} in {limit_s:.0f} s"
            ) from None
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(
                f"child {self.spec.label} ({self.spec.sdk}) exited with {code} before {key!r} "
                "(its traceback is on stderr above)"
            )
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"child {self.spec.label} ({self.spec.sdk}): {reply['error']}")
        if key not in reply:
            raise RuntimeError(f"child {self.spec.label}: expected {key!r}, got {reply}")
        return reply

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send({"quit": True})
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), QUIT_TIMEOUT_S)
        if self.proc.returncode is None:
            print(f"child {self.spec.label} did not quit; killing it", file=sys.stderr)
            self.proc.kill()
            await self.proc.wait()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # "audio-N", "video", "rss"
    section: str
    sdk: str
    audio_tracks: int = 0
    video: bool = False
    duplex: bool = False
    e2ee: bool = False


def _cpus(pin: str) -> tuple[int | None, int | None]:
    usable = sorted(os.sched_getaffinity(0))
    if pin == "none" or not usable:
        return None, None
    if pin == "same" or len(usable) < 2:
        return usable[0], usable[0]
    return usable[0], usable[1]


def _specs(sc: Scenario, server: Any, room: str, pin: str, ready_s: float) -> list[ChildSpec]:
    cpu_a, cpu_b = _cpus(pin)
    common = {
        "sdk": sc.sdk,
        "url": server.url,
        "ready_timeout_s": ready_s,
        "e2ee_key": E2EE_KEY if sc.e2ee else "",
    }
    if sc.duplex:
        return [
            ChildSpec(
                label=label,
                token=server.create_token(f"{label}-{sc.sdk}", room),
                publish_audio=1,
                expect_audio=1,
                cpu=cpu,
                **common,
            )
            for label, cpu in (("a", cpu_a), ("b", cpu_b))
        ]
    return [
        ChildSpec(
            label="sub",
            token=server.create_token(f"sub-{sc.sdk}", room),
            expect_audio=sc.audio_tracks,
            expect_video=int(sc.video),
            cpu=cpu_b,
            **common,
        ),
        ChildSpec(
            label="pub",
            token=server.create_token(f"pub-{sc.sdk}", room),
            publish_audio=sc.audio_tracks,
            publish_video=sc.video,
            cpu=cpu_a,
            **common,
        ),
    ]


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _server_cpu(pid: int | None, start: float, window: float) -> float | None:
    if pid is None:
        return None
    try:
        await _sleep_until(start)
        c0, t0 = _proc_cpu_s(pid), time.monotonic()
        await _sleep_until(t0 + window)
        return (_proc_cpu_s(pid) - c0) / (time.monotonic() - t0)
    except OSError:
        return None


async def run_scenario(
    server: Any,
    sc: Scenario,
    *,
    warmup: float,
    window: float,
    pin: str,
    ready_s: float,
) -> dict[str, Any]:
    room = f"bench-media-{sc.name}-{sc.sdk}-{uuid.uuid4().hex[:6]}"
    specs = _specs(sc, server, room, pin, ready_s)
    children: list[Child] = []
    started = time.monotonic()
    try:
        for spec in specs:  # one at a time: the subscriber is in the room before any track
            children.append(await Child.start(spec))
            await children[-1].expect("connected", ready_s + 30)
        await asyncio.gather(*(c.expect("ready", ready_s + 30) for c in children))
        setup_s = time.monotonic() - started
        go = time.monotonic() + 0.1
        for c in children:
            await c.send({"go": go, "warmup": warmup, "window": window})
        server_task = asyncio.ensure_future(_server_cpu(server.pid, go + warmup, window))
        replies = await asyncio.gather(
            *(c.expect("result", warmup + window + RESULT_SLACK_S) for c in children)
        )
        server_cpu = await server_task
    finally:
        await asyncio.gather(*(c.close() for c in children))
    return {
        "scenario": sc.name,
        "section": sc.section,
        "sdk": sc.sdk,
        "audio_tracks": sc.audio_tracks,
        "video": sc.video,
        "duplex": sc.duplex,
        "setup_s": setup_s,
        "server_cpu_per_s": server_cpu,
        "processes": {r["result"]["label"]: r["result"] for r in replies},
    }


# -- report -----------------------------------------------------------------------------------


def _audio_summary(sub: Mapping[str, Any], expected_frames: float) -> dict[str, Any]:
    """Per-track received frames (20 ms units) and the loss signals of a subscriber."""
    frames = [t["units"] / SAMPLES_PER_FRAME for t in sub["tracks"] if t["kind"] == "audio"]
    drops = [t["dropped"] for t in sub["tracks"] if t["kind"] == "audio"]
    out: dict[str, Any] = {
        "expected_frames": expected_frames,
        "frames_min": min(frames) if frames else 0.0,
        "frames_max": max(frames) if frames else 0.0,
        "tracks_seen": len(frames),
        "lost_frames": expected_frames - (min(frames) if frames else 0.0),
        "rtp_lost": sub["rtp"].get("recv_lost"),
        "rtp_received": sub["rtp"].get("recv_packets"),
        "stream_drops": sum(d for d in drops if d is not None) if drops else None,
        "concealed_ms": (
            sub["rtp"]["concealed_samples"] / (SAMPLE_RATE / 1000)
            if "concealed_samples" in sub["rtp"]
            else None
        ),
    }
    if any(d is None for d in drops):
        out["stream_drops"] = None
    return out


def _realtime(audio: Mapping[str, Any], pub: Mapping[str, Any], tracks: int) -> bool:
    skips = pub["publisher"].get("audio_source_dropped_frames") or 0
    return bool(
        audio["tracks_seen"] >= tracks
        and audio["lost_frames"] <= 1.0
        and not audio["rtp_lost"]
        and not audio["stream_drops"]
        and not skips
    )


def summarize_results(runs: Sequence[Mapping[str, Any]], window: float) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    tracks: list[dict[str, Any]] = []
    rss: list[dict[str, Any]] = []
    for run in runs:
        if "error" in run:
            continue
        procs = run["processes"]
        sdk = run["sdk"]
        if run["duplex"]:
            for label in sorted(procs):
                p = procs[label]
                rss.append(
                    {
                        "sdk": sdk,
                        "process": label,
                        "rss_imported_mib": p["rss_imported_kib"] / 1024,
                        "rss_connected_mib": p["rss_connected_kib"] / 1024,
                        "rss_mib": p["rss_kib"] / 1024,
                        "rss_mb": p["rss_kib"] * 1024 / 1e6,
                        "hwm_mib": p["hwm_kib"] / 1024,
                        "threads": p["threads"],
                        "cpu_per_s": p["cpu_per_s"],
                    }
                )
            continue
        pub, sub = procs["pub"], procs["sub"]
        wall = sub["window_s"]
        suffix = "_e2ee" if run["section"] == "e2ee" else ""
        if run["video"]:
            vt = [t for t in sub["tracks"] if t["kind"] == "video"]
            sent = pub["rtp"]
            cpu.setdefault(sdk, {})["video" + suffix] = {
                "publish_cpu_per_s": pub["cpu_per_s"],
                "subscribe_cpu_per_s": sub["cpu_per_s"],
                "server_cpu_per_s": run["server_cpu_per_s"],
                "sent_kbps": sent["sent_bytes"] * 8 / 1000 / pub["rtp_window_s"],
                "captured_fps": pub["publisher"].get("video_feeder_ticks", 0) / pub["window_s"],
                "received_fps": (vt[0]["units"] / wall) if vt else 0.0,
                "received_size": f"{vt[0]['width']}x{vt[0]['height']}" if vt else "",
                "source_dropped": pub["publisher"].get("video_source_dropped_frames"),
                "frames_encoded_fps": (
                    sent["frames_encoded"] / pub["rtp_window_s"]
                    if "frames_encoded" in sent
                    else None
                ),
            }
            continue
        n = run["audio_tracks"]
        audio = _audio_summary(sub, wall / FRAME_S)
        row = {
            "sdk": sdk,
            "tracks": n,
            "publish_cpu_per_s": pub["cpu_per_s"],
            "subscribe_cpu_per_s": sub["cpu_per_s"],
            "pair_cpu_per_track": (pub["cpu_per_s"] + sub["cpu_per_s"]) / n,
            "server_cpu_per_s": run["server_cpu_per_s"],
            "sent_kbps_per_track": pub["rtp"]["sent_bytes"] * 8 / 1000 / pub["rtp_window_s"] / n,
            "source_skips": pub["publisher"].get("audio_source_dropped_frames"),
            "source_silence": pub["publisher"].get("audio_source_silence_frames"),
            "feeder_late_ticks": pub["publisher"].get("audio_feeder_late_ticks"),
            **audio,
        }
        row["realtime"] = _realtime(audio, pub, n)
        if run["section"] == "e2ee":
            cpu.setdefault(sdk, {})["audio_e2ee"] = row
            continue
        tracks.append(row)
        if n == 1 and run["section"] == "cpu":
            cpu.setdefault(sdk, {})["audio"] = row
    tracks.sort(key=lambda r: (r["tracks"], SDKS.index(r["sdk"])))
    return {"cpu": cpu, "tracks": tracks, "rss": rss}


def _f(value: object, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "n/a"


def _ratio(a: object, b: object) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b > 0:
        return f"{a / b:.2f}x"
    return "n/a"


def markdown_tables(summary: Mapping[str, Any]) -> str:
    lines: list[str] = []
    cpu = summary["cpu"]
    if cpu:
        lk, off = cpu.get("lkproto", {}), cpu.get("official", {})
        lines += [
            "| CPU-s per s of media (one process) | lkproto | official | lkproto/official "
            "| lkproto detail | official detail |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]

        def audio_detail(row: Mapping[str, Any] | None, role: str) -> str:
            if not row:
                return ""
            if role == "pub":
                return f"{row['sent_kbps_per_track']:.0f} kbps sent"
            return (
                f"{row['frames_min']:.0f}/{row['expected_frames']:.0f} frames, "
                f"RTP lost {_f(row['rtp_lost'], '.0f')}"
            )

        def video_detail(row: Mapping[str, Any] | None, role: str) -> str:
            if not row:
                return ""
            if role == "pub":
                return f"{row['sent_kbps']:.0f} kbps sent, {row['captured_fps']:.1f} fps captured"
            return f"{row['received_fps']:.1f} fps {row['received_size']} received"

        items: list[tuple[str, str, str, Callable[[Mapping[str, Any] | None, str], str]]] = [
            ("publish 1 Opus track (48 kHz mono)", "audio", "pub", audio_detail),
            ("subscribe 1 Opus track (AudioStream 48 kHz mono)", "audio", "sub", audio_detail),
            ("publish 1 VP8 640x480 30 fps", "video", "pub", video_detail),
            ("subscribe 1 VP8 640x480 (VideoStream I420)", "video", "sub", video_detail),
            ("publish 1 Opus track, E2EE", "audio_e2ee", "pub", audio_detail),
            ("subscribe 1 Opus track, E2EE", "audio_e2ee", "sub", audio_detail),
            ("publish 1 VP8 640x480 30 fps, E2EE", "video_e2ee", "pub", video_detail),
            ("subscribe 1 VP8 640x480, E2EE", "video_e2ee", "sub", video_detail),
        ]
        for title, key, role, detail in items:
            metric = "publish_cpu_per_s" if role == "pub" else "subscribe_cpu_per_s"
            a = lk.get(key, {}).get(metric)
            b = off.get(key, {}).get(metric)
            if a is None and b is None:
                continue
            lines.append(
                f"| {title} | {_f(a)} | {_f(b)} | {_ratio(a, b)} "
                f"| {detail(lk.get(key), role)} | {detail(off.get(key), role)} |"
            )
    if summary["tracks"]:
        if lines:
            lines.append("")
        lines += [
            "| Opus tracks | SDK | publisher CPU-s/s | subscriber CPU-s/s | (pub+sub)/N "
            "| server CPU-s/s | frames per track min-max (expected) | lost | RTP lost "
            "| stream drops / source skips | concealed ms | real time |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in summary["tracks"]:
            lines.append(
                f"| {r['tracks']} | {r['sdk']} | {r['publish_cpu_per_s']:.3f} "
                f"| {r['subscribe_cpu_per_s']:.3f} | {r['pair_cpu_per_track']:.4f} "
                f"| {_f(r['server_cpu_per_s'])} "
                f"| {r['frames_min']:.0f}-{r['frames_max']:.0f} ({r['expected_frames']:.0f}) "
                f"| {max(0.0, r['lost_frames']):.0f} | {_f(r['rtp_lost'], '.0f')} "
                f"| {_f(r['stream_drops'], '.0f')} / {_f(r['source_skips'], '.0f')} "
                f"| {_f(r['concealed_ms'], '.0f')} | {'yes' if r['realtime'] else 'NO'} |"
            )
    if summary["rss"]:
        if lines:
            lines.append("")
        lines += [
            "| one Opus track each way | process | RSS after import MiB | after connect MiB "
            "| in the window MiB (MB) | VmHWM MiB | threads | CPU-s/s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in summary["rss"]:
            lines.append(
                f"| {r['sdk']} | {r['process']} | {r['rss_imported_mib']:.1f} "
                f"| {r['rss_connected_mib']:.1f} | {r['rss_mib']:.1f} ({r['rss_mb']:.1f}) "
                f"| {r['hwm_mib']:.1f} | {r['threads']} | {r['cpu_per_s']:.3f} |"
            )
    return "\n".join(lines)


def targets(summary: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lk_tracks = [r for r in summary["tracks"] if r["sdk"] == "lkproto"]
    at_target = [r for r in lk_tracks if r["tracks"] >= TARGET_TRACKS]
    if at_target:
        best = max((r for r in lk_tracks if r["realtime"]), key=lambda r: r["tracks"], default=None)
        r20 = min(at_target, key=lambda r: r["tracks"])
        out[f"lkproto_{TARGET_TRACKS}_opus_tracks_realtime_one_core_each"] = {
            "tracks": r20["tracks"],
            "publisher_cpu_per_s": r20["publish_cpu_per_s"],
            "subscriber_cpu_per_s": r20["subscribe_cpu_per_s"],
            "pub_plus_sub_cpu_per_s": r20["publish_cpu_per_s"] + r20["subscribe_cpu_per_s"],
            "lost_frames": r20["lost_frames"],
            "rtp_lost": r20["rtp_lost"],
            "met": bool(r20["realtime"]),
        }
        out["lkproto_most_realtime_tracks_measured"] = best["tracks"] if best else 0
    video = summary["cpu"].get("lkproto", {}).get("video")
    if video:
        v = video["publish_cpu_per_s"]
        out["lkproto_vp8_640x480_30fps_publish_cpu_per_s<0.2"] = {
            "value": v,
            "met": v < TARGET_VIDEO_CPU,
        }
    lk_rss = [r for r in summary["rss"] if r["sdk"] == "lkproto"]
    if lk_rss:
        v = max(r["rss_mb"] for r in lk_rss)
        out["lkproto_rss_one_audio_track_each_way_mb<100"] = {
            "value_mb": v,
            "value_mib": max(r["rss_mib"] for r in lk_rss),
            "hwm_mib": max(r["hwm_mib"] for r in lk_rss),
            "met": v < TARGET_RSS_MB,
        }
    return out


def plan(args: argparse.Namespace) -> list[Scenario]:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    sdks = [s.strip() for s in args.sdks.split(",") if s.strip()]
    counts = [int(n) for n in args.tracks.split(",") if n.strip()]
    out: list[Scenario] = []
    for section in SECTIONS:
        if section not in sections:
            continue
        if section in ("cpu", "e2ee"):
            e2ee = section == "e2ee"
            for name, audio, video in (("audio-1", 1, False), ("video", 0, True)):
                out += [
                    Scenario(
                        f"{name}-e2ee" if e2ee else name, section, sdk, audio, video, e2ee=e2ee
                    )
                    for sdk in sdks
                ]
        elif section == "tracks":
            for n in counts:
                out += [Scenario(f"audio-{n}", section, sdk, n) for sdk in sdks]
        else:
            out += [Scenario("rss", section, sdk, 1, duplex=True) for sdk in sdks]
    return out


def cancel_on_sigterm() -> None:
    """SIGTERM cancels the running task, so children and the server are shut down in order
    (``finally`` blocks run) instead of the interpreter dying on the spot."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def run_all(args: argparse.Namespace, scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    from lkproto.testing import LocalServer

    cancel_on_sigterm()
    runs: list[dict[str, Any]] = []
    async with LocalServer(log_level="warn") as server:
        for sc in scenarios:
            window = args.rss_window if sc.duplex else args.window
            t0 = time.monotonic()
            print(
                f"-- {sc.section}: {sc.name} {sc.sdk} (window {window:g} s) ...",
                file=sys.stderr,
                flush=True,
            )
            try:
                run = await run_scenario(
                    server,
                    sc,
                    warmup=args.warmup,
                    window=window,
                    pin=args.pin,
                    ready_s=args.ready_timeout,
                )
            except Exception as exc:
                print(f"!! {sc.name} {sc.sdk} failed: {exc}", file=sys.stderr, flush=True)
                runs.append(
                    {
                        "scenario": sc.name,
                        "section": sc.section,
                        "sdk": sc.sdk,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
            else:
                run["window_s_requested"] = window
                run["total_s"] = time.monotonic() - t0
                run["loadavg_1m_after"] = os.getloadavg()[0]
                procs = run["processes"]
                print(
                    "   "
                    + ", ".join(
                        f"{label} {p['cpu_per_s']:.3f} CPU-s/s, {p['rss_kib'] / 1024:.0f} MiB"
                        for label, p in sorted(procs.items())
                    )
                    + f"; server {_f(run['server_cpu_per_s'])}; load {os.getloadavg()[0]:.2f}"
                    + f"; {run['total_s']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, help="measured s")
    parser.add_argument("--warmup", type=float, default=DEFAULT_WARMUP_S, help="s before it")
    parser.add_argument("--rss-window", type=float, default=DEFAULT_RSS_WINDOW_S)
    parser.add_argument("--tracks", default=DEFAULT_TRACKS, help="Opus track counts, e.g. 5,10")
    parser.add_argument("--sections", default=DEFAULT_SECTIONS, help="cpu,tracks,rss,e2ee")
    parser.add_argument("--sdks", default=",".join(SDKS), help="lkproto,official")
    parser.add_argument("--pin", choices=PIN_MODES, default="separate")
    parser.add_argument("--ready-timeout", type=float, default=DEFAULT_READY_TIMEOUT_S)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        spec = ChildSpec(**json.loads(args.child))
        _die_with_parent()
        if spec.cpu is not None:
            os.sched_setaffinity(0, {spec.cpu})  # before any SDK thread exists
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        return asyncio.run(child_main(spec))

    for value, name in ((args.sections, "--sections"), (args.sdks, "--sdks")):
        allowed = SECTIONS if name == "--sections" else SDKS
        bad = [v for v in value.split(",") if v.strip() and v.strip() not in allowed]
        if bad:
            parser.error(f"{name}: unknown {bad}; choose from {allowed}")
    if args.window <= 0 or args.warmup < 0 or args.rss_window <= 0:
        parser.error("--window/--rss-window must be > 0, --warmup >= 0")
    logging.basicConfig(level=logging.WARNING)
    scenarios = plan(args)
    started = utc_now()
    load_before = os.getloadavg()
    t0 = time.monotonic()
    # Ctrl-C works even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        runs = asyncio.run(run_all(args, scenarios))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: children and server stopped, nothing written", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - t0
    load_after = os.getloadavg()
    summary = summarize_results(runs, args.window)
    table = markdown_tables(summary)
    goals = targets(summary)
    loads = [r["loadavg_1m_after"] for r in runs if "loadavg_1m_after" in r]
    from lkproto.testing import DEFAULT_LIVEKIT_SERVER_VERSION

    machine = machine_info(
        {
            "livekit_server": DEFAULT_LIVEKIT_SERVER_VERSION,
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in load_after],
            "load_average_1m_after_each_scenario": [round(x, 2) for x in loads],
        }
    )
    print(table)
    print()
    print(
        f"window {args.window:g} s after {args.warmup:g} s warm-up (rss: {args.rss_window:g} s), "
        f"pin {args.pin}; {machine['cpu_model']}, {machine['cpu_count']} CPU; "
        f"load average {load_before[0]:.2f} before, "
        + (f"{min(loads):.2f}-{max(loads):.2f} during, " if loads else "")
        + f"{load_after[0]:.2f} after; {elapsed:.0f} s"
    )
    print("\ntargets:", json.dumps(goals))
    errors = [r for r in runs if "error" in r]
    for r in errors:
        print(f"FAILED {r['scenario']} {r['sdk']}: {r['error']}", file=sys.stderr)
    path = write_json(
        args.json,
        {
            "benchmark": "media",
            "started": started,
            "finished": utc_now(),
            "config": {
                "window_s": args.window,
                "warmup_s": args.warmup,
                "rss_window_s": args.rss_window,
                "tracks": args.tracks,
                "sections": args.sections,
                "sdks": args.sdks,
                "pin": args.pin,
                "audio": f"Opus mono 48 kHz, max_bitrate {AUDIO_BITRATE}, 20 ms captures",
                "video": f"VP8 {VIDEO_WIDTH}x{VIDEO_HEIGHT} {VIDEO_FPS} fps RGBA captures, "
                f"max_bitrate {VIDEO_BITRATE}, single layer",
                "lkproto_options": "RoomOptions(rtc_config=RtcConfiguration("
                "ice_addresses=['127.0.0.1']))",
                "official_options": "RoomOptions(rtc_config=RtcConfiguration(ice_servers=[])); "
                "publish dtx=False, red=False, simulcast=False",
            },
            "definitions": {
                "cpu_per_s": "(ru_utime + ru_stime) delta of the child process over the window "
                "/ window wall time",
                "frames": "AudioStream samples in the window / 960",
                "lost": "window / 20 ms - the fewest frames any track yielded (+-1 is edge jitter)",
                "rtp_lost": "inbound-RTP packetsLost increase in the window, all tracks",
            },
            "machine": machine,
            "summary": summary,
            "targets": goals,
            "runs": runs,
            "table_markdown": table,
        },
    )
    print(f"wrote {path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
