"""Profile an lkproto publisher of one 640x480 VP8 track and one Opus track: where does CPU go?

Run from the repository root::

    .venv/bin/python benchmarks/profile_media.py [--seconds 10] [--warmup 3] [--measure 5]
        [--audio-tracks 1] [--no-video] [--subscriber lkproto|official]
        [--pin separate|same|none] [--timer cpu|wall]
        [--top 25] [--dump /tmp/media.pstats]

This process is the publisher: it joins a fresh room on a loopback
:class:`~lkproto.testing.LocalServer` and publishes, exactly as ``media.py``'s ``pub`` child does,
one VP8 640x480 track fed 30 pre-generated RGBA frames/s and one mono Opus track fed 20 ms every
20 ms. A subscriber (``media.py --child``, another process) reads both tracks, so the server
forwards (and asks for keyframes) as it would in a call. After ``--warmup`` seconds it measures
this process's CPU for ``--measure`` seconds without a profiler (the number to quote), then runs
``--seconds`` seconds under cProfile and prints where the time went.

cProfile sees only the thread that enables it, and aiortc encodes every VP8 frame in the event
loop's default executor (Opus: lkproto's ``BatchWorker`` thread). So the loop gets a
``ThreadPoolExecutor`` whose jobs run under a per-thread ``cProfile.Profile`` while profiling is
on, the batch worker's batches likewise; the main thread's profile and every worker's are
merged.

Buckets: each function's own time goes to the first rule that names it (``RULES``: file and
function); builtins (C functions, PyAV's Cython methods) and standard-library functions have no
rule of their own and inherit the buckets of their callers, split by the own time each caller
edge accounts for (gprof-style). Time in ``epoll`` is idle and left out.

- ``encode``: aiortc ``Vp8Encoder.encode`` (libvpx via PyAV), lkproto's ``OpusEncoder.encode``;
- ``packetise``: VP8 payload descriptors and ``_packetize``, ``aiortc.rtp`` (``RtpPacket``,
  ``serialize``, header extensions, audio level), the RTP loop of ``RTCRtpSender._run_rtp``;
- ``SRTP``: pylibsrtp (``protect``, ``protect_rtcp``);
- ``send``: ``RTCDtlsTransport._send_rtp``, aioice's send path, ``sendto``;
- ``capture/convert``: lkproto's ``VideoSource``/``VideoFrame``/video feed and track (RGBA to
  I420 via swscale), ``AudioSource`` and its playout buffer and track;
- ``executor hop``: ``RTCRtpSender._next_encoded_frame`` and the ``run_in_executor`` machinery;
- ``RTCP/ICE/receive``: everything aiortc/aioice does for incoming packets (RTCP, STUN);
- ``lkproto other``, ``benchmark feeder``, ``event loop``, ``other``: the rest.

The profiler slows Python code several times more than C code, so shares are indicative; the
table's ``~CPU-s/s`` column scales each share to the unprofiled CPU rate.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import resource
import signal
import sys
import sysconfig
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from media import (
    PIN_MODES,
    Child,
    ChildSpec,
    Client,
    audio_pcm_frames,
    cancel_on_sigterm,
    video_rgba_frames,
)

Key = tuple[str, int, str]

IDLE_FUNCTIONS: Final = ("'poll' of 'select.epoll' objects",)  # "<method ...>" in 3.11

# (bucket, file marker, function names or None for every function of the file); first match.
RULES: Final[tuple[tuple[str, str, frozenset[str] | None], ...]] = (
    ("packetise", "aiortc/codecs/vpx.py", frozenset({"_packetize", "pack", "__bytes__"})),
    ("packetise", "aiortc/codecs/vpx.py", frozenset({"__init__"})),  # payload descriptor
    ("encode", "aiortc/codecs/vpx.py", None),
    ("packetise", "aiortc/codecs/opus.py", frozenset({"pack"})),
    ("encode", "aiortc/codecs/opus.py", None),
    ("encode", "lkproto/asyncio/audio.py", frozenset({"encode", "_convert", "mono_to_stereo"})),
    (
        "executor hop",
        "lkproto/asyncio/audio.py",
        frozenset(
            {"submit", "_flush", "_serve", "_run_batch", "_deliver", "batch_worker"}
            | {"_on_batch_worker"}
        ),
    ),
    ("executor hop", "lkproto/asyncio/_seam.py", frozenset({"next_encoded_frame"})),
    ("packetise", "aiortc/rtp.py", None),
    ("packetise", "aiortc/clock.py", None),
    ("packetise", "aiortc/rtcrtpsender.py", frozenset({"_run_rtp", "_retransmit"})),
    ("executor hop", "aiortc/rtcrtpsender.py", frozenset({"_next_encoded_frame"})),
    ("RTCP/ICE/receive", "aiortc/rtcrtpsender.py", None),
    ("SRTP", "/pylibsrtp/", None),
    ("send", "aiortc/rtcdtlstransport.py", frozenset({"_send_rtp"})),
    ("send", "aiortc/rtcicetransport.py", frozenset({"_send"})),
    ("send", "/aioice/", frozenset({"send", "sendto", "send_data", "_send"})),
    ("send", "asyncio/selector_events.py", frozenset({"sendto"})),
    ("RTCP/ICE/receive", "/aiortc/", None),
    ("RTCP/ICE/receive", "/aioice/", None),
    ("capture/convert", "lkproto/asyncio/video.py", None),
    ("capture/convert", "lkproto/rtc/video_source.py", None),
    ("capture/convert", "lkproto/rtc/video_frame.py", None),
    ("capture/convert", "lkproto/asyncio/audio.py", None),
    ("capture/convert", "lkproto/rtc/audio_source.py", None),
    ("capture/convert", "lkproto/rtc/audio_frame.py", None),
    ("lkproto other", "/lkproto/", None),
    ("executor hop", "benchmarks/profile_media.py", None),  # ProfilingExecutor.submit/_run
    ("benchmark feeder", "/benchmarks/", None),
)
BUCKET_ORDER: Final = (
    "encode",
    "packetise",
    "SRTP",
    "send",
    "capture/convert",
    "executor hop",
    "RTCP/ICE/receive",
    "lkproto other",
    "benchmark feeder",
    "event loop",
    "other",
)
# Cumulative time of these functions is printed as well (file marker, function name).
KEY_FUNCTIONS: Final = (
    ("aiortc/codecs/vpx.py", "encode", "Vp8Encoder.encode (incl. _packetize)"),
    ("aiortc/codecs/vpx.py", "_packetize", "Vp8Encoder._packetize"),
    ("lkproto/asyncio/audio.py", "encode", "lkproto OpusEncoder.encode"),
    ("aiortc/rtp.py", "serialize", "RtpPacket.serialize"),
    ("aiortc/rtcdtlstransport.py", "_send_rtp", "RTCDtlsTransport._send_rtp (incl. SRTP)"),
    ("/pylibsrtp/", "protect", "pylibsrtp Session.protect"),
    ("lkproto/asyncio/video.py", "recv", "lkproto VideoFrameTrack.recv (RGBA->I420)"),
    ("lkproto/asyncio/video.py", "convert", "lkproto RGBA->I420 conversion job"),
    ("lkproto/rtc/video_source.py", "capture_frame", "lkproto VideoSource.capture_frame"),
    ("lkproto/asyncio/audio.py", "recv", "lkproto AudioSourceTrack.recv"),
    ("lkproto/rtc/audio_source.py", "capture_frame", "lkproto AudioSource.capture_frame"),
)
_STDLIB: Final = tuple(
    {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"], "<frozen", "<string>"}
)


class ProfilingExecutor(ThreadPoolExecutor):
    """A thread pool whose jobs run under a per-thread cProfile while :attr:`active`."""

    def __init__(self, timer: Callable[[], float] | None = None) -> None:
        super().__init__(max_workers=min(32, (os.cpu_count() or 1) + 4))
        self.active = False
        self.timer = timer
        self.profiles: dict[int, cProfile.Profile] = {}
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._run, fn, args, kwargs)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self.active:
            return fn(*args, **kwargs)
        ident = threading.get_ident()
        with self._lock:
            profile = self.profiles.get(ident)
            if profile is None:
                profile = self.profiles[ident] = (
                    cProfile.Profile(self.timer) if self.timer else cProfile.Profile()
                )
        profile.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            profile.disable()


def profile_batch_worker(executor: ProfilingExecutor) -> None:
    """Profile lkproto's audio batch worker thread (``BatchWorker._run_batch``, where lkproto
    encodes Opus since issue 18) like the executor's jobs, into ``executor.profiles``."""
    from lkproto.asyncio.audio import BatchWorker

    original = BatchWorker._run_batch

    def run_batch(self: BatchWorker, batch: Any) -> Any:
        return executor._run(original, (self, batch), {})

    BatchWorker._run_batch = run_batch  # type: ignore[method-assign]


# -- attribution ------------------------------------------------------------------------------


def rule_bucket(key: Key) -> str | None:
    filename, _, name = key
    for bucket, marker, names in RULES:
        if marker in filename and (names is None or name in names):
            return bucket
    return None


def is_generic(key: Key) -> bool:
    """Builtins and the standard library take their callers' buckets."""
    filename = key[0]
    return filename == "~" or filename.startswith(_STDLIB)


def is_idle(key: Key) -> bool:
    return key[0] == "~" and any(marker in key[2] for marker in IDLE_FUNCTIONS)


def attribute(raw: dict[Key, Any]) -> tuple[dict[str, float], dict[Key, dict[str, float]]]:
    """Own time per bucket (idle excluded), and each function's bucket mix."""
    memo: dict[Key, dict[str, float]] = {}
    visiting: set[Key] = set()

    def mix(key: Key) -> dict[str, float]:
        if key in memo:
            return memo[key]
        bucket = rule_bucket(key)
        if bucket is not None:
            result = {bucket: 1.0}
        elif not is_generic(key):
            result = {"other": 1.0}
        else:
            callers: dict[Key, Any] = raw[key][4] if key in raw else {}
            if key in visiting or not callers:
                result = {"event loop": 1.0}
            else:
                visiting.add(key)
                weights = {c: float(v[2]) for c, v in callers.items()}
                total = sum(weights.values())
                if total <= 0:
                    weights = {c: float(v[1]) for c, v in callers.items()}
                    total = sum(weights.values()) or 1.0
                acc: dict[str, float] = defaultdict(float)
                for caller, weight in weights.items():
                    for b, share in mix(caller).items():
                        acc[b] += share * weight / total
                visiting.discard(key)
                result = dict(acc)
        memo[key] = result
        return result

    buckets: dict[str, float] = defaultdict(float)
    mixes: dict[Key, dict[str, float]] = {}
    for key, (_, _, tottime, _, _) in raw.items():
        if is_idle(key):
            continue
        m = mixes[key] = mix(key)
        for bucket, share in m.items():
            buckets[bucket] += tottime * share
    return dict(buckets), mixes


def cumulative(raw: dict[Key, Any], marker: str, name: str) -> tuple[float, int]:
    ct = 0.0
    calls = 0
    for (filename, _, func), (_, nc, _, cum, _) in raw.items():
        if marker in filename and func == name:
            ct += cum
            calls += nc
    return ct, calls


def _label(key: Key) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else filename
    return f"{short}:{line}({name})"


def report(
    stats: pstats.Stats,
    *,
    cpu_per_s: float,
    profiled_cpu_per_s: float,
    seconds: float,
    top: int,
    thread_times: dict[str, float],
) -> str:
    raw: dict[Key, Any] = stats.stats  # type: ignore[attr-defined]
    buckets, mixes = attribute(raw)
    total = sum(buckets.values()) or 1.0
    lines = [
        f"unprofiled: {cpu_per_s:.3f} CPU-s/s; under the profiler: {profiled_cpu_per_s:.3f} "
        f"CPU-s/s over {seconds:.1f} s; profiled own time {total:.2f} s "
        + ", ".join(f"{k} {v:.2f} s" for k, v in thread_times.items()),
        "",
        "| bucket | own s (profiled) | share | ~CPU-s/s unprofiled |",
        "| --- | ---: | ---: | ---: |",
    ]
    order = [b for b in BUCKET_ORDER if b in buckets] + sorted(
        b for b in buckets if b not in BUCKET_ORDER
    )
    for bucket in order:
        value = buckets[bucket]
        lines.append(
            f"| {bucket} | {value:.3f} | {100 * value / total:.1f} % "
            f"| {cpu_per_s * value / total:.4f} |"
        )
    lines.append(f"| total | {total:.3f} | 100 % | {cpu_per_s:.4f} |")
    lines += [
        "",
        "| function (cumulative, profiled) | calls | cum s | per call ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for marker, name, label in KEY_FUNCTIONS:
        ct, calls = cumulative(raw, marker, name)
        if calls:
            lines.append(f"| {label} | {calls} | {ct:.3f} | {1000 * ct / calls:.3f} |")
    lines += [
        "",
        f"| top {top} functions by own time | bucket | calls | own s | share |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    ranked = sorted(((k, v) for k, v in raw.items() if not is_idle(k)), key=lambda kv: -kv[1][2])[
        :top
    ]
    for key, (_, nc, tt, _, _) in ranked:
        m = mixes.get(key, {})
        main = max(m.items(), key=lambda kv: kv[1])[0] if m else "?"
        label = main if len(m) <= 1 else f"{main} +{len(m) - 1}"
        lines.append(f"| `{_label(key)}` | {label} | {nc} | {tt:.3f} | {100 * tt / total:.1f} % |")
    return "\n".join(lines)


# -- run --------------------------------------------------------------------------------------


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run(args: argparse.Namespace) -> int:
    from lkproto.testing import LocalServer

    cancel_on_sigterm()
    timer: Callable[[], float] | None = time.thread_time if args.timer == "cpu" else None
    executor = ProfilingExecutor(timer)
    profile_batch_worker(executor)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(executor)
    usable = sorted(os.sched_getaffinity(0))
    sub_cpu: int | None = None
    if args.pin != "none" and usable:
        sub_cpu = usable[1] if args.pin == "separate" and len(usable) > 1 else usable[0]
    audio = audio_pcm_frames()
    video = video_rgba_frames() if args.video else []
    async with LocalServer(log_level="warn") as server:
        room = f"bench-profile-media-{uuid.uuid4().hex[:6]}"
        sub = await Child.start(
            ChildSpec(
                label="sub",
                sdk=args.subscriber,
                url=server.url,
                token=server.create_token("sub", room),
                expect_audio=args.audio_tracks,
                expect_video=int(args.video),
                cpu=sub_cpu,
            )
        )
        client: Client | None = None
        try:
            # The subscriber joins first (a late aiortc subscriber logs undecodable VP8 frames
            # until its first keyframe).
            await sub.expect("connected", 60.0)
            client = Client(
                ChildSpec(
                    label="pub",
                    sdk="lkproto",
                    url=server.url,
                    token=server.create_token("pub", room),
                    publish_audio=args.audio_tracks,
                    publish_video=args.video,
                )
            )
            await client.connect()
            await client.publish(audio, video)
            await sub.expect("ready", 90.0)
            await asyncio.sleep(args.warmup)

            c0, t0, f0 = _cpu_s(), time.monotonic(), _audio_frames_sent(client)
            await asyncio.sleep(args.measure)
            cpu_per_s = (_cpu_s() - c0) / (time.monotonic() - t0)
            frames = _audio_frames_sent(client) - f0
            # CPU per frame the senders actually read: on a loaded machine a starved publisher
            # sends fewer frames (skipping slots), which CPU-s/s alone hides.
            per_frame = f"{1e6 * cpu_per_s * args.measure / frames:.0f} us/frame" if frames else "-"
            print(
                f"unprofiled: {cpu_per_s:.3f} CPU-s/s over {args.measure:g} s; {frames} audio "
                f"frames read by the senders ({per_frame}); load average {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
            )

            main_profile = cProfile.Profile(timer) if timer else cProfile.Profile()
            c0, t0 = _cpu_s(), time.monotonic()
            executor.active = True
            main_profile.enable()
            await asyncio.sleep(args.seconds)
            main_profile.disable()
            executor.active = False
            seconds = time.monotonic() - t0
            profiled_cpu_per_s = (_cpu_s() - c0) / seconds
            await asyncio.sleep(0.2)  # let running jobs leave their profiles
            stats = pstats.Stats(main_profile)
            thread_times = {"main thread": _own_total(main_profile)}
            executor_total = 0.0
            for profile in executor.profiles.values():
                stats.add(profile)
                executor_total += _own_total(profile)
            thread_times[f"{len(executor.profiles)} executor/media worker thread(s)"] = (
                executor_total
            )
            if args.dump:
                stats.dump_stats(args.dump)
            print(
                report(
                    stats,
                    cpu_per_s=cpu_per_s,
                    profiled_cpu_per_s=profiled_cpu_per_s,
                    seconds=seconds,
                    top=args.top,
                    thread_times=thread_times,
                )
            )
            print("\n" + _sources_line(client, args.timer))
        finally:
            if client is not None:
                await client.close()
            await sub.close()
    return 0


def _audio_frames_sent(client: Client) -> int:
    """20 ms frames the audio senders have read from lkproto's tracks so far."""
    return sum(
        getattr(getattr(source, "_track", None), "frames_sent", 0)
        for source in client.audio_sources
    )


def _sources_line(client: Client, timer: str) -> str:
    parts = []
    for vsource in client.video_sources:
        parts.append(
            f"video: {vsource.captured_frames} frames captured, {vsource.dropped_frames} dropped "
            f"before the encoder, feeder max lag {client.video_feed.max_lag_s * 1000:.1f} ms"
        )
    if client.audio_sources:
        silence = sum(s.silence_frames for s in client.audio_sources)
        skipped = sum(s.dropped_frames for s in client.audio_sources)
        parts.append(
            f"audio ({len(client.audio_sources)} sources): {silence} silence frames, {skipped} "
            f"skipped, feeder max lag {client.audio_feed.max_lag_s * 1000:.1f} ms"
        )
    parts.append(f"timer {timer}; load average {os.getloadavg()[0]:.2f}")
    return "; ".join(parts)


def _own_total(profile: cProfile.Profile) -> float:
    raw: dict[Key, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return float(sum(v[2] for k, v in raw.items() if not is_idle(k)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="profiled seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--measure", type=float, default=5.0, help="unprofiled CPU window, s")
    parser.add_argument("--audio-tracks", type=int, default=1, help="Opus tracks to publish")
    parser.add_argument(
        "--video", action=argparse.BooleanOptionalAction, default=True, help="the VP8 track"
    )
    parser.add_argument("--subscriber", choices=("lkproto", "official"), default="lkproto")
    parser.add_argument(
        "--pin",
        choices=PIN_MODES,
        default="separate",
        help="separate: this process on the first usable CPU, the subscriber on the second",
    )
    parser.add_argument(
        "--timer",
        choices=("wall", "cpu"),
        default="cpu",
        help="cProfile clock: per-thread CPU time (cpu, default: blocking and preemption are "
        "not counted, at one clock_gettime per event) or perf_counter (wall)",
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dump", type=Path, help="write the merged pstats here")
    args = parser.parse_args(argv)
    if args.pin != "none":
        usable = sorted(os.sched_getaffinity(0))
        if usable:
            os.sched_setaffinity(0, {usable[0]})  # before any thread exists
    import lkproto

    print(f"lkproto from {Path(lkproto.__file__).parent}", file=sys.stderr)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
