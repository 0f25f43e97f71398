"""lkproto <-> livekit-client in headless Chromium: audio and video both ways (issue 7).

The browser side is npm ``livekit-client`` driven through ``tests/interop/browser/harness.py``
(its generic ``eval`` op runs the JS bodies below); the lkproto side is ``lkproto.rtc`` with ICE
pinned to 127.0.0.1.

- lkproto → browser: a 440 Hz tone and a 640x480 solid-colour VP8 video from lkproto are
  auto-subscribed by livekit-client; the receivers' ``getStats()`` (``inbound-rtp``) must show
  samples and frames flowing at the published size, and the browser itself must hear 440 Hz
  (WebAudio ``AnalyserNode``) and see the colour (the ``<video>`` drawn into a canvas).
- browser → lkproto: a WebAudio 1 kHz oscillator and a 320x240 ``canvas.captureStream(30)``
  published by livekit-client (VP8, no simulcast/DTX/RED) arrive as ``track_subscribed``;
  ``AudioStream`` must peak at 1 kHz and ``VideoStream`` frames must be 320x240 of the colour.
- mute, unmute and unpublish of lkproto's tracks reach livekit-client as events.

Chromium facts these tests rely on (Chromium 156, livekit-client 2.23.0): a remote audio track is
only played out (``totalSamplesReceived`` grows) while it is attached to an ``<audio>`` element,
whereas remote video is decoded without any element; a page ``AudioContext`` runs without a user
gesture in this headless set-up. Media comes from a canvas and WebAudio, never getUserMedia (a
media permission makes Chromium leave loopback, see the harness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from lkproto import rtc
from lkproto.rtc.audio_frame import AudioFrame
from lkproto.rtc.audio_source import AudioSource
from lkproto.rtc.audio_stream import AudioStream
from lkproto.rtc.video_frame import VideoBufferType, VideoFrame
from lkproto.rtc.video_source import VideoSource
from lkproto.rtc.video_stream import VideoStream
from lkproto.testing import scaled
from tests.interop._helpers import our_options
from tests.interop.browser.harness import BrowserPeer, started_browser

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

_log = logging.getLogger("tests.browser.media")

ROSTER_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 20.0
SUBSCRIBE_TIMEOUT_S = 20.0
MEDIA_TIMEOUT_S = 20.0
EVENT_TIMEOUT_S = 10.0

SAMPLE_RATE = 48_000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms
AMPLITUDE = 0.3  # of full scale

LK_TONE_HZ = 440.0
LK_W, LK_H = 640, 480
LK_COLOUR = (200, 40, 120)

WEB_TONE_HZ = 1000.0
WEB_W, WEB_H = 320, 240
# Chromium converts canvas captures to I420 with BT.709 full-range coefficients, while every
# receiver (Chromium's own <video>, the official Python SDK, lkproto) decodes VP8 as BT.601
# limited range: rgb(20, 200, 60) comes back as about (24, 246, 58) everywhere. This colour
# shifts by at most 8 per channel that way; with U and V swapped it would be off by ~140.
WEB_COLOUR = (70, 130, 200)

FREQ_TOLERANCE_HZ = 5.0
COLOUR_TOLERANCE = 40


# -- JS run in the page (bodies of ``async (lk, room, LK, args) => {...}``) ---------------------

# args[0]: {freq, width, height, colour: [r, g, b]}. Publishes a WebAudio oscillator and a
# canvas stream that is redrawn at ~30 fps so that frames keep flowing.
PUBLISH_JS = r"""
const o = args[0];
const ctx = new AudioContext({ sampleRate: 48000 });
if (ctx.state !== 'running') await ctx.resume();
const osc = ctx.createOscillator();
osc.type = 'sine';
osc.frequency.value = o.freq;
const gain = ctx.createGain();
gain.gain.value = 0.3;
const dest = ctx.createMediaStreamDestination();
osc.connect(gain).connect(dest);
osc.start();
const canvas = document.createElement('canvas');
canvas.width = o.width;
canvas.height = o.height;
document.body.appendChild(canvas);
const g = canvas.getContext('2d');
const draw = () => {
  g.fillStyle = `rgb(${o.colour[0]}, ${o.colour[1]}, ${o.colour[2]})`;
  g.fillRect(0, 0, o.width, o.height);
};
draw();
const timer = setInterval(draw, 33);
const video = canvas.captureStream(30);
lk.state.published = { ctx, osc, canvas, timer };
const lp = room.localParticipant;
const audioPub = await lp.publishTrack(dest.stream.getAudioTracks()[0], {
  name: 'oscillator',
  source: LK.Track.Source.Microphone,
  dtx: false,
  red: false,
});
const videoPub = await lp.publishTrack(video.getVideoTracks()[0], {
  name: 'canvas',
  source: LK.Track.Source.Camera,
  videoCodec: 'vp8',
  simulcast: false,
  backupCodec: false,
  degradationPreference: 'maintain-resolution',
});
return {
  audio_context: ctx.state,
  audio_sid: audioPub.trackSid,
  video_sid: videoPub.trackSid,
  video_mime: videoPub.mimeType ?? null,
};
"""

# args[0]: identity. Attaches each subscribed track of that participant to an element (once):
# <audio> so that Chromium plays it out, a muted <video> so that it is rendered.
ATTACH_JS = r"""
const p = room.remoteParticipants.get(args[0]);
if (!p) throw new Error(`no remote participant ${args[0]}`);
const out = [];
for (const pub of p.trackPublications.values()) {
  const t = pub.track;
  if (!t) continue;
  if (t.attachedElements.length === 0) {
    const el = t.attach();
    el.muted = t.kind === 'video';
    document.body.appendChild(el);
  }
  const el = t.attachedElements[0];
  try { await el.play(); } catch (e) { /* autoplay refusal shows in the stats */ }
  out.push({ sid: pub.trackSid, kind: t.kind, paused: el.paused });
}
return out;
"""

# args[0]: identity. The inbound-rtp stats of each subscribed track of that participant (from
# RemoteTrack.getRTCStatsReport(), i.e. its RTCRtpReceiver) and the <video> size.
STATS_JS = r"""
const p = room.remoteParticipants.get(args[0]);
const out = {};
if (!p) return out;
for (const pub of p.trackPublications.values()) {
  const t = pub.track;
  if (!t) continue;
  const report = await t.getRTCStatsReport();
  let inbound = null;
  report?.forEach((s) => {
    if (s.type === 'inbound-rtp') inbound = { ...s };
  });
  out[pub.trackSid] = { kind: t.kind, muted: pub.isMuted, inbound };
}
return out;
"""

# args[0]: track sid. The centre pixel of that track's <video>, drawn into a canvas.
PIXEL_JS = r"""
let track = null;
for (const p of room.remoteParticipants.values()) {
  track = p.trackPublications.get(args[0])?.track ?? track;
}
const el = track?.attachedElements[0];
if (!el || el.readyState < 2 || !el.videoWidth) return null;
const c = document.createElement('canvas');
c.width = el.videoWidth;
c.height = el.videoHeight;
const g = c.getContext('2d');
g.drawImage(el, 0, 0);
const d = g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data;
return { width: c.width, height: c.height, rgb: [d[0], d[1], d[2]] };
"""

# args[0]: track sid. Peak of a WebAudio AnalyserNode fed by that remote audio track for 1 s.
SPECTRUM_JS = r"""
let track = null;
for (const p of room.remoteParticipants.values()) {
  track = p.trackPublications.get(args[0])?.track ?? track;
}
if (!track) throw new Error(`no subscribed track ${args[0]}`);
const ctx = new AudioContext();
if (ctx.state !== 'running') await ctx.resume();
const src = ctx.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
const an = ctx.createAnalyser();
an.fftSize = 32768;
an.smoothingTimeConstant = 0;
src.connect(an);
await new Promise((r) => setTimeout(r, 1000));
const db = new Float32Array(an.frequencyBinCount);
an.getFloatFrequencyData(db);
let peak = 0;
for (let i = 1; i < db.length; i += 1) if (db[i] > db[peak]) peak = i;
const result = { peak_hz: (peak * ctx.sampleRate) / an.fftSize, peak_db: db[peak] };
src.disconnect();
await ctx.close();
return result;
"""


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    async with started_browser() as peer:  # BrowserSetupError names the fix if not set up
        yield peer


async def _until(predicate: Callable[[], object], what: str, limit_s: float) -> None:
    try:
        async with asyncio.timeout(scaled(limit_s)):
            while not predicate():  # noqa: ASYNC110 (polling state another task fills)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {scaled(limit_s):g} s waiting for {what}") from None


@contextlib.asynccontextmanager
async def joined(
    server: LocalServer, browser: BrowserPeer, room: rtc.Room
) -> AsyncIterator[rtc.Room]:
    """``room`` (lkproto, identity ``lk``) and the browser (``web``) in a fresh room, each
    seeing the other; ``room`` is disconnected on exit."""
    name = f"lk-web-media-{uuid.uuid4().hex[:10]}"
    try:
        await asyncio.wait_for(
            room.connect(server.url, server.create_token("lk", name), our_options()),
            scaled(CONNECT_TIMEOUT_S),
        )
        await browser.connect(server.url, server.create_token("web", name))
        await _until(lambda: "web" in room.remote_participants, "lkproto sees web", 15.0)
        await browser.wait_for_remote("lk", ROSTER_TIMEOUT_S)
        yield room
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))


@dataclass
class Published:
    """An lkproto track being fed by a background task."""

    track: rtc.LocalAudioTrack | rtc.LocalVideoTrack
    publication: rtc.LocalTrackPublication
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def publish_tone(room: rtc.Room, freq: float) -> Published:
    """Publish a ``freq`` Hz sine (48 kHz mono), fed in real time in 10 ms frames."""
    source = AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    publication = await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )

    async def feed() -> None:
        n = 0
        while True:
            t = (np.arange(FRAME_SAMPLES) + n) / SAMPLE_RATE
            pcm = (AMPLITUDE * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
            n += FRAME_SAMPLES
            # capture_frame waits while a second of audio is queued: that paces the loop.
            await source.capture_frame(AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, FRAME_SAMPLES))

    return Published(track, publication, asyncio.ensure_future(feed()))


async def publish_colour(
    room: rtc.Room, colour: tuple[int, int, int], width: int, height: int
) -> Published:
    """Publish a solid-colour VP8 video, fed at ~30 fps."""
    source = VideoSource(width, height)
    track = rtc.LocalVideoTrack.create_video_track("colour", source)
    publication = await room.local_participant.publish_track(
        track,
        rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA, video_codec=rtc.VideoCodec.VP8
        ),
    )
    rgba = bytes((*colour, 255)) * (width * height)

    async def feed() -> None:
        while True:
            source.capture_frame(VideoFrame(width, height, VideoBufferType.RGBA, rgba))
            await asyncio.sleep(1 / 30)

    return Published(track, publication, asyncio.ensure_future(feed()))


async def inbound_stats(browser: BrowserPeer, identity: str) -> dict[str, dict[str, Any]]:
    """``{track_sid: {kind, muted, inbound}}`` for ``identity``'s tracks in the browser."""
    stats: dict[str, dict[str, Any]] = await browser.eval(STATS_JS, identity)
    return stats


async def stats_when(
    browser: BrowserPeer,
    sid: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    limit_s: float = MEDIA_TIMEOUT_S,
) -> dict[str, Any]:
    """Poll the browser's inbound-rtp stats of track ``sid`` until ``predicate`` holds."""
    last: dict[str, Any] = {}
    try:
        async with asyncio.timeout(scaled(limit_s)):
            while True:
                entry = (await inbound_stats(browser, "lk")).get(sid) or {}
                last = entry.get("inbound") or {}
                if last and predicate(last):
                    return last
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"browser stats of {sid}: no {what}; last: {last}") from None


def _sid_is(sid: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("track_sid") == sid


def _more_packets_than(floor: int) -> Callable[[dict[str, Any]], bool]:
    return lambda stats: stats.get("packetsReceived", 0) > floor


def _pick(stats: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "packetsReceived",
        "totalSamplesReceived",
        "audioLevel",
        "totalAudioEnergy",
        "framesDecoded",
        "frameWidth",
        "frameHeight",
    )
    return {k: stats[k] for k in keys if k in stats}


def near(rgb: tuple[int, ...] | list[int], colour: tuple[int, int, int]) -> bool:
    return all(abs(int(a) - b) <= COLOUR_TOLERANCE for a, b in zip(rgb, colour, strict=True))


async def peak_of(track: rtc.RemoteTrack, seconds: float = 1.0) -> tuple[float, dict[str, Any]]:
    """The FFT peak (Hz) of ``seconds`` of ``track``'s audio from the first non-silent frame,
    and facts about the frames."""
    stream = AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    chunks: list[np.ndarray] = []
    facts: dict[str, Any] = {"frames": 0, "silent_frames": 0, "formats": set()}
    need = int(seconds * SAMPLE_RATE)

    async def collect() -> None:
        got = 0
        async for event in stream:
            frame = event.frame
            facts["frames"] += 1
            facts["formats"].add((frame.sample_rate, frame.num_channels))
            pcm = np.frombuffer(bytes(frame.data), dtype=np.int16).astype(np.float64)
            if not chunks and (pcm.size == 0 or np.max(np.abs(pcm)) < 32767 * 0.01):
                facts["silent_frames"] += 1
                continue
            chunks.append(pcm)
            got += pcm.size
            if got >= need:
                return

    try:
        await asyncio.wait_for(collect(), scaled(MEDIA_TIMEOUT_S + seconds))
    finally:
        await stream.aclose()
    pcm = np.concatenate(chunks)[:need] / 32767
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    peak = float(np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
    facts["rms"] = float(np.sqrt(np.mean(pcm**2)))
    return peak, facts


async def centre_pixels(track: rtc.RemoteTrack, frames: int = 10) -> list[tuple[int, int, Any]]:
    """``(width, height, centre RGB)`` of ``frames`` consecutive RGBA frames of ``track``."""
    stream = VideoStream(track, format=VideoBufferType.RGBA)
    seen: list[tuple[int, int, Any]] = []

    async def collect() -> None:
        async for event in stream:
            frame = event.frame
            data = bytes(frame.data)
            offset = ((frame.height // 2) * frame.width + frame.width // 2) * 4
            seen.append((frame.width, frame.height, tuple(data[offset : offset + 3])))
            if len(seen) >= frames:
                return

    try:
        await asyncio.wait_for(collect(), scaled(MEDIA_TIMEOUT_S))
    finally:
        await stream.aclose()
    return seen


# -- tests --------------------------------------------------------------------------------------


async def test_browser_receives_lkproto_audio_and_video(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    tone: Published | None = None
    video: Published | None = None
    async with joined(livekit_server, browser, rtc.Room()) as room:
        try:
            tone = await publish_tone(room, LK_TONE_HZ)
            video = await publish_colour(room, LK_COLOUR, LK_W, LK_H)
            audio_sid, video_sid = tone.publication.sid, video.publication.sid
            subscribed = {
                sid: await browser.wait_event("TrackSubscribed", _sid_is(sid), SUBSCRIBE_TIMEOUT_S)
                for sid in (audio_sid, video_sid)
            }
            assert subscribed[audio_sid]["identity"] == subscribed[video_sid]["identity"] == "lk"
            assert subscribed[audio_sid]["kind"] == "audio", subscribed
            assert subscribed[video_sid]["kind"] == "video", subscribed
            assert subscribed[video_sid]["mime_type"].lower() == "video/vp8", subscribed
            attached = await browser.eval(ATTACH_JS, "lk")
            assert {a["kind"] for a in attached} == {"audio", "video"}, attached

            # Audio: played out (samples grow) and not silent.
            a1 = await stats_when(
                browser, audio_sid, lambda s: s.get("totalSamplesReceived", 0) > 0, "samples"
            )
            a2 = await stats_when(
                browser,
                audio_sid,
                lambda s: s["totalSamplesReceived"] > a1["totalSamplesReceived"] + SAMPLE_RATE,
                "growing samples",
            )
            assert a2["totalAudioEnergy"] > 0, a2
            assert a2["audioLevel"] > 0, a2
            assert a2["packetsReceived"] > a1["packetsReceived"], (a1, a2)

            # Video: decoded at the published size, frames keep coming.
            v1 = await stats_when(
                browser, video_sid, lambda s: s.get("framesDecoded", 0) > 0, "decoded frames"
            )
            v2 = await stats_when(
                browser,
                video_sid,
                lambda s: s["framesDecoded"] >= v1["framesDecoded"] + 15,
                "growing decoded frames",
            )
            assert (v2["frameWidth"], v2["frameHeight"]) == (LK_W, LK_H), v2
            assert v2["codecId"], v2

            # What the browser renders and hears is what lkproto sent.
            pixel: dict[str, Any] | None = None
            try:
                async with asyncio.timeout(scaled(MEDIA_TIMEOUT_S)):
                    while pixel is None or not near(pixel["rgb"], LK_COLOUR):
                        await asyncio.sleep(0.2)
                        pixel = await browser.eval(PIXEL_JS, video_sid)
            except TimeoutError:
                raise AssertionError(f"<video> centre pixel {pixel}, sent {LK_COLOUR}") from None
            assert (pixel["width"], pixel["height"]) == (LK_W, LK_H), pixel
            spectrum = await browser.eval(SPECTRUM_JS, audio_sid)
            _log.info("browser inbound audio: %s -> %s", _pick(a1), _pick(a2))
            _log.info("browser inbound video: %s -> %s", _pick(v1), _pick(v2))
            _log.info("browser <video> centre pixel %s, analyser peak %s", pixel, spectrum)
            assert abs(spectrum["peak_hz"] - LK_TONE_HZ) <= FREQ_TOLERANCE_HZ, spectrum
        finally:
            for feeder in (tone, video):
                if feeder is not None:
                    await feeder.stop()


async def test_lkproto_receives_browser_audio_and_video(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    room = rtc.Room()
    subscribed: list[tuple[rtc.RemoteTrack, rtc.RemoteTrackPublication, rtc.RemoteParticipant]] = []
    room.on("track_subscribed", lambda t, pub, p: subscribed.append((t, pub, p)))
    async with joined(livekit_server, browser, room):
        published = await browser.eval(
            PUBLISH_JS,
            {"freq": WEB_TONE_HZ, "width": WEB_W, "height": WEB_H, "colour": list(WEB_COLOUR)},
        )
        assert published["audio_context"] == "running", published
        await _until(
            lambda: (
                {s[1].sid for s in subscribed} >= {published["audio_sid"], published["video_sid"]}
            ),
            "track_subscribed for both browser tracks",
            SUBSCRIBE_TIMEOUT_S,
        )
        by_sid = {pub.sid: (track, pub, p) for track, pub, p in subscribed}
        audio, audio_pub, who = by_sid[published["audio_sid"]]
        video, video_pub, _ = by_sid[published["video_sid"]]
        assert who.identity == "web"
        assert isinstance(audio, rtc.RemoteAudioTrack), audio
        assert isinstance(video, rtc.RemoteVideoTrack), video
        assert audio.kind == rtc.TrackKind.KIND_AUDIO
        assert video.kind == rtc.TrackKind.KIND_VIDEO
        assert audio_pub.source == rtc.TrackSource.SOURCE_MICROPHONE
        assert video_pub.source == rtc.TrackSource.SOURCE_CAMERA
        assert video_pub.mime_type.lower() == "video/vp8"

        (peak, facts), pixels = await asyncio.gather(peak_of(audio), centre_pixels(video))
        _log.info("lkproto heard %.2f Hz (%s); saw %s", peak, facts, pixels[:3])
        assert abs(peak - WEB_TONE_HZ) <= FREQ_TOLERANCE_HZ, (peak, facts)
        assert facts["formats"] == {(SAMPLE_RATE, 1)}, facts
        assert facts["rms"] > 0.05, facts
        assert {(w, h) for w, h, _ in pixels} == {(WEB_W, WEB_H)}, pixels
        assert all(near(rgb, WEB_COLOUR) for _, _, rgb in pixels), pixels


async def test_mute_unmute_and_unpublish_reach_the_browser(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    tone: Published | None = None
    video: Published | None = None
    async with joined(livekit_server, browser, rtc.Room()) as room:
        try:
            tone = await publish_tone(room, LK_TONE_HZ)
            video = await publish_colour(room, LK_COLOUR, LK_W, LK_H)
            for published in (tone, video):
                sid = published.publication.sid
                await browser.wait_event("TrackSubscribed", _sid_is(sid), SUBSCRIBE_TIMEOUT_S)
            await browser.eval(ATTACH_JS, "lk")

            for published, kind in ((tone, "audio"), (video, "video")):
                sid = published.publication.sid
                mark = browser.last_seq
                published.track.mute()
                ev = await browser.wait_event(
                    "TrackMuted", _sid_is(sid), EVENT_TIMEOUT_S, since=mark
                )
                assert (ev["identity"], ev["kind"], ev["muted"]) == ("lk", kind, True), ev
                stats = await inbound_stats(browser, "lk")
                assert stats[sid]["muted"] is True, stats

                mark = browser.last_seq
                published.track.unmute()
                ev = await browser.wait_event(
                    "TrackUnmuted",
                    _sid_is(sid),
                    EVENT_TIMEOUT_S,
                    since=mark,
                )
                assert (ev["identity"], ev["kind"], ev["muted"]) == ("lk", kind, False), ev
                # Media flows again after the unmute.
                before = (await inbound_stats(browser, "lk"))[sid]["inbound"] or {}
                await stats_when(
                    browser,
                    sid,
                    _more_packets_than(before.get("packetsReceived", 0) + 10),
                    "packets after unmute",
                )

            for published, kind in ((tone, "audio"), (video, "video")):
                sid = published.publication.sid
                mark = browser.last_seq
                await room.local_participant.unpublish_track(sid)
                ev = await browser.wait_event(
                    "TrackUnpublished",
                    _sid_is(sid),
                    EVENT_TIMEOUT_S,
                    since=mark,
                )
                assert (ev["identity"], ev["kind"]) == ("lk", kind), ev
                assert browser.find_events("TrackUnsubscribed", _sid_is(sid), since=mark), (
                    browser.events[-10:]
                )
                assert sid not in await inbound_stats(browser, "lk")
        finally:
            for feeder in (tone, video):
                if feeder is not None:
                    await feeder.stop()
