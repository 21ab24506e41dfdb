// The E2EE transparency log (docs/e2ee.md, section 13), as the browser
// checks it: RFC 6962 hashes and the inclusion and consistency proofs of
// golang.org/x/mod/sumdb/tlog, C2SP checkpoints in signed notes with
// ECDSA P-256 (signed-note type 0x02), and the LogMonitor that keeps the
// trusted checkpoint, scans every record, and reports new devices of the
// own account and split views. The Go twin is internal/e2ee/log.go and
// internal/client/secure/logmonitor.go. No DOM: storage and HTTP are
// injected.

import { MalformedError, concat, equal, fromBase64, toBase64, toHex, utf8 } from './bytes.mjs';
import { parseCredential, verify as verifyP1363, verifyRevocation } from './identity.mjs';

const subtle = globalThis.crypto.subtle;
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };
const ALG_ECDSA = 2;
const ORIGIN_PREFIX = 'e2ee-log.conclave/';
/** Bytes of a signed checkpoint at most. */
export const MAX_CHECKPOINT_LEN = 1024;
/** How long after its first credential a device carries a "new device" warning. */
export const NEW_DEVICE_AGE_MS = 24 * 3600 * 1000;
// DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point.
const SPKI_P256_PREFIX = Uint8Array.from([0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
  0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00]);

/** A split view: two checkpoints of one log that cannot both be true. */
export class SplitViewError extends Error {
  constructor(why) { super(`e2ee: split view of the log: ${why}`); this.name = 'SplitViewError'; }
}

const sha256 = async (b) => new Uint8Array(await subtle.digest('SHA-256', b));

/** Leaf hash of a record: SHA-256(0x00 || record). */
export function recordHash(record) { return sha256(concat(Uint8Array.of(0), record)); }
/** Node hash: SHA-256(0x01 || left || right). */
export function nodeHash(l, r) { return sha256(concat(Uint8Array.of(1), l, r)); }

function maxpow2(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

async function runRecordProof(p, lo, hi, n, leaf) {
  if (lo + 1 === hi) {
    if (p.length !== 0) throw new MalformedError('inclusion proof');
    return leaf;
  }
  if (p.length === 0) throw new MalformedError('inclusion proof');
  const k = maxpow2(hi - lo);
  const last = p[p.length - 1];
  if (n < lo + k) return nodeHash(await runRecordProof(p.slice(0, -1), lo, lo + k, n, leaf), last);
  return nodeHash(last, await runRecordProof(p.slice(0, -1), lo + k, hi, n, leaf));
}

/**
 * Checks that record n of the tree (size, root) has leaf hash leaf.
 * @returns {Promise<boolean>}
 */
export async function checkRecord(proof, size, root, n, leaf) {
  if (!(n >= 0 && n < size)) return false;
  try {
    return equal(await runRecordProof(proof, 0, size, n, leaf), root);
  } catch {
    return false;
  }
}

async function runTreeProof(p, lo, hi, n, old) {
  if (n === hi) {
    if (lo === 0) {
      if (p.length !== 0) throw new MalformedError('consistency proof');
      return [old, old];
    }
    if (p.length !== 1) throw new MalformedError('consistency proof');
    return [p[0], p[0]];
  }
  if (p.length === 0) throw new MalformedError('consistency proof');
  const k = maxpow2(hi - lo);
  const last = p[p.length - 1];
  if (n <= lo + k) {
    const [oh, th] = await runTreeProof(p.slice(0, -1), lo, lo + k, n, old);
    return [oh, await nodeHash(th, last)];
  }
  const [oh, th] = await runTreeProof(p.slice(0, -1), lo + k, hi, n, old);
  return [await nodeHash(last, oh), await nodeHash(last, th)];
}

/**
 * Checks that the tree (size t, root th) extends the tree (n, h).
 * @returns {Promise<boolean>}
 */
export async function checkTree(proof, t, th, n, h) {
  if (!(t >= 1 && n >= 1 && n <= t)) return false;
  try {
    const [h2, th2] = await runTreeProof(proof, 0, t, n, h);
    return equal(h2, h) && equal(th2, th);
  } catch {
    return false;
  }
}

/**
 * @typedef {object} LogVerifier
 * @property {string} name the origin (key name)
 * @property {number} keyId
 * @property {CryptoKey} key ECDSA P-256 verify key
 */

/**
 * Parses a pinned verifier key "<origin>+<key ID hex>+base64(0x02 || SPKI)".
 * @param {string} vkey
 * @returns {Promise<LogVerifier>}
 */
export async function logVerifier(vkey) {
  const str = String(vkey);
  const i = str.indexOf('+');
  const j = i < 0 ? -1 : str.indexOf('+', i + 1);
  if (j < 0) throw new MalformedError('log verifier key');
  const parts = [str.slice(0, i), str.slice(i + 1, j), str.slice(j + 1)];
  let raw;
  try {
    raw = fromBase64(parts[2]);
  } catch {
    throw new MalformedError('log verifier key');
  }
  const spki = raw.subarray(1);
  if (raw[0] !== ALG_ECDSA || spki.length !== 91 || !equal(spki.subarray(0, 26), SPKI_P256_PREFIX)) {
    throw new MalformedError('log verifier key is not ECDSA P-256 (signed-note type 0x02)');
  }
  const h = await sha256(spki);
  const keyId = new DataView(h.buffer).getUint32(0);
  const origin = ORIGIN_PREFIX + toHex(h.subarray(0, 8));
  if (parts[0] !== origin || parts[1] !== keyId.toString(16).padStart(8, '0')) {
    throw new MalformedError('log verifier key name or ID does not match its key');
  }
  let key;
  try {
    key = await subtle.importKey('spki', spki, ECDSA, true, ['verify']);
  } catch {
    throw new MalformedError('log verifier key not on the curve');
  }
  return { name: origin, keyId, key };
}

// derToP1363 converts an ASN.1 DER ECDSA signature (SEQUENCE of two
// INTEGERs) to r || s, 32 bytes each; null if it is not one.
function derToP1363(der) {
  let o = 0;
  const byte = () => (o < der.length ? der[o++] : -1);
  if (byte() !== 0x30) return null;
  const len = byte();
  if (len < 0 || len > 0x7f || len !== der.length - 2) return null;
  const int = () => {
    if (byte() !== 0x02) return null;
    const n = byte();
    if (n < 1 || n > 33 || o + n > der.length) return null;
    let v = der.subarray(o, o + n);
    o += n;
    if (v[0] & 0x80) return null; // negative
    if (v.length > 1 && v[0] === 0 && !(v[1] & 0x80)) return null; // not minimal
    if (v[0] === 0) v = v.subarray(1);
    if (v.length > 32) return null;
    const out = new Uint8Array(32);
    out.set(v, 32 - v.length);
    return out;
  };
  const r = int();
  const s = int();
  if (!r || !s || o !== der.length) return null;
  return concat(r, s);
}

/**
 * @typedef {object} Checkpoint
 * @property {string} origin
 * @property {number} size
 * @property {Uint8Array} hash root hash
 * @property {string} note the signed note
 */

const sameCheckpoint = (a, b) => !!a && !!b && a.origin === b.origin && a.size === b.size && equal(a.hash, b.hash);

/**
 * Verifies a signed checkpoint with the pinned verifier and parses it (as
 * Go's e2ee.OpenCheckpoint: the first signature line of the known key
 * decides; extension lines are ignored).
 * @param {string} note
 * @param {LogVerifier} v
 * @returns {Promise<Checkpoint>}
 */
export async function openCheckpoint(note, v) {
  note = String(note);
  if (utf8(note).length > MAX_CHECKPOINT_LEN) throw new MalformedError('checkpoint too long');
  const cut = note.lastIndexOf('\n\n');
  if (cut < 0 || !note.endsWith('\n')) throw new MalformedError('signed note');
  const text = note.slice(0, cut + 1);
  const lines = note.slice(cut + 2, -1).split('\n');
  let verified = false;
  for (const line of lines) {
    if (!line.startsWith('\u2014 ')) throw new MalformedError('signed note signature line');
    const [name, b64, extra] = line.slice(2).split(' ');
    if (!name || !b64 || extra !== undefined) throw new MalformedError('signed note signature line');
    let sig;
    try {
      sig = fromBase64(b64);
    } catch {
      throw new MalformedError('signed note signature');
    }
    if (sig.length < 5 || name !== v.name || new DataView(sig.buffer, sig.byteOffset).getUint32(0) !== v.keyId) continue;
    const p1363 = derToP1363(sig.subarray(4));
    if (!p1363 || !(await subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, v.key, p1363, utf8(text)))) {
      throw new Error('e2ee: checkpoint signature does not verify');
    }
    verified = true;
    break;
  }
  if (!verified) throw new Error('e2ee: checkpoint not signed by the pinned log key');
  const t = text.split('\n');
  if (t.length < 4 || t[0] !== v.name) throw new MalformedError('checkpoint of another log or not one');
  if (!/^(0|[1-9][0-9]*)$/.test(t[1]) || Number(t[1]) > Number.MAX_SAFE_INTEGER) throw new MalformedError('checkpoint size');
  let hash;
  try {
    hash = fromBase64(t[2]);
  } catch {
    throw new MalformedError('checkpoint root hash');
  }
  if (hash.length !== 32) throw new MalformedError('checkpoint root hash');
  return { origin: t[0], size: Number(t[1]), hash, note };
}

/** Reads a checkpoint's head without a key (members that pinned no log key still compare heads). */
export function parseCheckpointUnverified(note) {
  note = String(note);
  const cut = note.indexOf('\n\n');
  const t = note.slice(0, cut).split('\n');
  if (cut < 0 || t.length < 3 || !/^(0|[1-9][0-9]*)$/.test(t[1])) throw new MalformedError('checkpoint');
  const hash = fromBase64(t[2]);
  if (hash.length !== 32) throw new MalformedError('checkpoint');
  return { origin: t[0], size: Number(t[1]), hash, note };
}

/**
 * Checks that newer extends older (either order); throws SplitViewError
 * when it does not.
 */
export async function verifyConsistency(older, newer, proof) {
  if (older.origin !== newer.origin) throw new MalformedError('checkpoints of two logs');
  if (older.size > newer.size) return verifyConsistency(newer, older, proof);
  if (older.size === newer.size) {
    if (!equal(older.hash, newer.hash)) throw new SplitViewError(`two trees of ${older.size} records`);
    return;
  }
  if (older.size === 0) return;
  if (!(await checkTree(proof, newer.size, newer.hash, older.size, older.hash))) {
    throw new SplitViewError(`the tree of ${newer.size} records does not extend the tree of ${older.size}`);
  }
}

const RECORD_CREDENTIAL = 'CCRD';
const RECORD_REVOCATION = 'CREV';
const tagOf = (rec) => String.fromCharCode(...rec.subarray(0, 4));

/**
 * @typedef {object} LogAPI
 * @property {(from: number, to: number, records: Uint8Array[]) => Promise<{checkpoint: string, size: number, consistency: Uint8Array[], inclusion: {index: number, proof: Uint8Array[]}[]}>} prove
 * @property {(start: number, size: number) => Promise<{record: Uint8Array, proof: Uint8Array[]}[]>} entries
 */

/**
 * The LogAPI of the server the page came from (fetch is injected for tests).
 * @param {typeof fetch} [fetchFn]
 * @returns {LogAPI}
 */
export function httpLog(fetchFn = globalThis.fetch, base = '') {
  const json = async (res) => {
    if (!res.ok) throw new Error(`the identity log answered ${res.status}`);
    return res.json();
  };
  const hashes = (list) => (Array.isArray(list) ? list : []).map((s) => {
    const h = fromBase64(String(s));
    if (h.length !== 32) throw new MalformedError('log hash');
    return h;
  });
  return {
    async prove(from, to, records) {
      const res = await fetchFn(`${base}/api/e2ee/log/prove`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ from, to, records: records.map(toBase64) }) });
      const out = await json(res);
      return { checkpoint: String(out.checkpoint ?? ''), size: Number(out.size), consistency: hashes(out.consistency),
        inclusion: (out.inclusion ?? []).map((x) => ({ index: Number(x.index), proof: hashes(x.proof) })) };
    },
    async entries(start, size) {
      const out = await json(await fetchFn(`${base}/api/e2ee/log/entries?start=${start}&size=${size}`));
      return (out.entries ?? []).map((e) => ({ record: fromBase64(String(e.record)), proof: hashes(e.proof) }));
    },
  };
}

/**
 * The browser's view of the log: the trusted checkpoint (each new one only
 * after a consistency proof), every record scanned with its inclusion
 * proof, and what follows: logged credentials, revoked device keys, when
 * each device was first certified, and the devices of the own account.
 * Its state is kept in a KeyValueStore (IndexedDB), so that a later page
 * checks consistency with what an earlier one saw.
 * Events (CustomEvent): 'advanced', 'new-device' {fingerprint, at},
 * 'split' {text}.
 */
export class LogMonitor extends EventTarget {
  /**
   * @param {object} o
   * @param {LogAPI} o.api
   * @param {LogVerifier} o.verifier
   * @param {CryptoKey} o.orgKey the pinned CA key
   * @param {string} o.orgId
   * @param {import('./device.mjs').KeyValueStore} [o.store]
   * @param {string} [o.userId] the own account ('' for a guest)
   * @param {Uint8Array} [o.device] the own device key (65 bytes)
   * @param {(pub: Uint8Array) => Promise<string>} [o.fingerprint]
   * @param {() => number} [o.now] milliseconds (tests)
   */
  constructor({ api, verifier, orgKey, orgId, store = null, userId = '', device = null, fingerprint = async () => '', now = () => Date.now() }) {
    super();
    Object.assign(this, { api, verifier, orgKey, orgId, store, userId, device, fingerprint, now });
    this.cp = null;
    // clock: the log's clock, the latest time a scanned record states (at
    // most the local time of its scan); checked: when this client last saw
    // the trusted checkpoint as the latest (both Unix seconds).
    this.st = { checkpoint: '', scanned: 0, records: {}, revoked: {}, firstCert: {}, ownFirst: -1, own: {}, reported: {}, split: '', user: '', clock: 0, checked: 0 };
    this.tail = Promise.resolve();
  }

  get storeKey() { return `log:${this.verifier.name}`; }

  /** Loads the saved state (a damaged one starts over). */
  async load() {
    const saved = await this.store?.get(this.storeKey);
    if (saved?.checkpoint) {
      try {
        this.cp = await openCheckpoint(saved.checkpoint, this.verifier);
        this.st = { ...this.st, ...saved };
      } catch {
        this.cp = null;
      }
    }
    if (!this.userId) this.userId = this.st.user;
    else if (this.userId !== this.st.user) {
      this.st = { ...this.st, user: this.userId, own: {}, reported: {}, ownFirst: -1, scanned: 0, records: {} };
    }
    return this;
  }

  async #save() { await this.store?.put(this.storeKey, this.st); }

  /** The trusted checkpoint, or null. */
  checkpoint() { return this.cp; }

  /** Why the log is known to be split, '' if it is not. */
  split() { return this.st.split; }

  // Runs tasks one at a time (refreshes and adoptions).
  #queue(task) {
    const run = this.tail.then(task);
    this.tail = run.catch(() => {});
    return run;
  }

  /** Fetches the latest checkpoint, checks it extends the trusted one, scans new records. */
  refresh() {
    return this.#queue(async () => {
      const from = this.cp?.size ?? 0;
      const p = await this.api.prove(from, 0, []);
      const cp = await openCheckpoint(p.checkpoint, this.verifier);
      await this.#advance(cp, from, p.consistency);
    });
  }

  /**
   * Takes a checkpoint a peer committed to: a larger one is verified
   * consistent and trusted, a smaller one verified consistent. Returns the
   * trusted checkpoint after; throws SplitViewError on a split.
   */
  adopt(note) {
    return this.#queue(async () => {
      const peer = await openCheckpoint(note, this.verifier);
      const mine = this.cp;
      if (!mine || sameCheckpoint(peer, mine)) {
        if (!mine) await this.#advance(peer, 0, []);
        return this.cp;
      }
      if (peer.size > mine.size) {
        const p = await this.api.prove(mine.size, peer.size, []);
        await this.#advance(peer, mine.size, p.consistency);
        return this.cp;
      }
      if (peer.size === mine.size) return this.#split(new SplitViewError(`the server showed two trees of ${peer.size} records`));
      const p = await this.api.prove(peer.size, mine.size, []);
      try {
        await verifyConsistency(peer, mine, p.consistency);
      } catch (err) {
        return this.#split(err);
      }
      return this.cp;
    });
  }

  async #split(err) {
    if (!this.st.split) {
      this.st.split = err.message;
      await this.#save();
      this.dispatchEvent(new CustomEvent('split', { detail: { text: err.message } }));
    }
    throw err;
  }

  async #advance(cp, base, proof) {
    const old = this.cp;
    if (old) {
      if (cp.size < old.size || (cp.size === old.size && equal(cp.hash, old.hash))) {
        if (cp.size === old.size) return this.#scanTo(old);
        const p = await this.api.prove(cp.size, old.size, []);
        try {
          await verifyConsistency(cp, old, p.consistency);
        } catch (err) {
          return this.#split(err);
        }
        return undefined;
      }
      let pr = proof;
      if (base !== old.size && old.size > 0) pr = (await this.api.prove(old.size, cp.size, [])).consistency;
      try {
        await verifyConsistency(old, cp, pr);
      } catch (err) {
        if (err instanceof SplitViewError) return this.#split(err);
        throw err;
      }
    }
    return this.#scanTo(cp);
  }

  async #scanTo(cp) {
    const events = [];
    let next = this.st.scanned;
    // Records this client did not see when it last checked the log are no
    // older than that check (none on first use).
    const floor = this.cp && this.cp.size > 0 && next >= this.cp.size ? this.st.checked : 0;
    while (next < cp.size) {
      const es = await this.api.entries(next, cp.size);
      if (!es.length) throw new Error('the identity log sent no records');
      for (const e of es) {
        if (!(await checkRecord(e.proof, cp.size, cp.hash, next, await recordHash(e.record)))) {
          throw new Error(`identity log record ${next}: its inclusion proof fails`);
        }
        events.push(...(await this.#record(next, e.record, floor)));
        next++;
      }
    }
    this.cp = cp;
    this.st.checkpoint = cp.note;
    this.st.scanned = cp.size;
    this.st.checked = Math.floor(this.now() / 1000);
    await this.#save();
    for (const e of events) this.dispatchEvent(new CustomEvent('new-device', { detail: e }));
    this.dispatchEvent(new CustomEvent('advanced', { detail: { size: cp.size } }));
  }

  // Takes in record n; floor is the earliest time it can have been appended
  // as this client saw the log (0 when unknown).
  async #record(n, rec, floor) {
    const h = toBase64(await recordHash(rec));
    if (!(h in this.st.records)) this.st.records[h] = n;
    this.st.scanned = n + 1;
    // The time a record states is the server's to choose (a credential
    // minted today can say it is valid since last week); its place in the
    // log is not: no older than the records before it, nor than the last
    // time this client saw the log without it.
    const now = Math.floor(this.now() / 1000);
    const since = (stated) => {
      const t = Math.max(stated, this.st.clock ?? 0, floor);
      this.st.clock = Math.max(this.st.clock ?? 0, Math.min(stated, now));
      return t;
    };
    if (tagOf(rec) === RECORD_CREDENTIAL) {
      let c;
      try {
        c = parseCredential(rec);
      } catch {
        return [];
      }
      if (c.orgId !== this.orgId || !(await verifyP1363(this.orgKey, c.body, c.signature))) return [];
      const at = since(c.notBefore);
      const dev = toBase64(c.devicePublicKey);
      if (!(dev in this.st.firstCert)) this.st.firstCert[dev] = at;
      if (!this.userId || c.userId !== this.userId) return [];
      if (!(dev in this.st.own)) this.st.own[dev] = at;
      if (this.device && equal(c.devicePublicKey, this.device)) {
        if (this.st.ownFirst < 0) this.st.ownFirst = n;
        return [];
      }
      if (this.st.ownFirst >= 0 && !this.st.reported[dev]) {
        this.st.reported[dev] = true;
        return [{ fingerprint: await this.fingerprint(c.devicePublicKey), at: at * 1000 }];
      }
    } else if (tagOf(rec) === RECORD_REVOCATION) {
      try {
        const r = await verifyRevocation(this.orgKey, rec);
        if (r.orgId === this.orgId) {
          this.st.revoked[`${r.userId}/${toBase64(r.devicePublicKey)}`] = r.revokedAt;
          since(r.revokedAt);
        }
      } catch {
        // not the organisation's: ignored
      }
    }
    return [];
  }

  /**
   * What the log says of a credential (bytes).
   * @returns {Promise<{logged: boolean, revoked: boolean, firstCertifiedMs: number}>}
   */
  async status(credential) {
    let c;
    try {
      c = parseCredential(credential);
    } catch {
      return { logged: false, revoked: false, firstCertifiedMs: 0 };
    }
    const dev = toBase64(c.devicePublicKey);
    const h = toBase64(await recordHash(credential));
    return {
      logged: h in this.st.records,
      revoked: `${c.userId}/${dev}` in this.st.revoked,
      firstCertifiedMs: dev in this.st.firstCert ? this.st.firstCert[dev] * 1000 : 0,
    };
  }

  /** Devices of the own account: base64 device key -> first certified (ms). */
  devices() {
    return Object.fromEntries(Object.entries(this.st.own).map(([k, t]) => [k, t * 1000]));
  }
}

export { sameCheckpoint };
