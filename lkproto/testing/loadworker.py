"""Many participants in one process, for load runs (``-m lkproto.testing.loadworker``).

Started by ``benchmarks/load.py`` and ``tests/faults/test_load.py`` through
:meth:`lkproto.testing.faults.FaultLab.spawn`. Configuration (one JSON object, the only argument):
``url``; ``sdk`` (``"lkproto"``, the default, or ``"livekit"`` for the official SDK: the same code
drives both, as in :mod:`lkproto.testing.faultworker`); ``participants`` = ``[[identity, token],
...]``; ``packet_interval_s`` (each participant broadcasts one reliable packet that often);
``attribute_interval_s`` (and changes an attribute that often); ``join_gap_s`` (pause between
starting two joins); ``room_size`` (participants in the room over all workers: ``joined`` is
printed once each local participant sees the others, or after 60 s); ``agent`` (optional: the
identity that publishes a ``tone_hz`` sine as a microphone track, if it is one of this worker's;
the listeners wait for its track before ``joined``); ``listeners`` (identities, among this
worker's, that subscribe to it; everyone else joins with ``auto_subscribe=False``, so the audio
goes to those alone).

Lines printed (JSON objects with ``ev`` and ``t``): ``joined`` (``join_s`` per identity, ``failed``
joins, ``roster``, ``listening`` = listeners with the agent's track), ``report``
(``participants``: per identity ``sent`` (accepted by ``publish_data``; a call that raised is
counted in ``publish_errors`` and its number reused), ``attributes`` (``attribute_failures``),
``events`` = ``[name, t]`` of its reconnects, ``behind_s`` = how far its send loop fell behind
its schedule at worst, ``recv`` = ``{sender: [distinct, duplicates]}``; ``latency_ms`` =
``{milliseconds: deliveries}`` from ``publish_data`` to ``data_received`` over this worker's
receivers, measured on the system-wide monotonic clock carried in each payload; ``loop_lag_ms`` =
the same histogram for this process's event-loop lag, sampled every 0.1 s; ``audio`` per listener,
counted between ``go`` and ``halt``: ``frames``, ``seconds`` of audio, ``gaps`` = arrival pauses
over 100 ms, ``longest_gap_s``, ``silent_frames`` after the first audible one, ``peak_hz`` of the
last second; ``cpu_s`` of this process, ``rss_kib``), ``error``. Commands on stdin:
``{"cmd": "go"}`` starts sending, ``{"cmd": "halt"}`` stops sending, ``{"cmd": "report"}``,
``{"cmd": "stop"}`` (disconnect everyone and exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from typing import Any, Final

__all__ = ["ToneMeter", "main", "publish_tone"]

_CONNECT_TIMEOUT_S: Final = 60.0
_DISCONNECT_TIMEOUT_S: Final = 10.0
_ROSTER_TIMEOUT_S: Final = 60.0
_TOPIC: Final = "lkload"
_LAG_SAMPLE_S: Final = 0.1
_SAMPLE_RATE: Final = 48_000
_FRAME_SAMPLES: Final = 480  # 10 ms
_TONE_AMPLITUDE: Final = 0.3  # of full scale
_AUDIO_GAP_S: Final = 0.1
_SILENT_RMS: Final = 0.01 * 32767


def _emit(ev: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Histogram:
    """Counts per whole millisecond (a few hundred keys, however many samples)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, seconds: float) -> None:
        key = max(int(seconds * 1000), 0)
        self.counts[key] = self.counts.get(key, 0) + 1


class ToneMeter:
    """What one listener hears of a tone while :attr:`measuring` is set.

    Counts decoded frames, audio seconds (``span_s``: first to last frame's arrival), arrival
    pauses over 100 ms (``gaps``), frames below 1 % of full scale after the first audible one
    (``silent_frames``) and the peak frequency of the last second;
    :mod:`lkproto.testing.faultworker` uses it too.
    """

    def __init__(self) -> None:
        self.measuring = False
        self.frames = 0
        self.samples = 0
        self.gaps = 0
        self.longest_gap_s = 0.0
        self.silent = 0
        self.audible = False
        self.last_at: float | None = None
        self.first_at: float | None = None
        self.recent: list[bytes] = []
        self.recent_samples = 0

    def on_frame(self, data: bytes, samples: int) -> None:
        """Count one decoded frame: ``data`` is mono 16-bit PCM at 48 kHz, ``samples`` long."""
        import numpy as np

        now = time.monotonic()
        if not self.measuring:
            self.last_at = None
            return
        if self.last_at is not None and now - self.last_at > _AUDIO_GAP_S:
            self.gaps += 1
            self.longest_gap_s = max(self.longest_gap_s, now - self.last_at)
        self.last_at = now
        if self.first_at is None:
            self.first_at = now
        self.frames += 1
        self.samples += samples
        pcm = np.frombuffer(data, dtype=np.int16).astype(np.float64)
        loud = bool(pcm.size) and float(np.sqrt(np.mean(pcm**2))) > _SILENT_RMS
        if loud:
            self.audible = True
        elif self.audible:
            self.silent += 1
        # The last second, for the tone's frequency at the report.
        self.recent.append(data)
        self.recent_samples += samples
        while self.recent and self.recent_samples - len(self.recent[0]) // 2 >= _SAMPLE_RATE:
            self.recent_samples -= len(self.recent.pop(0)) // 2

    def peak_hz(self) -> float | None:
        """The strongest frequency of the last second heard, ``None`` before any frame."""
        import numpy as np

        if not self.recent:
            return None
        pcm = np.frombuffer(b"".join(self.recent), dtype=np.int16).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
        return float(np.fft.rfftfreq(pcm.size, 1 / _SAMPLE_RATE)[int(np.argmax(spectrum))])

    async def listen(self, rtc: Any, track: Any) -> None:
        """Feed the meter from ``track`` (an ``rtc`` remote audio track) until cancelled."""
        stream = rtc.AudioStream(track, sample_rate=_SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                frame = event.frame
                self.on_frame(bytes(frame.data), int(frame.samples_per_channel))
        finally:
            await stream.aclose()

    def report(self) -> dict[str, Any]:
        """The counts as a JSON-ready dictionary."""
        return {
            "frames": self.frames,
            "seconds": self.samples / _SAMPLE_RATE,
            "span_s": 0.0 if self.first_at is None else (self.last_at or 0.0) - self.first_at,
            "gaps": self.gaps,
            "longest_gap_s": self.longest_gap_s,
            "silent_frames": self.silent,
            "peak_hz": self.peak_hz(),
        }


class _Participant:
    def __init__(
        self, sdk: str, identity: str, token: str, latency: _Histogram, *, subscribe: bool
    ) -> None:
        if sdk == "lkproto":
            from lkproto import rtc
        elif sdk == "livekit":
            from livekit import rtc  # type: ignore[no-redef]
        else:
            raise SystemExit(f"unknown sdk {sdk!r}")
        self.sdk = sdk
        self.rtc: Any = rtc
        self.identity = identity
        self.token = token
        self.subscribe = subscribe
        self.latency = latency
        self.room: Any = rtc.Room()
        self.sent = 0
        self.behind_s = 0.0
        self.attributes = 0
        self.attribute_errors: list[str] = []
        self.attribute_failures = 0
        self.publish_errors = 0
        self.publish_error_texts: list[str] = []
        self.seen: dict[str, set[int]] = {}
        self.duplicates: dict[str, int] = {}
        self.room.on("data_received", self.on_data)
        self.events: list[list[Any]] = []
        for name in ("reconnecting", "reconnected", "disconnected"):
            self.room.on(name, lambda *_, n=name: self.events.append([n, time.monotonic()]))
        self.listener: ToneMeter | None = None
        self.audio_tasks: list[asyncio.Task[None]] = []
        self.tone: asyncio.Task[None] | None = None
        self.tone_sources: list[Any] = []
        if subscribe:
            self.listener = ToneMeter()
            self.room.on("track_subscribed", self.on_track)

    def on_data(self, packet: Any) -> None:
        if packet.topic != _TOPIC or packet.participant is None:
            return
        sender = packet.participant.identity
        seq_b, sent_b, _ = bytes(packet.data).split(b"|", 2)
        seq = int(seq_b)
        # CLOCK_MONOTONIC is one clock for every process of the machine (namespaces included).
        self.latency.add(time.monotonic() - float(sent_b))
        seen = self.seen.setdefault(sender, set())
        if seq in seen:
            self.duplicates[sender] = self.duplicates.get(sender, 0) + 1
        seen.add(seq)

    def on_track(self, track: Any, *_: Any) -> None:
        if self.listener is None or track.kind != self.rtc.TrackKind.KIND_AUDIO:
            return
        self.audio_tasks.append(asyncio.ensure_future(self.listener.listen(self.rtc, track)))

    def has_audio(self) -> bool:
        return any(
            pub.track is not None
            for p in self.room.remote_participants.values()
            for pub in p.track_publications.values()
        )

    async def join(self, url: str) -> float:
        rtc = self.rtc
        if self.sdk == "lkproto":
            # aioice skips 127.0.0.1 unless told (PROTOCOL-MAP §17 "ICE on loopback").
            config = rtc.RtcConfiguration(ice_addresses=["127.0.0.1"])
        else:
            # libwebrtc never pairs loopback; it uses the lab's veth address.
            config = rtc.RtcConfiguration(ice_servers=[])
        options = rtc.RoomOptions(auto_subscribe=self.subscribe, rtc_config=config)
        began = time.monotonic()
        await asyncio.wait_for(self.room.connect(url, self.token, options), _CONNECT_TIMEOUT_S)
        return time.monotonic() - began

    async def send_loop(self, packet_s: float, attribute_s: float) -> None:
        lp = self.room.local_participant
        began = time.monotonic()
        next_attribute = began + attribute_s
        while True:
            now = time.monotonic()
            self.behind_s = max(self.behind_s, now - (began + self.sent * packet_s))
            payload = f"{self.sent}|{now:.6f}|{self.identity}".encode()
            try:
                await lp.publish_data(payload, reliable=True, topic=_TOPIC)
            except Exception as exc:  # the caller heard of it: counted, and the number is reused
                self.publish_errors += 1
                if len(self.publish_error_texts) < 3:
                    self.publish_error_texts.append(f"{type(exc).__name__}: {exc}")
            else:
                self.sent += 1
            now = time.monotonic()
            if now >= next_attribute:
                next_attribute += attribute_s
                try:
                    await lp.set_attributes({"tick": str(self.attributes + 1)})
                except Exception as exc:  # counted, and the packets go on
                    self.attribute_failures += 1
                    if len(self.attribute_errors) < 3:
                        self.attribute_errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    self.attributes += 1
            await asyncio.sleep(max(began + self.sent * packet_s - time.monotonic(), 0.0))

    def report(self) -> dict[str, Any]:
        return (
            {
                "sent": self.sent,
                "behind_s": self.behind_s,
                "attributes": self.attributes,
                "attribute_errors": self.attribute_errors,
                "attribute_failures": self.attribute_failures,
                "publish_errors": self.publish_errors,
                "publish_error_texts": self.publish_error_texts,
                "events": self.events,
                "state": getattr(self.room.connection_state, "name", None),
                "recv": {s: [len(v), self.duplicates.get(s, 0)] for s, v in self.seen.items()},
            }
            | ({"audio": self.listener.report()} if self.listener is not None else {})
            | ({"tone": tone_source_report(self.tone_sources[0])} if self.tone_sources else {})
        )


async def publish_tone(
    rtc: Any, room: Any, hz: float, sources: list[Any] | None = None
) -> asyncio.Task[None]:
    """Publish a sine of ``hz`` as ``room``'s microphone track (``rtc``: lkproto's or the
    official module); return the task that feeds it, to be cancelled by the caller. The
    ``AudioSource`` is appended to ``sources`` if given (for :func:`tone_source_report`)."""
    import numpy as np

    source = rtc.AudioSource(_SAMPLE_RATE, 1)
    if sources is not None:
        sources.append(source)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)
    step = np.arange(_FRAME_SAMPLES)

    async def feed() -> None:
        n = 0
        while True:
            t = (step + n) / _SAMPLE_RATE
            pcm = (_TONE_AMPLITUDE * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
            n += _FRAME_SAMPLES
            # capture_frame waits while its queue is full: that paces the loop.
            await source.capture_frame(
                rtc.AudioFrame(pcm.tobytes(), _SAMPLE_RATE, 1, _FRAME_SAMPLES)
            )

    return asyncio.ensure_future(feed())


def tone_source_report(source: Any) -> dict[str, Any]:
    """What the tone's sending side lost (lkproto's ``AudioSource`` extras; None for the
    official SDK, which has no such counters): 20 ms frames of silence sent because the feed
    had queued too little, and frames dropped because sending fell behind."""
    return {
        "silence_frames": getattr(source, "silence_frames", None),
        "dropped_frames": getattr(source, "dropped_frames", None),
    }


async def _sample_lag(histogram: _Histogram) -> None:
    """How late the event loop wakes a 0.1 s sleep: the worker's own congestion."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + _LAG_SAMPLE_S
        await asyncio.sleep(_LAG_SAMPLE_S)
        histogram.add(loop.time() - due)


async def _run(config: dict[str, Any]) -> None:
    url = config["url"]
    sdk = str(config.get("sdk", "lkproto"))
    gap = float(config.get("join_gap_s", 0.1))
    agent = config.get("agent")
    listeners = set(config.get("listeners", ()))
    latency = _Histogram()
    lag = _Histogram()
    lagger = asyncio.create_task(_sample_lag(lag))
    crowd = [
        _Participant(sdk, identity, token, latency, subscribe=identity in listeners)
        for identity, token in config["participants"]
    ]
    join_s: dict[str, float] = {}
    failed: dict[str, str] = {}

    async def join(p: _Participant, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            join_s[p.identity] = await p.join(url)
        except Exception as exc:  # a failed join is a measured outcome
            failed[p.identity] = f"{type(exc).__name__}: {exc}"

    await asyncio.gather(*(join(p, i * gap) for i, p in enumerate(crowd)))
    for p in crowd:
        if p.identity == agent and p.identity in join_s:
            try:
                p.tone = await publish_tone(
                    p.rtc, p.room, float(config.get("tone_hz", 440.0)), p.tone_sources
                )
            except Exception as exc:  # reported; the data load goes on without audio
                _emit("error", error=f"agent tone: {type(exc).__name__}: {exc}")
    # Wait (bounded) until every participant here sees the whole room, so no packet goes out
    # before its recipients are in it; the harness starts sending only after every worker did.
    total = int(config.get("room_size", len(crowd)))
    deadline = time.monotonic() + _ROSTER_TIMEOUT_S
    present = [p for p in crowd if p.identity in join_s]
    while time.monotonic() < deadline and (  # noqa: ASYNC110 - two SDK objects, no event
        any(len(p.room.remote_participants) < total - 1 for p in present)
        or (agent is not None and any(p.subscribe and not p.has_audio() for p in present))
    ):
        await asyncio.sleep(0.1)
    roster = {p.identity: len(p.room.remote_participants) for p in present}
    listening = [p.identity for p in present if p.subscribe and p.has_audio()]
    _emit("joined", join_s=join_s, failed=failed, roster=roster, listening=listening)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    senders: list[asyncio.Task[None]] = []
    packet_s = float(config.get("packet_interval_s", 1.0))
    attribute_s = float(config.get("attribute_interval_s", 10.0))
    while True:
        line = await reader.readline()
        command = json.loads(line) if line.strip() else {"cmd": "stop"}
        match command.get("cmd"):
            case "go":
                for p in crowd:
                    if p.listener is not None:
                        p.listener.measuring = True
                senders = [
                    asyncio.create_task(p.send_loop(packet_s, attribute_s))
                    for p in crowd
                    if p.identity in join_s
                ]
            case "halt":
                for p in crowd:
                    if p.listener is not None:
                        p.listener.measuring = False
                for task in senders:
                    task.cancel()
                await asyncio.gather(*senders, return_exceptions=True)
                errors = [
                    repr(t.exception()) for t in senders if not t.cancelled() and t.exception()
                ]
                if errors:
                    _emit("error", error=errors[:5])
                senders = []
            case "report":
                _emit(
                    "report",
                    participants={p.identity: p.report() for p in crowd},
                    latency_ms=latency.counts,
                    loop_lag_ms=lag.counts,
                    cpu_s=_cpu_s(),
                    rss_kib=_rss_kib(),
                )
            case _:
                break
    for task in senders:
        task.cancel()
    lagger.cancel()
    for p in crowd:
        for task in [*p.audio_tasks, *([p.tone] if p.tone is not None else [])]:
            task.cancel()

    async def leave(p: _Participant) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.room.disconnect(), _DISCONNECT_TIMEOUT_S)

    await asyncio.gather(*(leave(p) for p in crowd))


def main(argv: list[str] | None = None) -> int:
    """Run the crowd described by the JSON configuration in ``argv[0]``."""
    args = sys.argv[1:] if argv is None else argv
    level = json.loads(args[0]).get("log_level")
    if level:
        logging.basicConfig(level=str(level).upper(), stream=sys.stderr)
    try:
        asyncio.run(_run(json.loads(args[0])))
    except Exception as exc:
        _emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
