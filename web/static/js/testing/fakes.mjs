// Fake browser objects for the Node tests of the page's modules
// (session.test.mjs, call.test.mjs): WebSocket, RTCPeerConnection,
// MediaStream and timers that the test drives. Never loaded by a page.
import assert from 'node:assert/strict';

export class FakeTrack {
  constructor(kind, id) {
    this.kind = kind;
    this.id = id;
    this.enabled = true;
  }
}

export class FakeStream {
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }
  getTracks() { return [...this.tracks]; }
  getAudioTracks() { return this.tracks.filter((t) => t.kind === 'audio'); }
  getVideoTracks() { return this.tracks.filter((t) => t.kind === 'video'); }
  addTrack(t) { this.tracks.push(t); }
  removeTrack(t) { this.tracks = this.tracks.filter((x) => x !== t); }
}

// Remote SDPs of the fake are "v=0" followed by "m=<mid> <kind>" lines.
export function fakeOffer(mids) {
  return ['v=0', ...Object.entries(mids).map(([mid, kind]) => `m=${mid} ${kind}`)].join('\r\n');
}

// A sender whose parameters hold the encodings it was created with; every
// setParameters is recorded.
export function fakeSender(track, encodings) {
  let params = { transactionId: '1', encodings: (encodings ?? [{}]).map((e) => ({ active: true, ...e })) };
  return {
    track,
    sets: [],
    async replaceTrack(x) { this.track = x; },
    getParameters() { return structuredClone(params); },
    async setParameters(p) {
      params = structuredClone(p);
      this.sets.push(structuredClone(p));
    },
  };
}

export class FakePC extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.transceivers = [];
    this.signalingState = 'stable';
    this.connectionState = 'new';
    this.iceConnectionState = 'new';
    this.localDescription = null;
    this.remoteDescription = null;
    this.candidates = [];
    this.offers = [];
    this.nextMid = 0;
  }
  addTransceiver(trackOrKind, init) {
    const kind = typeof trackOrKind === 'string' ? trackOrKind : trackOrKind.kind;
    const t = {
      mid: null,
      kind,
      direction: init.direction,
      streams: init.streams,
      codecs: null,
      sendEncodings: init.sendEncodings,
      sender: fakeSender(typeof trackOrKind === 'string' ? null : trackOrKind, init.sendEncodings),
      receiver: { track: null },
      setCodecPreferences(c) { this.codecs = c; },
    };
    this.transceivers.push(t);
    return t;
  }
  getTransceivers() { return this.transceivers; }
  getConfiguration() { return { ...this.config }; }
  setConfiguration(c) {
    if (c.bundlePolicy !== this.config.bundlePolicy) throw new Error('InvalidModificationError: bundlePolicy');
    this.config = c;
    (this.configs ??= []).push(c);
  }
  async createOffer(opts) {
    this.offers.push(opts ?? {});
    return { type: 'offer', sdp: `v=0\r\noffer ${this.offers.length}${opts?.iceRestart ? ' ice-restart' : ''}` };
  }
  async createAnswer() { return { type: 'answer', sdp: 'v=0\r\nanswer' }; }
  async setLocalDescription(d) {
    if (d.type === 'rollback') {
      this.signalingState = 'stable';
      return;
    }
    this.localDescription = d;
    if (d.type === 'offer') {
      for (const t of this.transceivers) if (t.mid === null) t.mid = String(this.nextMid++);
      this.signalingState = 'have-local-offer';
    } else {
      this.signalingState = 'stable';
    }
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    if (d.type === 'answer') {
      this.signalingState = 'stable';
      return;
    }
    for (const line of d.sdp.split('\r\n')) {
      const m = line.match(/^m=(\S+) (\S+)$/);
      if (!m || this.transceivers.some((t) => t.mid === m[1])) continue;
      this.transceivers.push({ mid: m[1], kind: m[2], direction: 'recvonly', receiver: { track: new FakeTrack(m[2], `remote-${m[1]}`) } });
    }
    this.signalingState = 'have-remote-offer';
  }
  async addIceCandidate(c) { this.candidates.push(c); }
  close() {
    this.signalingState = 'closed';
    this.closed = true;
  }
  setICE(state) {
    this.iceConnectionState = state;
    this.connectionState = state === 'completed' ? 'connected' : state;
    this.dispatchEvent(new Event('iceconnectionstatechange'));
  }
  candidate(c) {
    const e = new Event('icecandidate');
    e.candidate = c;
    this.dispatchEvent(e);
  }
}

export class FakeWS {
  constructor(url, world) {
    this.url = url;
    this.world = world;
    this.readyState = 0;
    this.sent = [];
    world.sockets.push(this);
  }
  send(text) {
    assert.equal(this.readyState, 1, 'send on a WebSocket that is not open');
    this.sent.push(JSON.parse(text));
  }
  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code: 1000 }));
  }
  // Test side.
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(m) { this.onmessage?.({ data: JSON.stringify({ v: 1, ...m }) }); }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
  ofType(type) { return this.sent.filter((m) => m.type === type); }
}

/** A fake browser: sockets, peer connections and a manual clock. */
export function world() {
  const w = { sockets: [], pcs: [], timers: [], now: 0, seq: 0 };
  w.env = {
    WebSocket: class extends FakeWS { constructor(url) { super(url, w); } },
    RTCPeerConnection: class extends FakePC { constructor(c) { super(c); w.pcs.push(this); } },
    MediaStream: FakeStream,
    setTimeout: (fn, ms) => {
      const id = ++w.seq;
      w.timers.push({ id, at: w.now + ms, fn });
      return id;
    },
    clearTimeout: (id) => { w.timers = w.timers.filter((t) => t.id !== id); },
    videoCodecs: () => [{ mimeType: 'video/H264' }, { mimeType: 'video/VP9' }, { mimeType: 'video/VP8' }, { mimeType: 'video/rtx' }],
  };
  w.advance = async (ms) => {
    const end = w.now + ms;
    for (;;) {
      w.timers.sort((a, b) => a.at - b.at);
      const t = w.timers[0];
      if (!t || t.at > end) break;
      w.timers.shift();
      w.now = t.at;
      t.fn();
      await flush();
    }
    w.now = end;
  };
  w.ws = () => w.sockets[w.sockets.length - 1];
  return w;
}

export async function flush() {
  for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r));
}
