// The page side of lkproto's browser peer: livekit-client in Chromium, driven by ../driver.mjs.
//
// Everything the driver does goes through `window.lk.call(op, args)`, which never throws: it
// resolves to {ok: true, result} or {ok: false, error: {name, message, code, data, ...}} so that
// error details (RpcError code/data, ConnectionError reason) survive page.evaluate. Every
// livekit-client RoomEvent is recorded as {type: '<RoomEvent key>', seq, t, ...fields} in
// `window.lk.events` and pushed to the driver through `window.__lkEmit` (a Playwright binding).
// Field names are snake_case for the Python side.
import * as LK from 'livekit-client';

const { Room, RoomEvent, RpcError, DataPacket_Kind, DisconnectReason, Participant } = LK;

// eslint-disable-next-line no-undef
const LIVEKIT_CLIENT_VERSION = __LIVEKIT_CLIENT_VERSION__;

// ---------------------------------------------------------------------------------------------
// helpers

function bytesToB64(bytes) {
  let s = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(s);
}

function b64ToBytes(b64) {
  const s = atob(b64 ?? '');
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i += 1) out[i] = s.charCodeAt(i);
  return out;
}

// Deterministic test bytes, reproducible in Python (tests/interop/browser/harness.py
// `generated_bytes`): 'random' is xorshift32 (seed != 0) little-endian words, incompressible;
// 'pattern' is byte i = (i * 7 + (i >>> 11) + seed) & 0xff, highly compressible.
function generateBytes(size, kind, seed) {
  const out = new Uint8Array(size);
  if (kind === 'pattern') {
    for (let i = 0; i < size; i += 1) out[i] = (i * 7 + (i >>> 11) + seed) & 0xff;
    return out;
  }
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    for (let k = 0; k < 4 && i + k < size; k += 1) out[i + k] = (x >>> (8 * k)) & 0xff;
  }
  return out;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function concatChunks(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return all;
}

function errorToJson(e) {
  if (e === null || typeof e !== 'object') {
    return { name: 'Error', message: String(e) };
  }
  const out = { name: e.name ?? e.constructor?.name ?? 'Error', message: String(e.message ?? e) };
  if (e instanceof RpcError) out.name = 'RpcError';
  for (const key of ['code', 'data', 'reason', 'status', 'reasonName']) {
    if (e[key] !== undefined) out[key] = jsonSafe(e[key]);
  }
  if (e.stack) out.stack = String(e.stack);
  return out;
}

function participantJson(p) {
  if (!p) return null;
  return {
    identity: p.identity,
    sid: p.sid,
    name: p.name ?? null,
    metadata: p.metadata ?? null,
    attributes: { ...(p.attributes ?? {}) },
    kind: p.kind ?? null,
    is_local: p === state.room?.localParticipant,
  };
}

function publicationJson(pub) {
  if (!pub) return null;
  return {
    track_sid: pub.trackSid,
    track_name: pub.trackName,
    kind: pub.kind,
    source: pub.source,
    muted: pub.isMuted,
    mime_type: pub.mimeType ?? null,
  };
}

// Best-effort JSON view of any event argument (for events without a dedicated mapper).
function jsonSafe(v, depth = 0) {
  if (v === null || v === undefined) return v ?? null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v !== 'object') return typeof v === 'function' ? undefined : v;
  if (v instanceof Uint8Array) return { bytes_b64: bytesToB64(v) };
  if (v instanceof Participant) return { identity: v.identity, sid: v.sid };
  if (v instanceof Map) return jsonSafe(Object.fromEntries(v), depth);
  if (v instanceof Error) return errorToJson(v);
  if (typeof v.trackSid === 'string' && 'kind' in v) return publicationJson(v);
  if (depth > 3) return String(v);
  if (Array.isArray(v)) return v.map((x) => jsonSafe(x, depth + 1));
  const out = {};
  for (const [k, x] of Object.entries(v)) {
    const j = jsonSafe(x, depth + 1);
    if (j !== undefined) out[k] = j;
  }
  return out;
}

function kindName(kind) {
  if (kind === DataPacket_Kind.RELIABLE) return 'reliable';
  if (kind === DataPacket_Kind.LOSSY) return 'lossy';
  return kind === undefined ? null : String(kind);
}

// ---------------------------------------------------------------------------------------------
// loopback-only ICE candidates
//
// Without a media permission Chromium gathers on one any-address socket and advertises the
// default route's address (here the eth0 address) as its host candidate. Its checks toward the
// server's only candidate, 127.0.0.1, leave from 127.0.0.1, so ICE pairs peer-reflexively and
// every packet stays on loopback. The advertised non-loopback host candidates are useless here,
// and livekit-server would otherwise try them, so they are dropped before livekit-client sends
// them (trickle) and from the SDP it sends (offer/answer, localDescription). The switch
// `state.loopbackOnlyCandidates` turns this off for experiments; `state.droppedCandidates`
// lists what was dropped.

function candidateAddress(line) {
  // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
  const fields = line.replace(/^a=/, '').split(' ');
  return fields.length > 5 ? fields[4] : '';
}

function isLoopbackAddress(address) {
  return address === '::1' || address === 'localhost' || /^127\./.test(address);
}

function keepCandidateLine(line) {
  if (!state.loopbackOnlyCandidates) return true;
  const keep = isLoopbackAddress(candidateAddress(line));
  if (!keep && !state.droppedCandidates.includes(line)) state.droppedCandidates.push(line);
  return keep;
}

function filterSdp(sdp) {
  if (!sdp || !state.loopbackOnlyCandidates) return sdp;
  return sdp
    .split('\r\n')
    .filter((l) => !l.startsWith('a=candidate:') || keepCandidateLine(l))
    .join('\r\n');
}

// createOffer/createAnswer resolve to a plain init dict (callers may rewrite .sdp); the
// *LocalDescription getters return RTCSessionDescription objects.
function filterDescription(desc, asInit = false) {
  if (!desc || !state.loopbackOnlyCandidates) return desc;
  const init = { type: desc.type, sdp: filterSdp(desc.sdp) };
  return asInit ? init : new RTCSessionDescription(init);
}

function installCandidateFilter() {
  const NativePC = window.RTCPeerConnection;
  const proto = NativePC.prototype;
  const nativeLocalDesc = Object.getOwnPropertyDescriptor(proto, 'localDescription');
  const nativePendingLocal = Object.getOwnPropertyDescriptor(proto, 'pendingLocalDescription');
  const nativeCurrentLocal = Object.getOwnPropertyDescriptor(proto, 'currentLocalDescription');
  const addListener = EventTarget.prototype.addEventListener;

  class LoopbackOnlyPeerConnection extends NativePC {
    constructor(...args) {
      super(...args);
      // Registered first, so stopImmediatePropagation hides a dropped candidate from every
      // later `icecandidate` listener, `onicecandidate` included.
      addListener.call(this, 'icecandidate', (ev) => {
        const line = ev.candidate?.candidate;
        if (line && !keepCandidateLine(line)) ev.stopImmediatePropagation();
      });
    }

    get localDescription() {
      return filterDescription(nativeLocalDesc.get.call(this));
    }

    get pendingLocalDescription() {
      return filterDescription(nativePendingLocal.get.call(this));
    }

    get currentLocalDescription() {
      return filterDescription(nativeCurrentLocal.get.call(this));
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

// ---------------------------------------------------------------------------------------------
// state and event recording

const state = {
  room: null,
  events: [],
  seq: 0,
  rpcMethods: new Set(),
  loopbackOnlyCandidates: true,
  droppedCandidates: [],
};

installCandidateFilter();

function emit(type, fields) {
  state.seq += 1;
  const ev = { type, seq: state.seq, t: Date.now(), ...fields };
  state.events.push(ev);
  if (typeof window.__lkEmit === 'function') {
    // Fire and forget: the binding resolves once the driver has the event.
    window.__lkEmit(ev).catch(() => {});
  }
  return ev;
}

// Dedicated mappers; every other RoomEvent is recorded with `args` (jsonSafe of the arguments).
const mappers = {
  Disconnected: (reason) => ({
    reason: reason ?? null,
    reason_name: reason === undefined ? null : DisconnectReason[reason] ?? String(reason),
  }),
  ConnectionStateChanged: (s) => ({ state: s }),
  ParticipantConnected: (p) => ({ ...participantJson(p) }),
  ParticipantDisconnected: (p, reason) => ({
    ...participantJson(p),
    reason: reason ?? null,
    reason_name: reason === undefined ? null : DisconnectReason[reason] ?? String(reason),
  }),
  DataReceived: (payload, participant, kind, topic, encryptionType, participantIdentity) => ({
    payload_b64: bytesToB64(payload),
    identity: participant?.identity ?? participantIdentity ?? null,
    kind: kindName(kind),
    topic: topic ?? null,
    encryption_type: encryptionType ?? null,
  }),
  ParticipantMetadataChanged: (prev, p) => ({
    identity: p?.identity ?? null,
    prev_metadata: prev ?? null,
    metadata: p?.metadata ?? null,
  }),
  ParticipantNameChanged: (name, p) => ({ identity: p?.identity ?? null, name }),
  ParticipantAttributesChanged: (changed, p) => ({
    identity: p?.identity ?? null,
    changed: { ...changed },
    attributes: { ...(p?.attributes ?? {}) },
  }),
  ParticipantPermissionsChanged: (prev, p) => ({
    identity: p?.identity ?? null,
    permissions: jsonSafe(p?.permissions ?? null),
  }),
  RoomMetadataChanged: (metadata) => ({ metadata }),
  TrackPublished: (pub, p) => ({ identity: p?.identity ?? null, ...publicationJson(pub) }),
  TrackUnpublished: (pub, p) => ({ identity: p?.identity ?? null, ...publicationJson(pub) }),
  TrackSubscribed: (track, pub, p) => ({ identity: p?.identity ?? null, ...publicationJson(pub) }),
  TrackUnsubscribed: (track, pub, p) => ({
    identity: p?.identity ?? null,
    ...publicationJson(pub),
  }),
  TrackMuted: (pub, p) => ({ identity: p?.identity ?? null, ...publicationJson(pub) }),
  TrackUnmuted: (pub, p) => ({ identity: p?.identity ?? null, ...publicationJson(pub) }),
  ActiveSpeakersChanged: (speakers) => ({ identities: speakers.map((s) => s.identity) }),
  ConnectionQualityChanged: (quality, p) => ({ identity: p?.identity ?? null, quality }),
  ChatMessage: (msg, p) => ({ identity: p?.identity ?? null, message: jsonSafe(msg) }),
};

function attachRoomEvents(room) {
  for (const [key, name] of Object.entries(RoomEvent)) {
    const mapper = mappers[key];
    room.on(name, (...args) => {
      let fields;
      try {
        fields = mapper ? mapper(...args) : { args: jsonSafe(args) };
      } catch (e) {
        fields = { mapper_error: errorToJson(e) };
      }
      emit(key, fields);
    });
  }
}

function ensureRoom(roomOptions) {
  if (!state.room) {
    state.room = new Room(roomOptions ?? {});
    attachRoomEvents(state.room);
  }
  return state.room;
}

function requireRoom() {
  if (!state.room) throw new Error('no room: call connect first');
  return state.room;
}

function roomInfo() {
  const room = state.room;
  if (!room) return { connection_state: null };
  return {
    connection_state: room.state,
    room_name: room.name,
    room_metadata: room.metadata ?? null,
    local: participantJson(room.localParticipant),
    remote: [...room.remoteParticipants.values()].map(participantJson),
    server_info: jsonSafe(room.serverInfo ?? null),
  };
}

// ---------------------------------------------------------------------------------------------
// RPC handlers

function rpcHandler(method, spec) {
  const mode = spec.mode ?? 'echo';
  return async (data) => {
    emit('RpcInvoked', {
      method,
      request_id: data.requestId,
      caller_identity: data.callerIdentity,
      payload: data.payload,
      response_timeout_ms: data.responseTimeout,
    });
    if (spec.delay_ms) await new Promise((r) => setTimeout(r, spec.delay_ms));
    switch (mode) {
      case 'echo':
        return data.payload;
      case 'fixed':
        return spec.response ?? '';
      case 'rpc_error':
        throw new RpcError(spec.error_code ?? 1500, spec.error_message ?? 'error', spec.error_data);
      case 'throw':
        throw new Error(spec.error_message ?? 'handler failed');
      default:
        throw new Error(`unknown rpc mode ${mode}`);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// operations

const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;

const ops = {
  async ping() {
    return { pong: true, livekit_client: LIVEKIT_CLIENT_VERSION, user_agent: navigator.userAgent };
  },

  // connect_options are merged over {rtcConfig: {iceServers: []}} (PROTOCOL-MAP §17: any
  // defined iceServers wins over the server's list, so nothing goes to public STUN servers).
  async connect({ url, token, room_options, connect_options }) {
    const room = ensureRoom(room_options);
    const opts = { rtcConfig: { iceServers: [] }, ...(connect_options ?? {}) };
    if (connect_options?.rtcConfig) {
      opts.rtcConfig = { iceServers: [], ...connect_options.rtcConfig };
    }
    await room.connect(url, token, opts);
    return roomInfo();
  },

  async disconnect({ stop_tracks }) {
    if (state.room) await state.room.disconnect(stop_tracks ?? true);
    return roomInfo();
  },

  // Disconnects and forgets the Room (RPC methods and stream handlers too); the next connect
  // makes a new one.
  async reset() {
    if (state.room) await state.room.disconnect();
    state.room = null;
    state.rpcMethods.clear();
    return null;
  },

  async info() {
    return roomInfo();
  },

  async publishData({ payload_b64, reliable, topic, destinations }) {
    const room = requireRoom();
    const opts = { reliable: reliable ?? true };
    if (topic !== undefined && topic !== null) opts.topic = topic;
    if (destinations) opts.destinationIdentities = destinations;
    await room.localParticipant.publishData(b64ToBytes(payload_b64), opts);
    return null;
  },

  async sendText({ text, topic, destinations, attributes }) {
    const room = requireRoom();
    const opts = {};
    if (topic !== undefined && topic !== null) opts.topic = topic;
    if (destinations) opts.destinationIdentities = destinations;
    if (attributes) opts.attributes = attributes;
    const info = await room.localParticipant.sendText(text, opts);
    return jsonSafe(info);
  },

  async registerTextStream({ topic }) {
    const room = ensureRoom();
    room.registerTextStreamHandler(topic, async (reader, participantInfo) => {
      const text = await reader.readAll();
      emit('TextStreamReceived', {
        topic,
        identity: participantInfo.identity,
        text,
        info: jsonSafe(reader.info),
      });
    });
    return null;
  },

  async registerByteStream({ topic }) {
    const room = ensureRoom();
    room.registerByteStreamHandler(topic, async (reader, participantInfo) => {
      const chunks = await reader.readAll();
      const total = chunks.reduce((n, c) => n + c.length, 0);
      const all = new Uint8Array(total);
      let off = 0;
      for (const c of chunks) {
        all.set(c, off);
        off += c.length;
      }
      emit('ByteStreamReceived', {
        topic,
        identity: participantInfo.identity,
        payload_b64: bytesToB64(all),
        info: jsonSafe(reader.info),
      });
    });
    return null;
  },

  // Like registerByteStream, but records 'ByteStreamDigest' {topic, identity, size, sha256,
  // chunks, info, elapsed_ms} instead of shipping the payload through the JSON pipe.
  async registerByteStreamDigest({ topic }) {
    const room = ensureRoom();
    room.registerByteStreamHandler(topic, async (reader, participantInfo) => {
      const t0 = performance.now();
      const chunks = [];
      for await (const chunk of reader) chunks.push(chunk);
      const all = concatChunks(chunks);
      emit('ByteStreamDigest', {
        topic,
        identity: participantInfo.identity,
        size: all.length,
        sha256: await sha256Hex(all),
        chunks: chunks.length,
        info: jsonSafe(reader.info),
        elapsed_ms: performance.now() - t0,
      });
    });
    return null;
  },

  // Generates `size` bytes in the page (generateBytes) and sends them with
  // method 'sendFile' (localParticipant.sendFile(new File(...))), 'sendBytes' or 'streamBytes'
  // (writer, `chunk_size` bytes per write). Returns {size, sha256, info, elapsed_ms}.
  async sendGeneratedBytes({
    size,
    kind,
    seed,
    method,
    topic,
    name,
    mime_type,
    attributes,
    destinations,
    compress,
    chunk_size,
  }) {
    const room = requireRoom();
    const lp = room.localParticipant;
    const bytes = generateBytes(size, kind ?? 'random', seed ?? 1);
    const sha256 = await sha256Hex(bytes);
    const opts = {};
    if (topic !== undefined && topic !== null) opts.topic = topic;
    if (destinations) opts.destinationIdentities = destinations;
    if (attributes) opts.attributes = attributes;
    if (mime_type) opts.mimeType = mime_type;
    if (compress !== undefined && compress !== null) opts.compress = compress;
    const fileName = name ?? 'generated.bin';
    const t0 = performance.now();
    let info;
    switch (method ?? 'sendFile') {
      case 'sendFile': {
        const file = new File([bytes], fileName, {
          type: mime_type ?? 'application/octet-stream',
        });
        info = await lp.sendFile(file, opts);
        break;
      }
      case 'sendBytes':
        info = await lp.sendBytes(bytes, { ...opts, name: fileName });
        break;
      case 'streamBytes': {
        const writer = await lp.streamBytes({ ...opts, name: fileName, totalSize: size });
        const step = chunk_size ?? 64 * 1024;
        for (let off = 0; off < size; off += step) {
          await writer.write(bytes.subarray(off, Math.min(size, off + step)));
        }
        await writer.close();
        info = writer.info;
        break;
      }
      default:
        throw new Error(`unknown method ${method}`);
    }
    return { size, sha256, info: jsonSafe(info), elapsed_ms: performance.now() - t0 };
  },

  // spec: {mode: 'echo'|'fixed'|'rpc_error'|'throw', response, error_code, error_message,
  //        error_data, delay_ms}. Each invocation is recorded as an 'RpcInvoked' event.
  async registerRpc({ method, ...spec }) {
    const room = ensureRoom();
    if (state.rpcMethods.has(method)) room.unregisterRpcMethod(method);
    room.registerRpcMethod(method, rpcHandler(method, spec));
    state.rpcMethods.add(method);
    return null;
  },

  async unregisterRpc({ method }) {
    const room = requireRoom();
    room.unregisterRpcMethod(method);
    state.rpcMethods.delete(method);
    return null;
  },

  // Resolves to {response}; an RpcError comes back as error {name: 'RpcError', code, message,
  // data}.
  async performRpc({ destination, method, payload, response_timeout_ms }) {
    const room = requireRoom();
    const params = { destinationIdentity: destination, method, payload: payload ?? '' };
    if (response_timeout_ms !== undefined && response_timeout_ms !== null) {
      params.responseTimeout = response_timeout_ms;
    }
    const response = await room.localParticipant.performRpc(params);
    return { response };
  },

  async setMetadata({ metadata }) {
    await requireRoom().localParticipant.setMetadata(metadata);
    return null;
  },

  async setName({ name }) {
    await requireRoom().localParticipant.setName(name);
    return null;
  },

  async setAttributes({ attributes }) {
    await requireRoom().localParticipant.setAttributes(attributes);
    return null;
  },

  async simulateScenario({ scenario, arg }) {
    await requireRoom().simulateScenario(scenario, arg);
    return null;
  },

  // Events recorded in the page (the driver also pushes each one as it happens).
  async events({ since }) {
    return state.events.filter((e) => e.seq > (since ?? 0));
  },

  // `js` is the body of an async function called with (lk, room, LK, args): return a
  // JSON-serialisable value.
  async eval({ js, args }) {
    const fn = new AsyncFunction('lk', 'room', 'LK', 'args', js);
    return jsonSafe(await fn(window.lk, state.room, LK, args ?? null));
  },
};

async function call(op, args) {
  const fn = ops[op];
  if (!fn) return { ok: false, error: { name: 'UnknownOp', message: `unknown op ${op}` } };
  try {
    const result = await fn(args ?? {});
    return { ok: true, result: result === undefined ? null : result };
  } catch (e) {
    return { ok: false, error: errorToJson(e) };
  }
}

window.LK = LK;
window.lk = {
  ready: true,
  version: LIVEKIT_CLIENT_VERSION,
  call,
  emit,
  state,
  get room() {
    return state.room;
  },
  get events() {
    return state.events;
  },
};
document.getElementById('status').textContent = `ready (livekit-client ${LIVEKIT_CLIENT_VERSION})`;
