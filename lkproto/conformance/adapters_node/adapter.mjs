// lkproto conformance adapter for @livekit/rtc-node: one Room driven by JSON lines.
//
// The protocol (requests on stdin, replies and events on stdout) is specified in
// lkproto/conformance/process_adapters.py; this file only maps each operation onto the SDK.
// Everything the SDK logs goes to stderr, stdout carries protocol lines only.
import { createInterface } from 'node:readline';

// The SDK logs with pino to stdout (fd 1); at NODE_ENV=production it logs from level info up
// instead of debug. The runner takes JSON lines without `id` or `event` as log lines.
process.env.NODE_ENV = 'production';
const {
  AudioFrame,
  AudioSource,
  AudioStream,
  ConnectError,
  ConnectionState,
  LocalAudioTrack,
  Room,
  RoomEvent,
  RpcError,
  SimulateScenarioKind,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  dispose,
} = await import('@livekit/rtc-node');

const SDK = '@livekit/rtc-node 1.1.0';
const SAMPLE_RATE = 48000;
const FRAME_SAMPLES = 480; // 10 ms
const LOUD_RMS = 0.01;

const SIMULATIONS = {
  signal_reconnect: SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT,
  full_reconnect: SimulateScenarioKind.SIMULATE_FULL_RECONNECT,
  node_failure: SimulateScenarioKind.SIMULATE_NODE_FAILURE,
  server_leave: SimulateScenarioKind.SIMULATE_SERVER_LEAVE,
};

class Refusal extends Error {
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    this.extra = extra;
  }
}

const send = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const unb64 = (text) => new Uint8Array(Buffer.from(text ?? '', 'base64'));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let room = null;
let tone = null;

function rms(samples) {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (const v of samples) sum += v * v;
  return Math.sqrt(sum / samples.length) / 32767;
}

function watchRoom(r) {
  r.on(RoomEvent.DataReceived, (payload, participant, kind, topic) => {
    send({
      event: 'data',
      payload_b64: b64(payload),
      sender: participant?.identity ?? null,
      topic: topic ?? '',
      // DataPacketKind: KIND_LOSSY = 0, KIND_RELIABLE = 1 (ffi room.proto)
      reliable: kind === undefined ? null : kind === 1,
    });
  });
  r.on(RoomEvent.ParticipantDisconnected, (p) => send({ event: 'left', identity: p.identity }));
  r.on(RoomEvent.Reconnected, () => send({ event: 'reconnected' }));
  r.on(RoomEvent.Reconnecting, () => send({ event: 'state', connected: false }));
  r.on(RoomEvent.Disconnected, (reason) => {
    send({ event: 'disconnected', reason: typeof reason === 'number' ? reason : null,
           detail: String(reason) });
  });
}

async function readStream(kind, topic, reader, info) {
  let bytes = new Uint8Array();
  let error = null;
  try {
    if (kind === 'text') {
      bytes = new TextEncoder().encode(await reader.readAll());
    } else {
      const chunks = await reader.readAll();
      bytes = Buffer.concat(chunks.map((c) => Buffer.from(c)));
    }
  } catch (e) {
    error = `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
  }
  send({
    event: 'stream', kind, topic, sender: info.identity, payload_b64: b64(bytes), error,
    attributes: reader.info?.attributes ?? {}, name: reader.info?.name ?? '',
  });
}

function needRoom() {
  if (room === null) throw new Error('not connected');
  return room;
}

const ops = {
  async connect({ url, token, single_pc }) {
    room = new Room();
    watchRoom(room);
    // single_peer_connection is a field of the FFI's RoomOptions (room.proto) that connect()
    // passes through; the TypeScript type of RoomOptions does not list it.
    const options = { autoSubscribe: true, dynacast: false };
    if (single_pc !== null && single_pc !== undefined) options.singlePeerConnection = single_pc;
    try {
      await room.connect(url, token, options);
    } catch (e) {
      if (e instanceof ConnectError) {
        const found = /\b(40[0-9]|50[0-9])\b/.exec(e.message);
        throw new Refusal('join_refused', e.message, { status: found ? Number(found[1]) : null });
      }
      throw e;
    }
    return null;
  },
  async disconnect() {
    if (tone) {
      tone.stop = true;
      tone = null;
    }
    if (room?.isConnected) await room.disconnect();
    return null;
  },
  async local_sid() {
    return needRoom().localParticipant.sid ?? '';
  },
  async remotes() {
    const out = [];
    for (const p of needRoom().remoteParticipants.values()) {
      const tracks = {};
      for (const [sid, pub] of p.trackPublications) tracks[sid] = Boolean(pub.muted);
      out.push({ identity: p.identity, sid: p.sid ?? '', name: p.name ?? '',
                 metadata: p.metadata ?? '', attributes: { ...p.attributes }, kind: p.kind ?? 0,
                 tracks });
    }
    return out;
  },
  async room_metadata() {
    return needRoom().metadata ?? '';
  },
  async rtt_ms() {
    throw new Refusal('unsupported', 'no public RTT accessor in @livekit/rtc-node');
  },
  async simulate({ kind }) {
    if (!(kind in SIMULATIONS)) throw new Refusal('unsupported', `cannot simulate ${kind}`);
    await needRoom().simulateScenario(SIMULATIONS[kind]);
    return null;
  },
  async publish_data({ payload_b64, reliable, topic, destinations }) {
    await needRoom().localParticipant.publishData(unb64(payload_b64), {
      reliable, topic: topic || undefined, destination_identities: destinations,
    });
    return null;
  },
  async watch({ kind, topic }) {
    const r = needRoom();
    const handler = (reader, info) => {
      readStream(kind, topic, reader, info);
    };
    if (kind === 'text') r.registerTextStreamHandler(topic, handler);
    else r.registerByteStreamHandler(topic, handler);
    return null;
  },
  async send_text({ text, topic, destinations, attributes }) {
    await needRoom().localParticipant.sendText(text, {
      topic,
      attributes,
      destinationIdentities: destinations.length ? destinations : undefined,
    });
    return null;
  },
  async send_bytes({ payload_b64, topic, name }) {
    const data = unb64(payload_b64);
    const writer = await needRoom().localParticipant.streamBytes({
      topic, name, totalSize: data.byteLength,
    });
    await writer.write(data);
    await writer.close();
    return null;
  },
  async perform_rpc({ destination, method, payload, timeout_s }) {
    try {
      return await needRoom().localParticipant.performRpc({
        destinationIdentity: destination, method, payload, responseTimeout: timeout_s * 1000,
      });
    } catch (e) {
      if (e instanceof RpcError) {
        throw new Refusal('rpc_error', e.message, { code: e.code, data: e.data ?? '' });
      }
      throw e;
    }
  },
  async register_rpc({ method, mode, code, message, data, delay_s }) {
    needRoom().localParticipant.registerRpcMethod(method, async (inv) => {
      send({ event: 'rpc', method, caller: inv.callerIdentity, payload: inv.payload });
      if (delay_s) await sleep(delay_s * 1000);
      if (mode === 'rpc_error') throw new RpcError(code, message, data || undefined);
      if (mode === 'throw') throw new Error(message || 'handler failed');
      return inv.payload;
    });
    return null;
  },
  async set_metadata({ value }) {
    await needRoom().localParticipant.updateMetadata(value);
    return null;
  },
  async set_name({ value }) {
    await needRoom().localParticipant.updateName(value);
    return null;
  },
  async set_attributes({ attributes }) {
    await needRoom().localParticipant.setAttributes(attributes);
    return null;
  },
  async publish_tone({ freq }) {
    const source = new AudioSource(SAMPLE_RATE, 1);
    const track = LocalAudioTrack.createAudioTrack('tone', source);
    const options = new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE });
    const pub = await needRoom().localParticipant.publishTrack(track, options);
    const state = { stop: false, track, pub };
    tone = state;
    (async () => {
      let n = 0;
      const step = (2 * Math.PI * freq) / SAMPLE_RATE;
      while (!state.stop) {
        const pcm = new Int16Array(FRAME_SAMPLES);
        for (let i = 0; i < FRAME_SAMPLES; i += 1) {
          pcm[i] = Math.trunc(0.3 * 32767 * Math.sin(step * (n + i)));
        }
        n += FRAME_SAMPLES;
        await source.captureFrame(new AudioFrame(pcm, SAMPLE_RATE, 1, FRAME_SAMPLES));
      }
    })().catch((e) => process.stderr.write(`tone feeder: ${e}\n`));
    return pub.sid ?? '';
  },
  async set_tone_muted() {
    // The FFI has LocalTrackMuteRequest, but @livekit/rtc-node 1.1.0 exposes no call for it
    // (LocalAudioTrack and LocalTrackPublication only read `muted`).
    throw new Refusal('unsupported', 'no API to mute a local track in @livekit/rtc-node 1.1.0');
  },
  async hear_tone({ identity, seconds }) {
    const r = needRoom();
    let track = null;
    while (track === null) {
      const p = r.remoteParticipants.get(identity);
      for (const pub of p?.trackPublications.values() ?? []) {
        if (pub.track && pub.kind === TrackKind.KIND_AUDIO) track = pub.track;
      }
      if (track === null) await sleep(50);
    }
    // From the first audible frame: 0.25 s of start-up plus `seconds` (trimmed by the runner).
    const need = Math.ceil((seconds + 0.25) * SAMPLE_RATE);
    const chunks = [];
    let got = 0;
    const stream = new AudioStream(track, SAMPLE_RATE, 1);
    const reader = stream.getReader();
    try {
      while (got < need) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        if (chunks.length === 0 && rms(frame.data) < LOUD_RMS) continue;
        chunks.push(Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength));
        got += frame.data.length;
      }
    } finally {
      reader.releaseLock();
      await stream.cancel().catch(() => {});
    }
    return { pcm_b64: Buffer.concat(chunks).toString('base64') };
  },
};

async function handle(msg) {
  const { id, op, ...args } = msg;
  if (op === 'exit') {
    await ops.disconnect().catch(() => {});
    await dispose().catch(() => {});
    process.exit(0);
  }
  const fn = ops[op];
  try {
    if (!fn) throw new Refusal('unsupported', `unknown operation ${op}`);
    const value = await fn(args);
    send({ id, ok: true, value: value ?? null });
  } catch (e) {
    const kind = e instanceof Refusal ? e.kind : 'error';
    const extra = e instanceof Refusal ? e.extra : {};
    send({ id, ok: false, kind, message: `${e?.message ?? e}`, ...extra });
  }
}

function stateLoop() {
  // The SDK's own connection state, reported on change (the runner reads it synchronously).
  let last = null;
  setInterval(() => {
    const now = room !== null && room.connectionState === ConnectionState.CONN_CONNECTED;
    if (now !== last) {
      last = now;
      send({ event: 'state', connected: now });
    }
  }, 50).unref();
}

console.log = (...a) => process.stderr.write(`${a.join(' ')}\n`);
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    process.stderr.write(`bad request line: ${line.slice(0, 200)}\n`);
    return;
  }
  handle(msg);
});
lines.on('close', async () => {
  await ops.disconnect().catch(() => {});
  await dispose().catch(() => {});
  process.exit(0);
});
stateLoop();
send({ event: 'ready', protocol: 1, sdk: SDK });
