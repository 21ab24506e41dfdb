// What the media worker does to each encoded frame, without the worker:
// one Sender for the local participant's outgoing tracks, one Receiver per
// remote participant for its incoming tracks (docs/e2ee.md, section 5).
// worker.mjs wires it to RTCRtpScriptTransform / createEncodedStreams;
// tests drive it directly.

import { Receiver, Sender, codecFromMimeType } from './media.mjs';
import { UnknownKeyError } from './keys.mjs';

/** A receiver that lacks a key this long asks the participant again. */
export const MISSING_KEY_MS = 1500;
/** ... and not more often than this. */
export const MISSING_KEY_REPEAT_MS = 3000;
/**
 * How long frames of a key generation newer than any a receiver holds wait
 * for the sender's key message, counted from the first such frame: a
 * sender switches to a rotated key SWITCH_DELAY_MS after sending it, and its
 * first frames may overtake the key message (docs/e2ee.md, section 6).
 */
export const KEY_WAIT_MS = 500;
/** How many key generations per sender report() remembers. */
const GENERATIONS_KEPT = 8;

/** Why a frame was dropped. */
export const DROP = Object.freeze({
  noKey: 'no-key', // no sender key yet (outgoing) or no key for the KID (incoming)
  unknown: 'unknown-sender', // an incoming track not (yet) mapped to a verified participant
  auth: 'auth', // authentication failed, or the frame is malformed
  empty: 'empty',
});

/**
 * The codec of a frame: from its metadata's mimeType (Chromium gives it on
 * every encoded frame), else the codec the transform was set up with.
 * @param {{mimeType?: string}|null} metadata
 * @param {string} kind 'audio' or 'video'
 * @param {string} [fallback] a mimeType or codec name
 * @returns {string} opus, vp8, vp9, h264
 */
export function frameCodec(metadata, kind, fallback = '') {
  const mime = metadata?.mimeType || fallback;
  if (mime) {
    try {
      return codecFromMimeType(mime.includes('/') ? mime : `${kind}/${mime}`);
    } catch { /* unsupported: decided below */ }
  }
  return kind === 'audio' ? 'opus' : 'vp8';
}

/** Encrypts outgoing and decrypts incoming frames with the current keys. */
export class FrameCryptor {
  /**
   * @param {object} [opts]
   * @param {() => number} [opts.now] milliseconds
   * @param {number} [opts.retentionMs] how long receivers keep superseded keys
   * @param {number} [opts.keyWaitMs] KEY_WAIT_MS; 0: frames without a key are dropped at once
   * @param {(fn: () => void, ms: number) => any} [opts.setTimeout]
   * @param {(id: any) => void} [opts.clearTimeout]
   */
  constructor({
    now = () => Date.now(), retentionMs, keyWaitMs = KEY_WAIT_MS,
    setTimeout = (fn, ms) => globalThis.setTimeout(fn, ms), clearTimeout = (id) => globalThis.clearTimeout(id),
  } = {}) {
    this.now = now;
    this.retentionMs = retentionMs;
    this.keyWaitMs = keyWaitMs;
    this.setTimeout = setTimeout;
    this.clearTimeout = clearTimeout;
    /** @type {Sender|null} */
    this.sender = null;
    /** @type {Map<string, {receiver: Receiver, index: number, missingSince: number, reported: number, waiting: boolean, waitUntil: number, waiters: Set<() => void>}>} */
    this.receivers = new Map();
    this.stats = { encrypted: 0, decrypted: 0, dropped: 0 };
    /** @type {Map<number, number>} generation -> when this worker started encrypting with it */
    this.sendingSince = new Map();
    this.keyOps = Promise.resolve();
  }

  /** Forgets every key (a new meeting). */
  reset() {
    this.sender = null;
    this.receivers = new Map();
    this.sendingSince = new Map();
  }

  /**
   * Uses sender key k for outgoing frames from now on.
   * @param {{index: number, generation: number, step: number, key: Uint8Array}} k
   */
  setSendKey(k) {
    return this.#serial(async () => {
      if (!this.sender) {
        this.sender = await Sender.create(k.index, k);
      } else {
        const c = this.sender.key;
        if (c.index === k.index && c.generation === k.generation && c.step === k.step) return;
        await this.sender.setKey(k);
      }
      if (!this.sendingSince.has(k.generation)) {
        this.sendingSince.set(k.generation, this.now());
        if (this.sendingSince.size > GENERATIONS_KEPT) this.sendingSince.delete(this.sendingSince.keys().next().value);
      }
    });
  }

  // Key changes take effect in the order they were made.
  #serial(task) {
    const run = this.keyOps.then(task);
    this.keyOps = run.catch(() => {});
    return run;
  }

  /**
   * Declares (or re-declares) a remote participant and its sender index.
   * @param {string} participant
   * @param {number} index
   */
  setReceiver(participant, index) {
    const r = this.receivers.get(participant);
    if (r && r.index === index) return;
    const opts = { now: this.now };
    if (this.retentionMs !== undefined) opts.retentionMs = this.retentionMs;
    // waiting: frames may have been dropped before it was known; its first key asks for a key frame.
    this.receivers.set(participant, {
      receiver: new Receiver(index, opts), index, missingSince: 0, reported: 0, waiting: true,
      waitUntil: 0, waiters: new Set(), counts: { decrypted: 0, noKey: 0, auth: 0 }, firstDecrypt: new Map(),
    });
  }

  /**
   * Adds a sender key of a participant.
   * @param {string} participant
   * @param {{index: number, generation: number, step: number, key: Uint8Array}} k
   * @returns {Promise<boolean>} true when frames of this participant were
   *   dropped for lack of a key since its last key: time for a key frame
   */
  addKey(participant, k) {
    return this.#serial(async () => {
      const r = this.receivers.get(participant);
      if (!r || r.index !== k.index) return false;
      await r.receiver.addKey(k);
      r.waitUntil = 0;
      for (const wake of r.waiters) wake();
      r.waiters.clear();
      const wanted = r.waiting;
      r.waiting = false;
      r.missingSince = 0;
      return wanted;
    });
  }

  /** @param {string} participant */
  removeParticipant(participant) {
    this.receivers.delete(participant);
  }

  /**
   * Encrypts an outgoing frame.
   * @param {string} codec
   * @param {Uint8Array} data
   * @returns {Promise<Uint8Array|string>} the encrypted frame, or why it is dropped (DROP)
   */
  async encrypt(codec, data) {
    if (!this.sender) return this.#drop(DROP.noKey);
    if (data.length === 0) return this.#drop(DROP.empty);
    try {
      const out = await this.sender.encryptFrame(codec, data);
      this.stats.encrypted++;
      return out;
    } catch {
      return this.#drop(DROP.auth);
    }
  }

  /**
   * Decrypts an incoming frame of a participant.
   * @param {string|null} participant
   * @param {string} codec
   * @param {Uint8Array} data
   * @returns {Promise<Uint8Array|string>} the frame, or why it is dropped (DROP)
   */
  async decrypt(participant, codec, data) {
    const r = participant ? this.receivers.get(participant) : null;
    if (!r) return this.#drop(DROP.unknown);
    if (data.length === 0) return this.#drop(DROP.empty);
    try {
      let out;
      try {
        out = await r.receiver.decryptFrame(codec, data);
      } catch (err) {
        if (!(err instanceof UnknownKeyError) || !(await this.#awaitKey(r, r.receiver.generationOf(codec, data)))) throw err;
        out = await r.receiver.decryptFrame(codec, data);
      }
      r.missingSince = 0;
      this.stats.decrypted++;
      r.counts.decrypted++;
      this.#noteGeneration(r, r.receiver.lastKey.generation);
      return out;
    } catch (err) {
      if (err instanceof UnknownKeyError) {
        r.waiting = true;
        if (!r.missingSince) r.missingSince = this.now();
        r.counts.noKey++;
        return this.#drop(DROP.noKey);
      }
      r.counts.auth++;
      return this.#drop(DROP.auth);
    }
  }

  // Holds a frame of r whose key generation r does not hold but may yet
  // get (KeyRing.awaits: a newer one) until a key message of r comes, or
  // until the wait ends: keyWaitMs after the first frame that began to
  // wait since r's last key. Later frames wait no longer than that first
  // one, and once the wait has ended none waits again until a key comes,
  // so a key that never comes stalls a track once. Resolves to whether a
  // key came (the frame is worth trying again). The same rule as the
  // native client's (internal/client/secure, awaitKey).
  async #awaitKey(r, generation) {
    const ring = r.receiver.ring;
    if (generation === null || this.keyWaitMs <= 0 || !ring.awaits(generation)) return false;
    while (ring.awaits(generation)) {
      const now = this.now();
      if (!r.waitUntil) r.waitUntil = now + this.keyWaitMs;
      const left = r.waitUntil - now;
      if (left <= 0) return false;
      const woken = await new Promise((resolve) => {
        const wake = () => { this.clearTimeout(timer); resolve(true); };
        const timer = this.setTimeout(() => { r.waiters.delete(wake); resolve(false); }, left);
        r.waiters.add(wake);
      });
      if (!woken) return !ring.awaits(generation);
    }
    return true;
  }

  /**
   * The participants whose frames have lacked a key for a while and who
   * were not asked recently: the caller asks them for their key. Marks
   * them as asked.
   * @returns {string[]}
   */
  missingKeys() {
    const now = this.now();
    const out = [];
    for (const [p, r] of this.receivers) {
      if (!r.missingSince || now - r.missingSince < MISSING_KEY_MS || now - r.reported < MISSING_KEY_REPEAT_MS) continue;
      r.reported = now;
      out.push(p);
    }
    return out;
  }

  // Remembers when the first frame of a key generation was decrypted (the
  // last GENERATIONS_KEPT generations).
  #noteGeneration(r, generation) {
    if (r.firstDecrypt.has(generation)) return;
    r.firstDecrypt.set(generation, this.now());
    if (r.firstDecrypt.size > GENERATIONS_KEPT) r.firstDecrypt.delete(r.firstDecrypt.keys().next().value);
  }

  /**
   * What happened to each remote participant's frames: counts, the key
   * version of the last frame decrypted, and when the first frame of each
   * recent key generation was decrypted (milliseconds of `now`); and when
   * this participant started encrypting with each recent generation of its
   * own. No key material.
   * @returns {{totals: {encrypted: number, decrypted: number, dropped: number},
   *   sendingSince: Object<number, number>,
   *   participants: Object<string, {index: number, decrypted: number, noKey: number, auth: number,
   *     last: {generation: number, step: number}|null, firstDecrypt: Object<number, number>}>}}
   */
  report() {
    const participants = {};
    for (const [p, r] of this.receivers) {
      participants[p] = {
        index: r.index, ...r.counts, last: r.receiver.lastKey ? { ...r.receiver.lastKey } : null,
        firstDecrypt: Object.fromEntries(r.firstDecrypt),
      };
    }
    return { totals: { ...this.stats }, sendingSince: Object.fromEntries(this.sendingSince), participants };
  }

  #drop(why) {
    this.stats.dropped++;
    return why;
  }
}
