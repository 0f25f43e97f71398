// The demo's web frontend: livekit-client talking to lkproto's moon weather agent.
//
// GET /token gives {url, token, room, identity, agent_identity} (the Python server dispatches an
// agent into that room). The page shows the agent state (the agent's `lk.agent.state`
// attribute, PROTOCOL-MAP §8), a transcript merged from `lk.transcription` text streams by
// `lk.segment_id`, the agent's picture (byte stream `demo.image`), and has a push-to-talk button:
// holding it publishes the microphone and calls the agent's `start_turn` RPC, releasing it mutes
// and calls `end_turn`. `?mic=oscillator` publishes a WebAudio oscillator instead of the
// microphone (for headless tests: no media permission), `?autoconnect=1` connects on load.
// Everything the tests look at is also in `window.demo`.
import * as LK from 'livekit-client';

const { Room, RoomEvent, Track } = LK;

// eslint-disable-next-line no-undef
const LIVEKIT_CLIENT_VERSION = __LIVEKIT_CLIENT_VERSION__;
const TOPIC_TRANSCRIPTION = 'lk.transcription';
const TOPIC_CHAT = 'lk.chat';
const TOPIC_IMAGE = 'demo.image';
const ATTR_STATE = 'lk.agent.state';
const ATTR_ON_BEHALF = 'lk.publish_on_behalf';

const params = new URLSearchParams(window.location.search);
const $ = (id) => document.getElementById(id);

const demo = {
  ready: false,
  state: 'disconnected',
  states: [],
  transcript: [],
  image: null,
  weather: null,
  errors: [],
  session: null,
  pttPresses: 0,
  turnsEnded: 0,
  droppedCandidates: [],
};
window.demo = demo;

// ---------------------------------------------------------------------------------------------
// loopback-only ICE candidates (as tests/interop/browser/page/entry.js): the local server only
// listens on 127.0.0.1, so non-loopback host candidates are dropped before livekit-client
// signals them; Chromium's checks from 127.0.0.1 pair peer-reflexively with the server's.

function isLoopbackCandidate(line) {
  const fields = line.replace(/^a=/, '').split(' ');
  const address = fields.length > 5 ? fields[4] : '';
  const keep = address === '::1' || address === 'localhost' || /^127\./.test(address);
  if (!keep) demo.droppedCandidates.push(line);
  return keep;
}

function filterDescription(desc, asInit = false) {
  if (!desc || !desc.sdp) return desc;
  const sdp = desc.sdp
    .split('\r\n')
    .filter((l) => !l.startsWith('a=candidate:') || isLoopbackCandidate(l))
    .join('\r\n');
  const init = { type: desc.type, sdp };
  return asInit ? init : new RTCSessionDescription(init);
}

function installCandidateFilter() {
  const NativePC = window.RTCPeerConnection;
  const proto = NativePC.prototype;
  const getter = (name) => Object.getOwnPropertyDescriptor(proto, name).get;
  const localDesc = getter('localDescription');
  const pendingLocal = getter('pendingLocalDescription');
  const currentLocal = getter('currentLocalDescription');
  const addListener = EventTarget.prototype.addEventListener;
  class LoopbackOnlyPeerConnection extends NativePC {
    constructor(...args) {
      super(...args);
      addListener.call(this, 'icecandidate', (ev) => {
        const line = ev.candidate?.candidate;
        if (line && !isLoopbackCandidate(line)) ev.stopImmediatePropagation();
      });
    }

    get localDescription() {
      return filterDescription(localDesc.call(this));
    }

    get pendingLocalDescription() {
      return filterDescription(pendingLocal.call(this));
    }

    get currentLocalDescription() {
      return filterDescription(currentLocal.call(this));
    }

    async createOffer(...args) {
      return filterDescription(await super.createOffer(...args), true);
    }

    async createAnswer(...args) {
      return filterDescription(await super.createAnswer(...args), true);
    }
  }
  window.RTCPeerConnection = LoopbackOnlyPeerConnection;
}

installCandidateFilter();

// ---------------------------------------------------------------------------------------------
// UI

function setStatus(text) {
  $('status').textContent = text;
}

function fail(where, e) {
  const message = `${where}: ${e?.message ?? e}`;
  demo.errors.push(message);
  setStatus(message);
  console.error(message, e);
}

function setState(state) {
  if (state === demo.state) return;
  demo.state = state;
  demo.states.push(state);
  const el = $('state');
  el.textContent = state;
  el.dataset.state = state;
  const canTalk = ['listening', 'thinking', 'speaking'].includes(state);
  $('ptt').disabled = !canTalk;
  $('weather-btn').disabled = !canTalk;
  $('chat-text').disabled = !canTalk;
  $('chat-send').disabled = !canTalk;
}

function renderTranscript() {
  const box = $('transcript');
  box.replaceChildren(
    ...demo.transcript.map((seg) => {
      const row = document.createElement('div');
      row.className = `seg ${seg.is_agent ? 'agent' : 'user'} ${seg.final ? 'final' : 'interim'}`;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = seg.is_agent ? 'agent' : seg.identity === room?.localParticipant.identity ? 'you' : seg.identity;
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = seg.final ? seg.text : `${seg.text} …`;
      row.append(who, text);
      return row;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// the room

let room = null;
let agentIdentity = null;

function agentParticipant() {
  for (const p of room?.remoteParticipants.values() ?? []) {
    const isAgent = p.isAgent ?? p.kind === LK.ParticipantKind.AGENT;
    if (isAgent && !(ATTR_ON_BEHALF in (p.attributes ?? {}))) return p;
  }
  return null;
}

// The frontend-derived state of PROTOCOL-MAP §8 (useAgent), without the failure timer.
function refreshState() {
  if (!room || room.state === LK.ConnectionState.Disconnected) {
    setState('disconnected');
    return;
  }
  const agent = agentParticipant();
  const value = agent?.attributes?.[ATTR_STATE];
  setState(value || 'connecting');
}

function upsertSegment(id, identity, text, final, isAgent) {
  let seg = demo.transcript.find((s) => s.id === id);
  if (!seg) {
    seg = { id, identity, text, final, is_agent: isAgent };
    demo.transcript.push(seg);
  }
  Object.assign(seg, { identity, text, final, is_agent: isAgent });
  renderTranscript();
}

async function onTranscription(reader, participantInfo) {
  const identity = participantInfo.identity;
  const isAgent = identity === agentIdentity || agentParticipant()?.identity === identity;
  const id = reader.info.attributes?.['lk.segment_id'] ?? reader.info.id;
  let text = '';
  // Each stream holds the whole current text of its segment: a newer stream replaces it.
  upsertSegment(id, identity, text, false, isAgent);
  for await (const chunk of reader) {
    text += chunk;
    upsertSegment(id, identity, text, false, isAgent);
  }
  // The trailer's attributes are merged into info (streaming mode marks "final" there).
  const final = reader.info.attributes?.['lk.transcription_final'] === 'true';
  upsertSegment(id, identity, text, final, isAgent);
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function onImage(reader, participantInfo) {
  const chunks = await reader.readAll();
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.length;
  }
  const sha256 = await sha256Hex(bytes);
  const info = reader.info;
  demo.image = {
    name: info.name,
    mime_type: info.mimeType,
    size: bytes.length,
    sha256,
    sha256_ok: sha256 === info.attributes?.sha256,
    from: participantInfo.identity,
  };
  $('picture-img').src = URL.createObjectURL(new Blob([bytes], { type: info.mimeType }));
  $('picture-caption').textContent = `${info.name} from ${participantInfo.identity}: ${bytes.length} bytes`;
  $('picture-sha').textContent = `sha256 ${sha256}${demo.image.sha256_ok ? ' ✓' : ' (mismatch!)'}`;
  $('picture').style.display = 'flex';
}

async function connect() {
  $('connect').disabled = true;
  setStatus('fetching a token…');
  const session = await (await fetch('/token', { cache: 'no-store' })).json();
  demo.session = { room: session.room, identity: session.identity };
  agentIdentity = session.agent_identity;
  room = new Room();
  window.room = room;
  room
    .on(RoomEvent.ConnectionStateChanged, refreshState)
    .on(RoomEvent.ParticipantConnected, refreshState)
    .on(RoomEvent.ParticipantDisconnected, refreshState)
    .on(RoomEvent.ParticipantAttributesChanged, refreshState)
    .on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === Track.Kind.Audio) document.body.appendChild(track.attach());
    })
    .on(RoomEvent.Disconnected, () => {
      setStatus('disconnected');
      refreshState();
    });
  room.registerTextStreamHandler(TOPIC_TRANSCRIPTION, (r, p) =>
    onTranscription(r, p).catch((e) => fail('transcription', e)),
  );
  room.registerByteStreamHandler(TOPIC_IMAGE, (r, p) =>
    onImage(r, p).catch((e) => fail('picture', e)),
  );
  setStatus(`connecting to ${session.url}…`);
  await room.connect(session.url, session.token, { rtcConfig: { iceServers: [] } });
  await room.startAudio().catch(() => {});
  setStatus(`room ${session.room} as ${session.identity}`);
  refreshState();
}

// ---------------------------------------------------------------------------------------------
// push-to-talk

let micPublication = null;
let oscillator = null;
let turn = Promise.resolve();

async function microphoneTrack() {
  if (params.get('mic') === 'oscillator') {
    // A stand-in for the microphone: a 440 Hz tone, no media permission needed.
    const ctx = new AudioContext({ sampleRate: 48000 });
    if (ctx.state !== 'running') await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = 440;
    const gain = ctx.createGain();
    gain.gain.value = 0.3;
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    oscillator = { ctx, osc };
    return dest.stream.getAudioTracks()[0];
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  return stream.getAudioTracks()[0];
}

async function rpc(method, payload) {
  return room.localParticipant.performRpc({
    destinationIdentity: agentParticipant()?.identity ?? agentIdentity,
    method,
    payload: JSON.stringify(payload),
  });
}

function startTurn() {
  demo.pttPresses += 1;
  $('ptt').classList.add('held');
  $('ptt').textContent = 'Talking… release to send';
  turn = turn.then(async () => {
    if (!micPublication) {
      micPublication = await room.localParticipant.publishTrack(await microphoneTrack(), {
        name: 'microphone',
        source: Track.Source.Microphone,
        dtx: false,
        red: false,
      });
    } else {
      await micPublication.unmute();
    }
    await rpc('start_turn', {});
  });
  turn.catch((e) => fail('start_turn', e));
}

function endTurn() {
  if (!$('ptt').classList.contains('held')) return;
  $('ptt').classList.remove('held');
  $('ptt').textContent = 'Hold to talk';
  turn = turn
    .catch(() => {})
    .then(async () => {
      await micPublication?.mute();
      await rpc('end_turn', {});
      demo.turnsEnded += 1;
    });
  turn.catch((e) => fail('end_turn', e));
}

// ---------------------------------------------------------------------------------------------

function init() {
  $('lkversion').textContent = LIVEKIT_CLIENT_VERSION;
  $('connect').addEventListener('click', () => connect().catch((e) => fail('connect', e)));
  const ptt = $('ptt');
  ptt.addEventListener('pointerdown', (ev) => {
    ev.preventDefault();
    ptt.setPointerCapture?.(ev.pointerId);
    startTurn();
  });
  for (const name of ['pointerup', 'pointercancel', 'lostpointercapture']) {
    ptt.addEventListener(name, endTurn);
  }
  ptt.addEventListener('keydown', (ev) => {
    if ((ev.key === ' ' || ev.key === 'Enter') && !ev.repeat) startTurn();
  });
  ptt.addEventListener('keyup', (ev) => {
    if (ev.key === ' ' || ev.key === 'Enter') endTurn();
  });
  $('weather-btn').addEventListener('click', async () => {
    try {
      demo.weather = JSON.parse(await rpc('get_weather', { location: 'moon' }));
      $('weather').textContent = `get_weather → ${JSON.stringify(demo.weather)}`;
    } catch (e) {
      fail('get_weather', e);
    }
  });
  const sendChat = async () => {
    const text = $('chat-text').value.trim();
    if (!text) return;
    $('chat-text').value = '';
    upsertSegment(`chat-${Date.now()}`, room.localParticipant.identity, text, true, false);
    await room.localParticipant.sendText(text, { topic: TOPIC_CHAT }).catch((e) => fail('chat', e));
  };
  $('chat-send').addEventListener('click', sendChat);
  $('chat-text').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') sendChat();
  });
  demo.ready = true;
  if (params.get('autoconnect') === '1') $('connect').click();
}

init();
