"""lkproto agent <-> livekit-client frontend in headless Chromium: the agent conventions (issue 8).

The browser (npm ``livekit-client`` 2.23.0, identity ``web``, driven through
``tests/interop/browser/harness.py`` and its generic ``eval`` op) plays the frontend; an
``lkproto`` room with a token of kind ``agent`` plays the agent (PROTOCOL-MAP §8):

- **states**: :class:`~lkproto.agents.AgentPresence` walks ``lk.agent.state`` through
  initializing → listening → thinking → speaking → listening; livekit-client reports each value in
  order as ``ParticipantAttributesChanged``, and sees the participant as kind ``AGENT``
  (``isAgent``);
- **transcripts**: :class:`~lkproto.agents.TranscriptionPublisher` sends the user's transcript on
  the user's behalf (interim, interim, final: one ``lk.segment_id``) and its own reply in streaming
  mode (final flag in the trailer); the page merges ``lk.transcription`` streams exactly as
  components-js ``setupTextStream`` does (``MERGE_JS``) and must end with two final segments: the
  user's (identity ``web``, the final text, the server's ``generated`` flag on every header) and
  the agent's (the whole reply);
- **chat**: ``sendText(..., {topic: 'lk.chat'})`` from the browser reaches
  :func:`~lkproto.agents.on_chat` with the browser's identity; :func:`~lkproto.agents.send_chat`
  reaches the page's ``lk.chat`` handler;
- **pre-connect buffer**: the page publishes a WebAudio oscillator as its microphone with
  livekit-client's pre-connect buffer (a ``MediaRecorder``, WebM/Opus) before any agent is in the
  room; the lkproto agent joins afterwards and :func:`~lkproto.agents.on_preconnect_audio` must
  hand over the decoded audio: the advertised rate and channel count, more than a second of it,
  and the oscillator's frequency.

livekit-client facts these tests rely on (``dist/livekit-client.esm.mjs`` 2.23.0):

- trailer attributes are merged into the *same* ``info`` object the reader exposes
  (``handleStreamTrailer``: ``info.attributes = {...info.attributes, ...trailer.attributes}``), so
  ``reader.info.attributes`` read after the last chunk carries ``lk.transcription_final = "true"``
  of a streamed reply — which is what components-js relies on too (it keeps ``reader.info``);
- the text header's ``generated`` flag is not exposed on ``TextStreamInfo``: the page reads it
  from the engine's ``dataPacketReceived`` event (the decoded ``DataPacket``);
- ``setMicrophoneEnabled(true, _, {preConnectBuffer: true})`` is ``getUserMedia`` +
  ``track.startPreConnectBuffer()`` + ``publishTrack``; the page does the last two itself on a
  ``LocalAudioTrack`` built from a WebAudio track (getUserMedia needs a media permission, which
  makes Chromium leave loopback, see the harness). ``publishTrack`` then adds
  ``TF_PRECONNECT_BUFFER`` to the publication, waits (at most 10 s, not configurable) for the
  first participant of kind AGENT to become active, and streams the recording to it; recording
  stops when some participant subscribes to the track. Measured (Chromium 156): the WebAudio
  track reports 48 kHz and 2 channels, so the buffer arrives as ``audio/webm;codecs=opus`` with
  ``sampleRate=48000``, ``channels=2``, ~16 kB/s, and lkproto decodes it to stereo 48 kHz frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from lkproto import agents, rtc
from lkproto.testing import scaled
from lkproto.wire import pb
from tests.interop._helpers import make_token, our_options
from tests.interop.browser.harness import BrowserPeer, check_browser_setup

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from lkproto.testing import LocalServer

pytestmark = pytest.mark.interop

_log = logging.getLogger("tests.browser.agents")

CONNECT_TIMEOUT_S = 20.0
# Participant updates about participants that publish nothing are batched by the server (3 s).
ROSTER_TIMEOUT_S = 15.0
STATE_TIMEOUT_S = 15.0
STREAM_TIMEOUT_S = 20.0
PRECONNECT_TIMEOUT_S = 30.0

AGENT = "agent"
WEB = "web"
AGENT_TOKEN: dict[str, Any] = {"kind": "agent", "can_update_own_metadata": True}
PARTICIPANT_KIND_AGENT = 4  # livekit.ParticipantInfo.Kind.AGENT
TF_PRECONNECT_BUFFER = 6  # livekit.AudioTrackFeature

STATES = ("initializing", "listening", "thinking", "speaking", "listening")

TONE_HZ = 1000.0
FREQ_TOLERANCE_HZ = 10.0
# Audio the page records before the agent joins (livekit-client gives the agent 10 s).
BUFFERED_S = 2.0


# -- JS run in the page (bodies of ``async (lk, room, LK, args) => {...}``) ---------------------

# The remote participant args[0] as livekit-client sees it.
PARTICIPANT_JS = r"""
const p = room.remoteParticipants.get(args[0]);
if (!p) return null;
return {
  identity: p.identity,
  kind: p.kind,
  kind_agent: LK.ParticipantKind.AGENT,
  is_agent: p.isAgent,
  attributes: { ...p.attributes },
};
"""

# components-js setupTextStream (packages/core/src/components/textStream.ts), minus rxjs: on every
# chunk, the stream's accumulated text replaces the entry with the same stream id or, for a
# transcription (a stream with lk.segment_id), the entry with the same segment id; the entry keeps
# its first participantInfo and takes the latest reader.info. lk.state.transcript is that list,
# lk.state.transcriptUpdates every emitted (segment id, identity, text, final) in order and
# lk.state.streamHeaders each lk.transcription text header as decoded by the engine (with the
# server's `generated` flag, which TextStreamInfo does not expose).
MERGE_JS = r"""
const SEGMENT = 'lk.segment_id';
const FINAL = 'lk.transcription_final';
const topic = args[0];
const entries = [];
const updates = [];
const headers = [];
lk.state.transcript = entries;
lk.state.transcriptUpdates = updates;
lk.state.streamHeaders = headers;
room.engine.on('dataPacketReceived', (dp) => {
  if (dp.value?.case !== 'streamHeader') return;
  const h = dp.value.value;
  if (h.topic !== topic || h.contentHeader?.case !== 'textHeader') return;
  headers.push({
    stream_id: h.streamId,
    participant_identity: dp.participantIdentity,
    generated: h.contentHeader.value.generated,
    attributes: { ...h.attributes },
  });
});
room.registerTextStreamHandler(topic, async (reader, participantInfo) => {
  const isTranscription = !!reader.info.attributes?.[SEGMENT];
  let text = '';
  for await (const chunk of reader) {
    text += chunk;
    const index = entries.findIndex(
      (e) =>
        e.streamInfo.id === reader.info.id ||
        (isTranscription &&
          e.streamInfo.attributes?.[SEGMENT] === reader.info.attributes?.[SEGMENT]),
    );
    if (index !== -1) {
      entries[index] = { ...entries[index], text, streamInfo: reader.info };
    } else {
      entries.push({ text, participantInfo, streamInfo: reader.info });
    }
    const e = entries[index !== -1 ? index : entries.length - 1];
    updates.push({
      segment_id: e.streamInfo.attributes?.[SEGMENT] ?? null,
      identity: e.participantInfo.identity,
      text: e.text,
      final: e.streamInfo.attributes?.[FINAL] ?? null,
    });
  }
});
return null;
"""

# The merged transcript as components-js would render it now (attributes read now: a trailer
# merged after the last chunk shows up here, as it does in components-js's kept streamInfo).
TRANSCRIPT_JS = r"""
return {
  segments: (lk.state.transcript ?? []).map((e) => ({
    stream_id: e.streamInfo.id,
    segment_id: e.streamInfo.attributes?.['lk.segment_id'] ?? null,
    identity: e.participantInfo.identity,
    text: e.text,
    final: e.streamInfo.attributes?.['lk.transcription_final'] === 'true',
    attributes: { ...e.streamInfo.attributes },
  })),
  updates: lk.state.transcriptUpdates ?? [],
  headers: lk.state.streamHeaders ?? [],
};
"""

# args[0]: {freq}. A WebAudio oscillator published as the microphone with livekit-client's
# pre-connect buffer: what setMicrophoneEnabled(true, _, {preConnectBuffer: true}) does after
# getUserMedia (LocalParticipant.setTrackEnabled: startPreConnectBuffer, then publishTrack).
PRECONNECT_PUBLISH_JS = r"""
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
const mst = dest.stream.getAudioTracks()[0];
const track = new LK.LocalAudioTrack(mst, undefined, true);
track.startPreConnectBuffer();
const recording = track.hasPreConnectBuffer;
const mimeType = track.getPreConnectBufferMimeType() ?? null;
lk.state.preconnect = { ctx, osc, track };
const pub = await room.localParticipant.publishTrack(track, {
  name: 'microphone',
  source: LK.Track.Source.Microphone,
  preConnectBuffer: true,
  dtx: false,
  red: false,
});
const settings = track.getSourceTrackSettings();
return {
  audio_context: ctx.state,
  sid: pub.trackSid,
  recording,
  mime_type: mimeType,
  audio_features: [...(pub.trackInfo?.audioFeatures ?? [])],
  settings: {
    sampleRate: settings.sampleRate ?? null,
    channelCount: settings.channelCount ?? null,
  },
};
"""

PRECONNECT_STATE_JS = r"""
const t = lk.state.preconnect?.track;
return { recording: !!t?.hasPreConnectBuffer };
"""


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    check_browser_setup()  # raises BrowserSetupError with the fix in its message
    peer = BrowserPeer(name=WEB)
    await peer.start()
    try:
        yield peer
    finally:
        await peer.close()


async def _until(predicate: Callable[[], object], what: str, limit_s: float) -> None:
    try:
        async with asyncio.timeout(scaled(limit_s)):
            while not predicate():  # noqa: ASYNC110 (polling state another task fills)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {scaled(limit_s):g} s waiting for {what}") from None


async def _page_until(
    browser: BrowserPeer,
    js: str,
    predicate: Callable[[Any], bool],
    what: str,
    limit_s: float,
    *args: Any,
) -> Any:
    """Evaluate ``js`` (with ``args``) in the page until ``predicate(result)``; return it."""
    result: Any = None
    try:
        async with asyncio.timeout(scaled(limit_s)):
            while True:
                result = await browser.eval(js, *args)
                if predicate(result):
                    return result
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {scaled(limit_s):g} s waiting for {what}; last: {result!r}"
        ) from None


@dataclass
class StreamTrace:
    """Byte/text stream packets lkproto received (from its packet trace), for diagnostics."""

    headers: list[pb.DataStream.Header] = field(default_factory=list)
    chunks: dict[str, list[bytes]] = field(default_factory=dict)
    trailers: dict[str, pb.DataStream.Trailer] = field(default_factory=dict)

    def trace(self, direction: str, channel: str, message: object, raw: bytes, now: float) -> None:
        del channel, raw, now
        if direction != "<" or not isinstance(message, pb.DataPacket):
            return
        kind = message.WhichOneof("value")
        if kind == "stream_header":
            header = pb.DataStream.Header()
            header.CopyFrom(message.stream_header)
            self.headers.append(header)
        elif kind == "stream_chunk":
            chunk = message.stream_chunk
            self.chunks.setdefault(chunk.stream_id, []).append(bytes(chunk.content))
        elif kind == "stream_trailer":
            trailer = pb.DataStream.Trailer()
            trailer.CopyFrom(message.stream_trailer)
            self.trailers[trailer.stream_id] = trailer

    def header(self, topic: str) -> pb.DataStream.Header | None:
        return next((h for h in self.headers if h.topic == topic), None)

    def data(self, stream_id: str) -> bytes:
        return b"".join(self.chunks.get(stream_id, []))


async def connect_agent(
    server: LocalServer, room_name: str, room: rtc.Room, trace: StreamTrace | None = None
) -> rtc.Room:
    """Connect ``room`` as the lkproto agent (kind ``agent``, may set its own attributes)."""
    options = our_options()
    if trace is not None:
        options = rtc.RoomOptions(rtc_config=options.rtc_config, trace=trace.trace)
    token = make_token(server, AGENT, room_name, **AGENT_TOKEN)
    await asyncio.wait_for(room.connect(server.url, token, options), scaled(CONNECT_TIMEOUT_S))
    return room


async def browser_sees(browser: BrowserPeer, identity: str) -> dict[str, Any]:
    """Wait until livekit-client has ``identity`` among its remote participants."""
    result: dict[str, Any] = await _page_until(
        browser,
        PARTICIPANT_JS,
        lambda p: p is not None,
        f"the browser to see {identity}",
        ROSTER_TIMEOUT_S,
        identity,
    )
    return result


@contextlib.asynccontextmanager
async def agent_and_browser(
    server: LocalServer, browser: BrowserPeer, room: rtc.Room
) -> AsyncIterator[rtc.Room]:
    """The browser (``web``) then the lkproto agent (``room``) in a fresh room, each seeing the
    other; ``room`` is disconnected on exit."""
    name = f"lk-web-agents-{uuid.uuid4().hex[:10]}"
    try:
        await browser.connect(server.url, server.create_token(WEB, name))
        await connect_agent(server, name, room)
        await _until(
            lambda: WEB in room.remote_participants, "the agent sees web", ROSTER_TIMEOUT_S
        )
        await browser_sees(browser, AGENT)
        yield room
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))


def _agent_state_is(state: str) -> Callable[[dict[str, Any]], bool]:
    def match(event: dict[str, Any]) -> bool:
        return bool(
            event["identity"] == AGENT and event["attributes"].get(agents.ATTR_AGENT_STATE) == state
        )

    return match


def _peak_hz(pcm: np.ndarray, sample_rate: int) -> float:
    windowed = pcm * np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * sample_rate / len(pcm))


# -- tests --------------------------------------------------------------------------------------


async def test_browser_sees_agent_states_in_order(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    async with agent_and_browser(livekit_server, browser, rtc.Room()) as room:
        seen = await browser_sees(browser, AGENT)
        assert seen["kind"] == seen["kind_agent"] == PARTICIPANT_KIND_AGENT, seen
        assert seen["is_agent"] is True, seen
        assert agents.ATTR_AGENT_STATE not in seen["attributes"], seen

        presence = agents.AgentPresence(room)
        start = browser.last_seq
        for state in STATES:
            mark = browser.last_seq
            await presence.set_state(state)
            # Wait for each value before the next: the server may coalesce updates otherwise.
            await browser.wait_event(
                "ParticipantAttributesChanged", _agent_state_is(state), STATE_TIMEOUT_S, since=mark
            )
        changes = browser.find_events(
            "ParticipantAttributesChanged",
            lambda e: e["identity"] == AGENT and agents.ATTR_AGENT_STATE in e["changed"],
            since=start,
        )
        assert [e["changed"][agents.ATTR_AGENT_STATE] for e in changes] == list(STATES), changes
        final = await browser.eval(PARTICIPANT_JS, AGENT)
        assert final["attributes"] == {agents.ATTR_AGENT_STATE: "listening"}, final
        assert presence.state is agents.AgentState.LISTENING


async def test_browser_merges_agent_transcripts_like_components_js(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    async with agent_and_browser(livekit_server, browser, rtc.Room()) as room:
        await browser.eval(MERGE_JS, agents.TOPIC_TRANSCRIPTION)
        tx = agents.TranscriptionPublisher(room)
        user_versions = [("what", False), ("what is", False), ("what is up?", True)]
        segment: str | None = None
        for text, final in user_versions:
            segment = await tx.publish(
                text, participant_identity=WEB, final=final, segment_id=segment
            )
        assert segment is not None
        async with await tx.stream() as writer:
            for delta in ("Not ", "much, ", "you?"):
                await writer.write(delta)
        agent_segment = writer.segment_id

        got = await _page_until(
            browser,
            TRANSCRIPT_JS,
            lambda r: len(r["segments"]) == 2 and all(s["final"] for s in r["segments"]),
            "two final segments in the browser",
            STREAM_TIMEOUT_S,
        )
        _log.info("browser transcript: %s", got)
        user, reply = got["segments"]
        assert (user["segment_id"], user["identity"], user["text"]) == (
            segment,
            WEB,
            "what is up?",
        ), user
        assert user["final"] is True
        assert user["attributes"] == {
            agents.ATTR_SEGMENT_ID: segment,
            agents.ATTR_TRANSCRIPTION_FINAL: "true",
        }, user  # the browser publishes no microphone here: no lk.transcribed_track_id
        assert (reply["segment_id"], reply["identity"], reply["text"]) == (
            agent_segment,
            AGENT,
            "Not much, you?",
        ), reply
        assert reply["final"] is True  # only in the trailer
        assert agents.ATTR_TRANSCRIBED_TRACK_ID not in reply["attributes"], reply

        # The interim versions were shown, then replaced, in order.
        user_texts = [u["text"] for u in got["updates"] if u["segment_id"] == segment]
        assert user_texts == ["what", "what is", "what is up?"], got["updates"]
        user_finals = [u["final"] for u in got["updates"] if u["segment_id"] == segment]
        assert user_finals == ["false", "false", "true"], got["updates"]
        reply_updates = [u for u in got["updates"] if u["segment_id"] == agent_segment]
        assert reply_updates[-1]["text"] == "Not much, you?", reply_updates
        assert {u["identity"] for u in reply_updates} == {AGENT}, reply_updates

        # The headers as the engine decoded them: user streams on web's behalf, marked generated
        # by the server; the agent's own reply not.
        headers = got["headers"]
        assert len(headers) == 4, headers
        assert [(h["participant_identity"], h["generated"]) for h in headers] == [
            (WEB, True),
            (WEB, True),
            (WEB, True),
            (AGENT, False),
        ], headers
        assert [h["attributes"][agents.ATTR_TRANSCRIPTION_FINAL] for h in headers] == [
            "false",
            "false",
            "true",
            "false",  # the reply's final flag comes in the trailer
        ], headers


async def test_chat_both_ways(livekit_server: LocalServer, browser: BrowserPeer) -> None:
    room = rtc.Room()
    chats: list[agents.ChatMessage] = []
    agents.on_chat(room, chats.append)
    async with agent_and_browser(livekit_server, browser, room):
        await browser.register_text_stream(agents.TOPIC_CHAT)
        sent = await browser.send_text("hello agent 👋", topic=agents.TOPIC_CHAT)
        await _until(lambda: chats, "chat at the agent", STREAM_TIMEOUT_S)
        assert (chats[0].message, chats[0].sender_identity) == ("hello agent 👋", WEB), chats
        assert chats[0].id == sent["id"], (chats, sent)

        reply = await agents.send_chat(room, "hello web ✓")
        ev = await browser.wait_event(
            "TextStreamReceived", lambda e: e["topic"] == agents.TOPIC_CHAT, STREAM_TIMEOUT_S
        )
        assert (ev["identity"], ev["text"]) == (AGENT, "hello web ✓"), ev
        assert ev["info"]["id"] == reply.id, (ev, reply)
        assert len(chats) == 1  # the agent does not get its own message back


async def test_preconnect_buffer_reaches_the_agent(
    livekit_server: LocalServer, browser: BrowserPeer
) -> None:
    name = f"lk-web-preconnect-{uuid.uuid4().hex[:10]}"
    room = rtc.Room()
    trace = StreamTrace()
    got: list[tuple[agents.PreconnectFrames, str]] = []
    agents.on_preconnect_audio(
        room, lambda frames, who: got.append((frames, who)), timeout=scaled(PRECONNECT_TIMEOUT_S)
    )
    try:
        await browser.connect(livekit_server.url, livekit_server.create_token(WEB, name))
        published = await browser.eval(PRECONNECT_PUBLISH_JS, {"freq": TONE_HZ})
        _log.info("browser published %s", published)
        assert published["audio_context"] == "running", published
        assert published["recording"] is True, published
        assert published["mime_type"] == "audio/webm;codecs=opus", published
        assert TF_PRECONNECT_BUFFER in published["audio_features"], published
        # Let the recorder buffer audio while no agent is there (no agent, so it cannot stop).
        await asyncio.sleep(BUFFERED_S)
        assert (await browser.eval(PRECONNECT_STATE_JS))["recording"] is True

        await connect_agent(livekit_server, name, room, trace)
        try:
            await _until(lambda: got, "pre-connect audio at the agent", PRECONNECT_TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {await _describe_preconnect(trace)}") from None
        frames, sender = got[0]
        header = trace.header(agents.TOPIC_PRECONNECT_AUDIO)
        assert header is not None
        _log.info(
            "pre-connect stream: mime %r name %r attributes %s, %d bytes; %d frames, %.3f s",
            header.mime_type,
            header.byte_header.name,
            dict(header.attributes),
            len(trace.data(header.stream_id)),
            len(frames),
            frames.duration,
        )
        assert sender == WEB
        assert header.mime_type == "audio/webm;codecs=opus", header
        assert header.byte_header.name == "preconnect-buffer", header
        attrs = dict(header.attributes)
        assert attrs["trackId"] == published["sid"], attrs
        rate = int(attrs["sampleRate"])
        channels = int(attrs["channels"])
        assert rate == (published["settings"]["sampleRate"] or 48000), (attrs, published)
        assert channels == (published["settings"]["channelCount"] or 1), (attrs, published)
        assert frames.track_id == published["sid"]
        assert (frames.sample_rate, frames.num_channels) == (rate, channels)
        assert {(f.sample_rate, f.num_channels) for f in frames} == {(rate, channels)}
        # At least the audio recorded before the agent joined (minus the encoder's start-up).
        assert frames.duration > BUFFERED_S - 0.5, frames.duration

        pcm = (
            np.concatenate(
                [np.frombuffer(f.data, dtype=np.int16).reshape(-1, channels) for f in frames]
            )[:, 0].astype(np.float64)
            / 32768.0
        )
        tail = pcm[len(pcm) // 4 :]  # skip the recorder's start
        peak = _peak_hz(tail, rate)
        rms = float(np.sqrt(np.mean(tail**2)))
        _log.info("pre-connect audio peak %.1f Hz, rms %.3f", peak, rms)
        assert abs(peak - TONE_HZ) <= FREQ_TOLERANCE_HZ, (peak, rms)
        assert rms > 0.05, rms

        # The agent subscribed to the microphone, which stopped the recording.
        await _page_until(
            browser,
            PRECONNECT_STATE_JS,
            lambda s: not s["recording"],
            "the browser to stop recording",
            STATE_TIMEOUT_S,
        )
        pub = room.remote_participants[WEB].track_publications[published["sid"]]
        assert TF_PRECONNECT_BUFFER in pub.info.audio_features, pub.info
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.disconnect(), scaled(CONNECT_TIMEOUT_S))


async def _describe_preconnect(trace: StreamTrace) -> str:
    """What arrived on the pre-connect topic, and what lkproto's decoder says about it."""
    header = trace.header(agents.TOPIC_PRECONNECT_AUDIO)
    if header is None:
        topics = [h.topic for h in trace.headers]
        return f"no {agents.TOPIC_PRECONNECT_AUDIO} stream header arrived (headers: {topics})"
    data = trace.data(header.stream_id)
    trailer = trace.trailers.get(header.stream_id)
    facts = (
        f"header mime {header.mime_type!r}, name {header.byte_header.name!r}, "
        f"attributes {dict(header.attributes)}, total_length {header.total_length}, "
        f"{len(data)} bytes in {len(trace.chunks.get(header.stream_id, []))} chunks, "
        f"first bytes {data[:32].hex()}, trailer {trailer!r}"
    )
    try:
        frames = await agents.decode_preconnect_audio(
            data,
            mime_type=header.mime_type,
            sample_rate=int(header.attributes.get("sampleRate", "48000")),
            num_channels=int(header.attributes.get("channels", "1")),
        )
    except ValueError as exc:
        return f"{facts}; decode_preconnect_audio: {exc!r}"
    return f"{facts}; decode_preconnect_audio gives {len(frames)} frames"
