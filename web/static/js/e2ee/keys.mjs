// Sender keys: KID layout, ratchet, chat key, and the receivers' KeyRing.
// See docs/e2ee.md, "Sender key schedule".
import { randomBytes, utf8 } from './bytes.mjs';
import { hkdf, SFrameKey } from './sframe.mjs';

export const KEY_LEN = 32;
export const LABEL_RATCHET = 'Conclave E2EE v1 ratchet';
export const LABEL_CHAT = 'Conclave E2EE v1 chat';
export const MAX_RATCHET_AHEAD = 16;
export const DEFAULT_RETENTION_MS = 5000;
const MAX_RING_ENTRIES = 8;

export class UnknownKeyError extends Error {
  constructor() { super('e2ee: no key for this KID'); this.name = 'UnknownKeyError'; }
}

// A sender key is a plain object {index, generation, step, key}:
// index u16 (from the announcement), generation u8 (fresh keys), step u8
// (ratchet steps within a generation), key 32 bytes.

// kidOf returns index<<16 | generation<<8 | step.
export function kidOf(k) { return k.index * 65536 + k.generation * 256 + k.step; }

// splitKid inverts kidOf; null for a KID above 32 bits.
export function splitKid(kid) {
  kid = BigInt(kid);
  if (kid >> 32n) return null;
  const n = Number(kid);
  return { index: n >>> 16, generation: (n >>> 8) & 0xff, step: n & 0xff };
}

export function newSenderKey(index, generation = 0) {
  return { index, generation, step: 0, key: randomBytes(KEY_LEN) };
}

// ratchet: key' = HKDF-SHA-256(ikm = key, salt = "", info = "Conclave E2EE
// v1 ratchet", 32); step + 1. Fails at step 255 (rotate instead).
export async function ratchet(k) {
  if (k.step === 255) throw new Error('e2ee: ratchet step 255 is the last; rotate the key');
  const key = await hkdf('SHA-256', k.key, new Uint8Array(0), utf8(LABEL_RATCHET), KEY_LEN);
  return { index: k.index, generation: k.generation, step: k.step + 1, key };
}

// chatKey: HKDF-SHA-256(ikm = key, salt = "", info = "Conclave E2EE v1 chat", 32).
export async function chatKey(k) {
  return hkdf('SHA-256', k.key, new Uint8Array(0), utf8(LABEL_CHAT), KEY_LEN);
}

// KeyRing holds the key versions a receiver knows for one sender. A key
// stays until a key added after it has authenticated something, then for
// the retention time; at most 8 are kept.
export class KeyRing {
  constructor(senderIndex, { retentionMs = DEFAULT_RETENTION_MS, now = () => Date.now() } = {}) {
    this.index = senderIndex;
    this.retentionMs = retentionMs;
    this.now = now;
    this.entries = []; // {key, sf, expires (0 = none)} in the order added
  }

  async add(k) {
    if (k.index !== this.index) throw new Error(`e2ee: key for sender ${k.index} given to the ring of sender ${this.index}`);
    const sf = await SFrameKey.derive(k.key, kidOf(k));
    this.purge();
    this.entries = this.entries.filter((e) => !(e.key.generation === k.generation && e.key.step === k.step));
    this.insert({ key: k, sf, expires: 0 });
  }

  insert(e) {
    if (this.entries.length >= MAX_RING_ENTRIES) this.entries.shift();
    this.entries.push(e);
  }

  purge() {
    const now = this.now();
    this.entries = this.entries.filter((e) => e.expires === 0 || now < e.expires);
  }

  // lookup returns {entry, derived} for (generation, step), deriving by
  // ratchet from the newest lower step of that generation if needed.
  async lookup(generation, step) {
    this.purge();
    let base = null;
    for (const c of this.entries) {
      if (c.key.generation !== generation) continue;
      if (c.key.step === step) return { entry: c, derived: false };
      if (c.key.step < step && (!base || c.key.step > base.key.step)) base = c;
    }
    if (!base || step - base.key.step > MAX_RATCHET_AHEAD) throw new UnknownKeyError();
    let k = base.key;
    while (k.step < step) k = await ratchet(k);
    return { entry: { key: k, sf: await SFrameKey.derive(k.key, kidOf(k)), expires: 0 }, derived: true };
  }

  // used records that entry authenticated a message.
  used(entry, derived) {
    if (derived) {
      const same = this.entries.find((e) => e.key.generation === entry.key.generation && e.key.step === entry.key.step);
      if (same) entry = same; else this.insert(entry);
    }
    const deadline = this.now() + this.retentionMs;
    for (const c of this.entries) {
      if (c === entry) return;
      if (c.expires === 0) c.expires = deadline;
    }
  }

  // awaits: whether a frame of this generation may yet get its key from a
  // key message: no key of it is held, and it is newer than every
  // generation held (modulo 256, up to 127 ahead), or none is held. An
  // older generation (its key expired), or a step too far ahead of a held
  // generation, never will. As KeyRing.Awaits in Go.
  awaits(generation) {
    this.purge();
    return this.entries.every((e) => {
      const d = (generation - e.key.generation) & 0xff;
      return d !== 0 && d < 128;
    });
  }

  get size() { this.purge(); return this.entries.length; }
}
