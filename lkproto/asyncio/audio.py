"""The aiortc side of published audio: a paced 48 kHz track, and an Opus encoder that can be mono.

Data path of a published :class:`~lkproto.rtc.AudioSource`::

    capture_frame(AudioFrame) ──> PlayoutBuffer ──> AudioSourceTrack.recv() ──> OpusEncoder
        (any rate; resampled     (bounded, 48 kHz,    (one 20 ms frame each     (mono or stereo
         to 48 kHz on the way in) back-pressure)       20 ms of wall clock)      Opus packets)

:class:`PlayoutBuffer` holds the PCM waiting to be sent. It is bounded: a producer that gets
ahead by more than the buffer's capacity waits in :meth:`PlayoutBuffer.put` until playout makes
room, so memory never grows with the producer's speed.

:class:`AudioSourceTrack` is the ``MediaStreamTrack`` aiortc's ``RTCRtpSender`` reads. It hands
out exactly one 20 ms frame per 20 ms of ``loop.time()`` and sends silence when nothing is
queued, as a live microphone would, so the RTP stream and its timeline never stall.

:class:`OpusEncoder` replaces aiortc's encoder, which always encodes stereo at 96 kbps. A mono
source is encoded as mono Opus, which is legal in an ``opus/48000/2`` RTP stream (RFC 7587 §6.2:
the SDP always says 2 channels; §3.3: decoders take mono or stereo either way, as each packet's
TOC byte says, RFC 6716 §3.1). :func:`install_opus_encoder` puts it in place on a sender and
has the sender compute each frame's RFC 6464 audio level with :func:`audio_level_dbov` (numpy)
instead of aiortc's per-sample Python loop (:func:`lkproto.asyncio._seam.encode_audio_with`;
issue 18: 18 % of a 20-track publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Final, TypeVar, cast

import av
import numpy as np
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.base import Encoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet
from av.stream import Stream

from lkproto.asyncio._seam import (
    current_encoder,
    decode_audio_with,
    encode_audio_with,
    preset_encoder,
)
from lkproto.errors import LkError, LocalProtocolError

__all__ = [
    "BATCH_WORKER",
    "DEFAULT_OPUS_BITRATE",
    "DELIVERY_SLICE_JOBS",
    "FRAME_DURATION_MS",
    "MAX_LAG_S",
    "OPUS_MAX_BITRATE",
    "OPUS_MIN_BITRATE",
    "OPUS_SAMPLE_RATE_HZ",
    "SAMPLES_PER_FRAME",
    "WORKER_IDLE_EXIT_S",
    "AudioSourceTrack",
    "BatchWorker",
    "OpusEncoder",
    "PlayoutBuffer",
    "audio_level_dbov",
    "batch_worker",
    "decode_on_batch_worker",
    "encode_step",
    "install_opus_encoder",
    "mono_to_stereo",
]

_log = logging.getLogger("lkproto.media")

OPUS_SAMPLE_RATE_HZ: Final = 48_000
"""The Opus RTP clock rate, whatever the audio bandwidth (RFC 7587 §4.1)."""

FRAME_DURATION_MS: Final = 20
"""One RTP packet's worth of audio: the ``ptime`` libwebrtc and aiortc use for Opus."""

SAMPLES_PER_FRAME: Final = OPUS_SAMPLE_RATE_HZ * FRAME_DURATION_MS // 1000
_TIME_BASE: Final = Fraction(1, OPUS_SAMPLE_RATE_HZ)  # shared: a Fraction per frame costs 3 us
_FRAME_S: Final = FRAME_DURATION_MS / 1000

MAX_LAG_S: Final = 0.2
"""How late the sender may read the track before it skips ahead instead of catching up.

Up to this lag, late frames are handed out back to back (a burst the receiver's jitter buffer
absorbs); beyond it, the missed 20 ms slots are skipped, their queued audio dropped and counted,
so a stalled event loop costs a gap instead of ever-growing latency.
"""

DEFAULT_OPUS_BITRATE: Final = 48_000
"""Bits per second when the publisher asks for none: livekit-client's ``AudioPresets.music``,
which its ``publishDefaults.audioPreset`` applies to every published audio track, mono or stereo
(client-sdk-js ``src/room/defaults.ts`` and ``src/room/track/options.ts``, since v2.5.10)."""

OPUS_MIN_BITRATE: Final = 6_000
OPUS_MAX_BITRATE: Final = 510_000
"""The range libopus accepts (RFC 7587 §3.1.1: 6 to 510 kbit/s)."""

_SAMPLE_BYTES: Final = 2  # packed signed 16-bit, the only format sources carry

_OPUS_APPLICATIONS: Final = frozenset({"audio", "voip", "lowdelay"})
"""FFmpeg libopusenc's ``application`` values."""


def _layout_name(num_channels: int) -> str:
    if num_channels not in (1, 2):
        raise ValueError(f"num_channels must be 1 or 2, got {num_channels}")
    return "mono" if num_channels == 1 else "stereo"


# A track that has not taken a frame for this long is not reading (real-time reads come every
# 20 ms); the buffer then drains itself in real time rather than blocking producers.
_CONSUMER_IDLE_S: Final = 0.1


class PlayoutBuffer:
    """A bounded FIFO of 48 kHz interleaved int16 PCM waiting to be sent.

    Producers :meth:`put` PCM at ``input_rate``; it is resampled to 48 kHz on the way in (with
    PyAV's ``AudioResampler``, whose filter keeps a few samples, under 1 ms, until the next
    input). The track takes it out in 20 ms frames with :meth:`take`.

    Args:
        input_rate: sample rate of the PCM given to :meth:`put`, in Hz.
        num_channels: 1 or 2, the same in and out.
        capacity_ms: how much audio may wait, in milliseconds; at least one 20 ms frame is
            always allowed.

    Raises:
        ValueError: a non-positive rate or capacity, or a channel count other than 1 or 2.
    """

    def __init__(self, *, input_rate: int, num_channels: int, capacity_ms: int) -> None:
        if input_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {input_rate}")
        if capacity_ms < 0:
            raise ValueError(f"queue_size_ms must be >= 0, got {capacity_ms}")
        self.input_rate = input_rate
        self.num_channels = num_channels
        self._layout = _layout_name(num_channels)
        self._frame_bytes = num_channels * _SAMPLE_BYTES
        capacity = max(capacity_ms * OPUS_SAMPLE_RATE_HZ // 1000, SAMPLES_PER_FRAME)
        self.capacity_samples = capacity
        self._capacity_bytes = capacity * self._frame_bytes
        self._data = bytearray()
        self._resampler: av.AudioResampler | None = None
        self._input_samples = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._put_lock = asyncio.Lock()
        self._pending_puts = 0
        self._closed = False
        self._last_take: float | None = None
        self.unsent_samples = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_samples(self) -> int:
        """Samples per channel waiting, at 48 kHz."""
        return len(self._data) // self._frame_bytes

    @property
    def queued_duration(self) -> float:
        """Seconds of audio waiting."""
        return self.queued_samples / OPUS_SAMPLE_RATE_HZ

    async def put(self, pcm: bytes | bytearray | memoryview) -> None:
        """Queue interleaved int16 PCM at ``input_rate``, waiting while the buffer is full.

        Concurrent calls are queued in call order and never interleave. Returns once all of
        ``pcm`` is in the buffer, or at once (dropping the rest) if the buffer is closed. If the
        call is cancelled while waiting, the part already queued stays queued.
        """
        if self._closed:
            return
        data = self._to_output_rate(pcm)
        if not self._pending_puts and len(self._data) + len(data) <= self._capacity_bytes:
            # The common case (a real-time producer, 10 ms frames as the official SDK's examples
            # send): nothing ahead of this call and room for all of it, so no lock is needed
            # to keep calls in order (about 20 us per call of a 20-track publisher's loop).
            self._data += data
            self._wake()
            return
        self._pending_puts += 1
        try:
            async with self._put_lock:
                offset = 0
                while offset < len(data) and not self._closed:
                    room = self._capacity_bytes - len(self._data)
                    if room <= 0:
                        await self._make_room()
                        continue
                    chunk = data[offset : offset + room]
                    self._data += chunk
                    offset += len(chunk)
        finally:
            self._pending_puts -= 1
            self._wake()

    def take(self, samples: int) -> bytes:
        """Remove and return up to ``samples`` samples per channel (fewer if fewer are queued)."""
        self._last_take = asyncio.get_running_loop().time()
        size = min(samples * self._frame_bytes, len(self._data))
        if not size:
            return b""
        out = bytes(self._data[:size])
        del self._data[:size]
        self._wake()
        return out

    def discard(self, samples: int) -> int:
        """Drop up to ``samples`` samples per channel from the front; returns how many."""
        size = min(samples * self._frame_bytes, len(self._data))
        if size:
            del self._data[:size]
            self._wake()
        return size // self._frame_bytes

    def clear(self) -> None:
        """Drop everything queued (a producer blocked in :meth:`put` continues with the rest)."""
        self._data.clear()
        self._wake()

    async def wait_drained(self) -> None:
        """Wait until every queued sample has been taken and no :meth:`put` is in progress."""
        while (self._data or self._pending_puts) and not self._closed:
            await self._changed()

    def close(self) -> None:
        """Drop everything and release every waiter; later puts are ignored (idempotent)."""
        self._closed = True
        self._data.clear()
        self._wake()

    def _to_output_rate(self, pcm: bytes | bytearray | memoryview) -> memoryview:
        view = memoryview(pcm).cast("B")
        if len(view) % self._frame_bytes:
            raise ValueError(
                f"PCM length {len(view)} is not a whole number of {self.num_channels}-channel "
                "int16 samples"
            )
        if self.input_rate == OPUS_SAMPLE_RATE_HZ or not view:
            return view
        samples = len(view) // self._frame_bytes
        frame = av.AudioFrame(format="s16", layout=self._layout, samples=samples)
        frame.sample_rate = self.input_rate
        frame.planes[0].update(cast("bytes", view))  # PyAV's stub says bytes; any buffer works
        frame.pts = self._input_samples
        frame.time_base = Fraction(1, self.input_rate)
        self._input_samples += samples
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format="s16", layout=self._layout, rate=OPUS_SAMPLE_RATE_HZ
            )
        out = bytearray()
        for part in self._resampler.resample(frame):
            out += memoryview(part.planes[0])[: part.samples * self._frame_bytes]
        return memoryview(out)

    async def _make_room(self) -> None:
        """Wait for the track to take audio. With no track reading (not published yet, or its
        sender stopped), the oldest audio is played out into the void at real-time pace instead,
        as the official SDK's source does, so a producer is paced but never blocked forever."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CONSUMER_IDLE_S):
                await self._changed()
            return
        now = asyncio.get_running_loop().time()
        if self._last_take is None or now - self._last_take >= _CONSUMER_IDLE_S:
            played = int(_CONSUMER_IDLE_S * OPUS_SAMPLE_RATE_HZ)
            self.unsent_samples += self.discard(played)

    async def _changed(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class AudioSourceTrack(MediaStreamTrack):
    """The aiortc track that plays a :class:`PlayoutBuffer` out in real time.

    Every :meth:`recv` returns one 20 ms, 48 kHz, packed-s16 ``av.AudioFrame`` with the buffer's
    channel count. Frame *n* is due at ``t0 + n * 20 ms`` of ``loop.time()`` (``t0`` is the first
    call), so pacing never drifts; ``pts`` counts samples in a ``1/48000`` time base. Frames are
    filled from the buffer as follows:

    - a full 20 ms is queued: it is sent;
    - nothing is queued: silence is sent (counted in :attr:`silence_frames`);
    - less than 20 ms is queued: silence is sent once, giving a real-time producer one more
      frame's time to catch up (counted as silence); if it is still short on the next frame,
      what there is is sent, padded with silence, so the tail of a stream always goes out.

    A reader more than :data:`MAX_LAG_S` late skips the missed slots (``pts`` jumps with the
    wall clock) and drops that much queued audio (counted in :attr:`dropped_frames`).
    After :meth:`stop`, :meth:`recv` raises aiortc's ``MediaStreamError``.
    """

    kind = "audio"

    def __init__(self, buffer: PlayoutBuffer) -> None:
        super().__init__()
        self.buffer = buffer
        self.silence_frames = 0
        """20 ms frames of silence sent because not enough audio was queued."""
        self.dropped_frames = 0
        """20 ms slots skipped because the reader fell more than MAX_LAG_S behind."""
        self.frames_sent = 0
        self._layout = _layout_name(buffer.num_channels)
        self._frame_bytes = SAMPLES_PER_FRAME * buffer.num_channels * _SAMPLE_BYTES
        self._silence = bytes(self._frame_bytes)
        self._start: float | None = None
        self._index = 0
        self._holding = False

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms frame, once it is due (see the class docstring)."""
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            # With BATCH_WORKER, every track of the process plays out on one 20 ms grid of the
            # loop clock (the first frame is due at once, on the grid point just passed), so N
            # tracks wake in one loop turn and their N frames reach the encoder thread as one
            # batch (see BatchWorker): one thread wake-up and one loop wake-up per 20 ms instead
            # of N of each (issue 18).
            self._start = now - math.fmod(now, _FRAME_S) if BATCH_WORKER else now
        due = self._start + self._index * _FRAME_S
        if now < due:
            await asyncio.sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        elif now - due > MAX_LAG_S:
            behind = math.floor((now - due) / _FRAME_S)
            self._index += behind
            self.dropped_frames += behind
            self.buffer.discard(behind * SAMPLES_PER_FRAME)
            self._holding = False
            _log.debug("= audio track %s behind: skipped %d frames", self.id, behind)
        frame = av.AudioFrame(format="s16", layout=self._layout, samples=SAMPLES_PER_FRAME)
        frame.sample_rate = OPUS_SAMPLE_RATE_HZ
        frame.planes[0].update(self._next_payload())
        frame.pts = self._index * SAMPLES_PER_FRAME
        frame.time_base = _TIME_BASE
        self._index += 1
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        """End the track: the sender's next :meth:`recv` raises ``MediaStreamError``."""
        super().stop()

    def _next_payload(self) -> bytes:
        queued = self.buffer.queued_samples
        if queued >= SAMPLES_PER_FRAME:
            self._holding = False
            return self.buffer.take(SAMPLES_PER_FRAME)
        if queued and self._holding:
            self._holding = False
            return self.buffer.take(queued).ljust(self._frame_bytes, b"\0")
        self._holding = bool(queued)
        self.silence_frames += 1
        return self._silence


class OpusEncoder(Encoder):
    """An aiortc ``Encoder`` producing mono or stereo 20 ms Opus packets at a chosen bitrate.

    aiortc's own encoder upmixes everything to stereo at 96 kbps. This one encodes
    ``channels`` channels (input of another layout, rate or sample format is converted) at
    ``bitrate`` bits per second, in constrained VBR: LiveKit's presets are maxima
    (``RTCRtpEncodingParameters.maxBitrate``) and plain VBR overshoots them by up to 70 % on
    tonal input. The default bitrate is :data:`DEFAULT_OPUS_BITRATE` (livekit-client's
    ``AudioPresets.music``, 48 kbps); its ``musicStereo`` preset, 64 kbps, suits stereo music.

    The libopus application defaults to ``audio`` for mono too, where libwebrtc would pick
    ``voip``: browsers pair ``voip`` with DTX, which this FFmpeg wrapper cannot do, and without
    it ``voip`` spends nearly the whole bitrate on digital silence (55 bytes per packet at
    48 kbps, against 3 bytes in ``audio`` mode), which an idle source sends all the time.
    libopus still chooses its speech (SILK/hybrid) modes by itself at low bitrates.

    RTP timestamps follow the input frames' ``pts`` (48 kHz ticks from the first packet), so a
    gap the track skipped shows as a gap on the wire, as it should.

    Args:
        channels: 1 (mono) or 2 (stereo).
        bitrate: target bits per second, 6 000 to 510 000.
        application: libopus tuning, ``"audio"``, ``"voip"`` or ``"lowdelay"``.

    Raises:
        ValueError: a channel count other than 1 or 2, a bitrate out of range, or an unknown
            application.
    """

    def __init__(
        self,
        *,
        channels: int = 1,
        bitrate: int = DEFAULT_OPUS_BITRATE,
        application: str = "audio",
    ) -> None:
        layout = _layout_name(channels)
        if not OPUS_MIN_BITRATE <= bitrate <= OPUS_MAX_BITRATE:
            raise ValueError(
                f"bitrate must be {OPUS_MIN_BITRATE}..{OPUS_MAX_BITRATE} bps, got {bitrate}"
            )
        if application not in _OPUS_APPLICATIONS:
            raise ValueError(f"application must be one of {sorted(_OPUS_APPLICATIONS)}")
        self.channels = channels
        self.bitrate = bitrate
        self.application = application
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bitrate
        codec.format = "s16"
        codec.layout = layout
        codec.sample_rate = OPUS_SAMPLE_RATE_HZ
        codec.time_base = Fraction(1, OPUS_SAMPLE_RATE_HZ)
        codec.options = {
            "application": application,
            "frame_duration": str(FRAME_DURATION_MS),
            "vbr": "constrained",
        }
        codec.open()
        # FFmpeg hands back the options it did not recognise: any left means a different libopus
        # wrapper than the one this encoder was written for.
        if codec.options:
            raise LkError(f"libopus did not accept options {codec.options}")
        self.codec = codec
        self._layout = layout
        self._converter: av.AudioResampler | None = None
        self._upmix = False
        self._first_pts: int | None = None
        self._timestamp = 0

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """Encode one PCM frame; returns the Opus packets completed so far and the RTP
        timestamp (48 kHz) of the first of them. Opus has no keyframes: ``force_keyframe``
        is ignored."""
        if not isinstance(frame, av.AudioFrame):
            raise TypeError(f"OpusEncoder encodes av.AudioFrame, got {type(frame).__name__}")
        packets: list[Packet[Stream]] = []
        for part in self._convert(frame):
            packets.extend(self.codec.encode(part))
        if not packets:
            return [], self._timestamp
        first = packets[0]
        if first.pts is None:
            timestamp = self._timestamp
        else:
            if self._first_pts is None:
                # libopus' pre-skip makes the first pts negative; RTP time starts at 0 here.
                self._first_pts = first.pts
            timestamp = first.pts - self._first_pts
        self._timestamp = timestamp + sum(p.duration or 0 for p in packets)
        return [bytes(p) for p in packets], timestamp

    def pack(self, packet: Packet[Stream]) -> tuple[list[bytes], int]:
        """Pass an already-encoded Opus packet through, with its timestamp in 48 kHz ticks."""
        if packet.pts is None or packet.time_base is None:
            return [bytes(packet)], self._timestamp
        ticks = packet.pts * packet.time_base * OPUS_SAMPLE_RATE_HZ
        return [bytes(packet)], int(ticks)

    def _convert(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        matches = (
            frame.format.name == "s16"
            and frame.layout.name == self._layout
            and frame.sample_rate == OPUS_SAMPLE_RATE_HZ
        )
        # Once converted input has been seen, keep using the converter: it may hold samples.
        if matches and self._converter is None:
            return [frame]
        if self._converter is None:
            self._upmix = frame.layout.nb_channels == 1 and self.channels == 2
            self._converter = av.AudioResampler(
                format="s16",
                layout="mono" if self._upmix else self._layout,
                rate=OPUS_SAMPLE_RATE_HZ,
            )
        parts = self._converter.resample(frame)
        if not self._upmix:
            return parts
        stereo = []
        for part in parts:
            out = av.AudioFrame(format="s16", layout="stereo", samples=part.samples)
            out.sample_rate = OPUS_SAMPLE_RATE_HZ
            mono = memoryview(part.planes[0])[: part.samples * _SAMPLE_BYTES]
            out.planes[0].update(cast("bytes", mono_to_stereo(mono)))
            out.pts, out.time_base = part.pts, part.time_base
            stereo.append(out)
        return stereo


def mono_to_stereo(pcm: bytes | bytearray | memoryview) -> bytearray:
    """Interleaved int16 stereo with the mono ``pcm`` on both channels, at the same level.

    FFmpeg's own mono-to-stereo remix lowers each channel by 3 dB; a copied microphone signal
    should keep its level, as libwebrtc's remixer does.
    """
    mono = bytes(pcm)
    out = bytearray(2 * len(mono))
    out[0::4] = mono[0::2]
    out[1::4] = mono[1::2]
    out[2::4] = mono[0::2]
    out[3::4] = mono[1::2]
    return out


# RFC 6465 Appendix A, as aiortc.rtp.compute_audio_level_dbov (1.16.0) applies it.
_FULL_SCALE: Final = 32767
_MIN_LEVEL_DBOV: Final = -127


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """The audio level of a packed-s16 frame in dBov, -127 (silence) to 0 (full scale).

    The value aiortc puts in the RFC 6464 header extension, computed as aiortc 1.16.0's
    ``aiortc.rtp.compute_audio_level_dbov`` does (RMS over the whole first plane relative to
    32767, per RFC 6465 Appendix A, rounded and clamped), with numpy instead of a Python loop
    over the samples: about 20 times cheaper per 20 ms frame. The sum of squares is exact in
    int64 and, below 2**53, in the float aiortc accumulates it in, so the results are equal
    (``tests/property/test_media_level.py``). Like aiortc's, it divides the energy of all
    interleaved samples by the per-channel sample count, so stereo reads up to 3 dB hotter.
    """
    pcm = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16).astype(np.int64)
    energy = float(np.dot(pcm, pcm))
    rms = math.sqrt(energy / (frame.samples * _FULL_SCALE * _FULL_SCALE))
    if rms <= 0:
        return _MIN_LEVEL_DBOV
    return round(min(max(20 * math.log10(rms), _MIN_LEVEL_DBOV), 0))


_T = TypeVar("_T")

BATCH_WORKER = False
"""Whether lkproto's audio senders and receivers use :class:`BatchWorker` (off by default).

Measured on a shared 2-vCPU VM (docs/reference/benchmarks.md, issue 18 part 4): with it, Opus
publish + subscribe cost 0.72-0.81x the official SDK per track at 10 and 20 tracks, in real time,
but 30 and 40 tracks fell behind (its thread waits for the GIL behind the busy loop thread);
with aiortc's executor hop and decoder threads, 40 tracks stayed real time at 0.031 CPU-s/s
per track. Set it before publishing or subscribing; it applies to tracks set up afterwards."""

WORKER_IDLE_EXIT_S: Final = 5.0
"""How long a :class:`BatchWorker`'s thread waits for work before it ends (a new one starts with
the next job), so a process that stopped sending audio keeps no thread, and one that sends keeps
the same thread instead of starting one per frame."""

DELIVERY_SLICE_JOBS: Final = 8
"""How many finished jobs a :class:`BatchWorker` hands back to the loop at once."""


class BatchWorker:
    """Runs the jobs one event loop submits on one worker thread, a loop turn's worth at a time.

    aiortc encodes every audio frame with ``loop.run_in_executor``: per frame and per track, a
    ``concurrent.futures`` future, a wake-up of an executor thread, and a
    ``call_soon_threadsafe`` that wakes the loop through its self-pipe. With N tracks that is N of
    each every 20 ms, 11-12 % of a 10-20-track publisher's profile (docs/reference/benchmarks.md).
    Here the jobs submitted during one loop turn (the N senders whose frames fell due together,
    see :class:`AudioSourceTrack`) go to the thread as one batch, with one notification; the
    thread runs them in submission order and hands the results back with one
    ``call_soon_threadsafe`` per :data:`DELIVERY_SLICE_JOBS` jobs. Jobs that arrive while the
    thread is busy join the next batch.
    The work itself stays off the event loop, as in aiortc: running it on the loop was measured
    cheaper still but fell behind real time on a contended CPU (the same page).

    Known limit (docs/reference/benchmarks.md, issue 18 part 4): the thread takes the GIL back
    after every PyAV call and waits behind a busy loop thread for the switch interval, so on a
    contended 2-vCPU machine 30 tracks fell behind real time where aiortc's threads kept up.

    The thread is a daemon and ends after :data:`WORKER_IDLE_EXIT_S` without work; a job's
    exception is raised from its future. If the loop is closed while jobs run, their results
    are dropped.

    Args:
        loop: the loop whose coroutines await the jobs (held weakly).
        idle_exit_s: idle time after which the thread ends.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, idle_exit_s: float = WORKER_IDLE_EXIT_S
    ) -> None:
        self._loop_ref = weakref.ref(loop)
        self._idle_exit_s = idle_exit_s
        self._submitted: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._cond = threading.Condition()
        self._queued: deque[tuple[Callable[[], Any], asyncio.Future[Any]]] = deque()
        self._thread: threading.Thread | None = None
        self.batches = 0
        """Slices of batches the thread has run (a batch is everything queued when it woke)."""
        self.jobs = 0
        """Jobs the thread has run."""
        self.threads_started = 0
        """Worker threads started (one more after each idle exit)."""

    def submit(self, job: Callable[[], _T]) -> asyncio.Future[_T]:
        """Queue ``job`` for the worker thread; call on the loop's thread.

        Returns:
            A future of the loop that gets ``job()``'s result or exception.
        """
        loop = self._loop_ref()
        if loop is None:  # pragma: no cover - a caller on the loop keeps it alive
            raise RuntimeError("the event loop of this worker is gone")
        future: asyncio.Future[_T] = loop.create_future()
        self._submitted.append((job, future))
        if not self._flush_scheduled:
            # Let every coroutine that runs in this loop turn add its job first.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._submitted = self._submitted, []
        with self._cond:
            self._queued.extend(batch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="lkproto-media-worker", daemon=True
                )
                self.threads_started += 1
                self._thread.start()
            else:
                self._cond.notify()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queued:
                    if not self._cond.wait(self._idle_exit_s) and not self._queued:
                        self._thread = None
                        return
                batch = list(self._queued)
                self._queued.clear()
            # Results go back a slice at a time, so the loop packetises and sends the first
            # tracks' frames while this thread still encodes the others (with the whole batch
            # in one go, 30-40 tracks fell behind real time on a contended CPU).
            for start in range(0, len(batch), DELIVERY_SLICE_JOBS):
                results = self._run_batch(batch[start : start + DELIVERY_SLICE_JOBS])
                loop = self._loop_ref()
                try:
                    if loop is None:
                        raise RuntimeError("event loop collected")
                    loop.call_soon_threadsafe(_deliver, results)
                except RuntimeError:  # the loop was closed: nobody awaits these any more
                    with self._cond:
                        self._queued.clear()
                        self._thread = None
                    return

    def _run_batch(
        self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, Exception | None]]:
        # A method of its own so a profiler can wrap it (benchmarks/profile_media.py).
        results: list[tuple[asyncio.Future[Any], Any, Exception | None]] = []
        for job, future in batch:
            try:
                results.append((future, job(), None))
            except Exception as exc:  # handed to the awaiting coroutine
                results.append((future, None, exc))
        self.batches += 1
        self.jobs += len(batch)
        return results


def _deliver(results: list[tuple[asyncio.Future[Any], Any, Exception | None]]) -> None:
    for future, value, exc in results:
        if future.done():  # cancelled while its job ran
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


_WORKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchWorker] = (
    weakref.WeakKeyDictionary()
)


def batch_worker(loop: asyncio.AbstractEventLoop | None = None) -> BatchWorker:
    """The :class:`BatchWorker` of ``loop`` (the running loop by default), created on first use.

    Every audio sender of one loop shares it, which is what makes the batches.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    worker = _WORKERS.get(loop)
    if worker is None:
        worker = _WORKERS[loop] = BatchWorker(loop)
    return worker


def _on_batch_worker(job: Callable[[], _T]) -> asyncio.Future[_T]:
    return batch_worker().submit(job)


def encode_step(encoder: Encoder, data: object) -> tuple[list[bytes], int, int | None]:
    """One frame of an audio sender: its payloads, RTP timestamp and audio level.

    The step :func:`lkproto.asyncio._seam.encode_audio_with` runs per frame: PCM frames are
    encoded and carry their :func:`audio_level_dbov`; pre-encoded ``av.Packet`` s are passed
    through ``encoder.pack`` without a level, as aiortc does.

    Returns:
        The RTP payloads, the RTP timestamp of the first, and the level (or None).
    """
    if isinstance(data, Frame):
        payloads, timestamp = encoder.encode(data, False)
        level = audio_level_dbov(data) if payloads and isinstance(data, av.AudioFrame) else None
        return payloads, timestamp, level
    if isinstance(data, Packet):
        payloads, timestamp = encoder.pack(data)
        return payloads, timestamp, None
    raise TypeError(f"an audio track yielded {type(data).__name__}, not a frame or packet")


def install_opus_encoder(sender: RTCRtpSender, *, channels: int, bitrate: int) -> None:
    """Make ``sender`` encode with :class:`OpusEncoder` instead of aiortc's stereo encoder.

    Call it after ``addTrack`` and before the sender sends its first frame. aiortc has no API
    for this: :func:`lkproto.asyncio._seam.preset_encoder` presets its lazily created encoder.
    It assumes the negotiated codec is Opus, which is the only audio codec LiveKit and aiortc
    have in common.

    Args:
        sender: an audio ``RTCRtpSender`` that has not started sending.
        channels: 1 or 2.
        bitrate: bits per second (see :class:`OpusEncoder`).

    Raises:
        ValueError: ``sender`` is not an audio sender, or bad ``channels``/``bitrate``.
        LocalProtocolError: the sender already created an encoder (it has started sending).
        LkError: this aiortc does not have the internals relied on (another aiortc version).
    """
    current = current_encoder(sender)
    if sender.kind != "audio":
        raise ValueError(f"install_opus_encoder needs an audio sender, not {sender.kind!r}")
    if current is not None and not isinstance(current, OpusEncoder):
        raise LocalProtocolError("the sender already has an encoder: it has started sending")
    preset_encoder(sender, OpusEncoder(channels=channels, bitrate=bitrate))
    encode_audio_with(sender, encode_step, offload=_on_batch_worker if BATCH_WORKER else None)


def decode_on_batch_worker(receiver: RTCRtpReceiver) -> bool:
    """Decode ``receiver``'s audio on the loop's :class:`BatchWorker` instead of its own thread.

    aiortc decodes each received track on a thread of its own and returns every 20 ms frame to
    the loop with ``run_coroutine_threadsafe`` (a Task per frame); here the frames of all audio
    tracks that arrive in one loop turn are decoded as one batch on the shared worker and put into
    their tracks' queues directly (:func:`lkproto.asyncio._seam.decode_audio_with`, issue 18).
    Call it when the remote track is first reported; E2EE receivers keep aiortc's thread, where
    their decryption runs. Does nothing (returns False) unless :data:`BATCH_WORKER` is set.

    Returns:
        True if installed now, False if the receiver already decodes this way.

    Raises:
        ValueError: ``receiver`` is not an audio receiver.
        LkError: this aiortc does not have the internals relied on.
    """
    if not BATCH_WORKER:
        return False
    return decode_audio_with(receiver, _on_batch_worker)
