// The page's side of media encryption: starts the worker (worker.mjs),
// puts a transform on every RTCRtpSender and RTCRtpReceiver, tells the
// worker which participant each incoming track belongs to, and passes it
// the keys. RTCRtpScriptTransform is used where it works; otherwise the
// legacy createEncodedStreams() (which needs `encodedInsertableStreams:
// true` in the peer connection configuration, see peerConfig).
//
// Events: 'missing-key' {participant}: that participant's frames arrive
// without a key we hold; ask it again (MeetingCrypto.requestKey).
// 'key' {participant}: a sender key of that participant was handed to the
// worker. 'decrypted' {participant, kind}: the first frame of a kind from
// that participant was decrypted (once per participant and kind). The last
// two time the join (jointimeline.mjs).

/** How frames reach the worker. */
export const MODES = Object.freeze({ script: 'script-transform', streams: 'encoded-streams', none: 'none' });

const WORKER_URL = new URL('./worker.mjs', import.meta.url);

/**
 * Which transform API this browser offers: RTCRtpScriptTransform when it
 * can be constructed, else createEncodedStreams, else none.
 * @param {Worker} worker
 * @param {string} [prefer] a MODES value to use when available (tests)
 * @returns {string}
 */
export function detectMode(worker, prefer = '') {
  const g = globalThis;
  const streams = typeof g.RTCRtpSender?.prototype?.createEncodedStreams === 'function';
  if (prefer === MODES.streams && streams) return MODES.streams;
  if (typeof g.RTCRtpScriptTransform === 'function') {
    try {
      new g.RTCRtpScriptTransform(worker, { id: 'probe', role: 'probe', kind: 'video' });
      return MODES.script;
    } catch { /* fall back */ }
  }
  return streams ? MODES.streams : MODES.none;
}

/** Media encryption for one page: one worker, transforms on every track. */
export class FrameEncryption extends EventTarget {
  /**
   * @param {object} [opts]
   * @param {string} [opts.prefer] force a MODES value when the browser has it
   */
  constructor({ prefer = '' } = {}) {
    super();
    this.worker = new Worker(WORKER_URL, { type: 'module', name: 'conclave-e2ee' });
    this.worker.addEventListener('message', (e) => {
      if (e.data?.op === 'missing-key') this.dispatchEvent(new CustomEvent('missing-key', { detail: { participant: e.data.participant } }));
      if (e.data?.op === 'decrypted') this.dispatchEvent(new CustomEvent('decrypted', { detail: { participant: e.data.participant, kind: e.data.kind } }));
    });
    this.worker.addEventListener('error', () => {
      this.failed = true;
      this.dispatchEvent(new CustomEvent('failed', { detail: { message: 'The media encryption worker failed to start.' } }));
    });
    this.mode = detectMode(this.worker, prefer);
    this.failed = false;
    this.seq = 0;
    /** @type {WeakMap<object, string>} sender or receiver -> transform id */
    this.ids = new WeakMap();
    /** @type {WeakMap<object, string>} receiver -> participant mapped */
    this.mapped = new WeakMap();
  }

  /** Whether frames can be encrypted at all in this browser. */
  get available() { return this.mode !== MODES.none && !this.failed; }

  /**
   * Extra RTCConfiguration fields for every peer connection.
   * @returns {object}
   */
  peerConfig() {
    return this.mode === MODES.streams ? { encodedInsertableStreams: true } : {};
  }

  /**
   * Encrypts what a sender sends. Call once per sender, before it sends.
   * @param {RTCRtpSender} sender
   * @param {'audio'|'video'} kind
   */
  attachSender(sender, kind) {
    this.#attach(sender, 'send', kind);
  }

  /**
   * Decrypts what a receiver receives. Call as soon as the receiver exists.
   * @param {RTCRtpReceiver} receiver
   * @param {'audio'|'video'} kind
   */
  attachReceiver(receiver, kind) {
    this.#attach(receiver, 'recv', kind);
  }

  /**
   * Says whose frames a receiver carries (from subscribe-offer's tracks);
   * '' for nobody (its frames are dropped).
   * @param {RTCRtpReceiver} receiver
   * @param {string} participant
   */
  mapReceiver(receiver, participant) {
    const id = this.ids.get(receiver);
    if (!id || this.mapped.get(receiver) === participant) return;
    this.mapped.set(receiver, participant);
    this.worker.postMessage({ op: 'map', id, participant });
  }

  /** @param {{index: number, generation: number, step: number, key: Uint8Array}} key */
  setSendKey(key) { this.worker.postMessage({ op: 'send-key', key }); }

  /**
   * @param {string} participant
   * @param {number} index its announced sender index
   */
  setReceiver(participant, index) { this.worker.postMessage({ op: 'receiver', participant, index }); }

  /**
   * @param {string} participant
   * @param {{index: number, generation: number, step: number, key: Uint8Array}} key
   */
  addKey(participant, key) {
    this.worker.postMessage({ op: 'key', participant, key });
    this.dispatchEvent(new CustomEvent('key', { detail: { participant } }));
  }

  /** @param {string} participant */
  removeParticipant(participant) { this.worker.postMessage({ op: 'remove', participant }); }

  /** Forgets every key (a new meeting). */
  reset() { this.worker.postMessage({ op: 'reset' }); }

  #attach(target, role, kind) {
    if (!target || this.ids.has(target) || !this.available) return;
    const id = `${role}-${++this.seq}`;
    const opts = { id, role, kind };
    if (this.mode === MODES.script) {
      try {
        target.transform = new globalThis.RTCRtpScriptTransform(this.worker, opts);
        this.ids.set(target, id);
        return;
      } catch {
        // Should not happen after detectMode; without encodedInsertableStreams
        // the legacy API cannot take over for this peer connection.
        this.failed = true;
        this.dispatchEvent(new CustomEvent('failed', { detail: { message: 'Media encryption could not be set up.' } }));
        return;
      }
    }
    const { readable, writable } = target.createEncodedStreams();
    this.ids.set(target, id);
    this.worker.postMessage({ op: 'stream', ...opts, readable, writable }, [readable, writable]);
  }
}
