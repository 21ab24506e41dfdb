// The device's E2EE identity in the browser (docs/e2ee.md, section 7): a
// long-term, non-extractable ECDSA P-256 key kept in IndexedDB, the
// organisation's CA key pinned on first use, and the credential the
// organisation issued for the device key, cached until it nears expiry.
// No DOM; the storage and the HTTP calls are injected so tests run in Node.

import { equal, fromBase64, toBase64 } from './bytes.mjs';
import { exportPublicKey, generateDeviceKey, importPublicKey, parseCredential, verifyCredential } from './identity.mjs';

/** Name of the IndexedDB database and of its object store. */
export const DB_NAME = 'conclave';
export const STORE_NAME = 'device';
/** A credential is renewed when it expires within this time. */
export const RENEW_BEFORE_MS = 24 * 3600 * 1000;

/** The alarm when the server no longer gives the organisation key this browser pinned. */
export const ORG_KEY_WITHHELD = "The server no longer gives the organisation's encryption key this browser pinned: nobody can be shown as certified, and the identity log cannot be checked.";
/** The alarm when the server no longer gives the log key this browser pinned. */
export const LOG_KEY_WITHHELD = "The server no longer gives the identity log key this browser pinned: nobody can be shown as certified, and devices added to your account cannot be reported.";
/** The alarm when the server gives another log key than the pinned one. */
export const LOG_KEY_CHANGED = "The identity log's key changed — verification may be compromised: nobody can be shown as certified, and devices added to your account cannot be reported.";

/**
 * @typedef {object} KeyValueStore
 * @property {(key: string) => Promise<any>} get the value, or undefined
 * @property {(key: string, value: any) => Promise<void>} put
 */

/**
 * Opens the device store in IndexedDB (database "conclave", object store
 * "device", out-of-line string keys). Values are structured clones, so
 * CryptoKeys are stored as they are and stay non-extractable.
 * @param {IDBFactory} [idb]
 * @returns {Promise<KeyValueStore>}
 */
export function openDeviceStore(idb = globalThis.indexedDB) {
  return new Promise((resolve, reject) => {
    if (!idb) {
      reject(new Error('This browser has no IndexedDB: the device key cannot be kept.'));
      return;
    }
    const req = idb.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(STORE_NAME)) req.result.createObjectStore(STORE_NAME);
    };
    req.onerror = () => reject(req.error ?? new Error('IndexedDB could not be opened.'));
    req.onsuccess = () => {
      const db = req.result;
      const op = (mode, fn) => new Promise((res, rej) => {
        const tx = db.transaction(STORE_NAME, mode);
        const r = fn(tx.objectStore(STORE_NAME));
        tx.oncomplete = () => res(r.result);
        tx.onerror = () => rej(tx.error);
        tx.onabort = () => rej(tx.error ?? new Error('IndexedDB transaction aborted'));
      });
      resolve({
        get: (key) => op('readonly', (s) => s.get(key)),
        put: (key, value) => op('readwrite', (s) => s.put(value, key)).then(() => {}),
      });
    };
  });
}

/** A KeyValueStore in memory (tests, and browsers without IndexedDB). */
export class MemoryStore {
  constructor() { this.map = new Map(); }
  async get(key) { return this.map.get(key); }
  async put(key, value) { this.map.set(key, value); }
}

/**
 * @typedef {object} DeviceKey
 * @property {CryptoKey} privateKey ECDSA P-256, non-extractable, sign only
 * @property {CryptoKey} publicKey
 * @property {Uint8Array} publicKeyRaw the 65-byte uncompressed point
 */

/**
 * Returns the device key, generating and storing it on first use.
 * @param {KeyValueStore} store
 * @returns {Promise<DeviceKey>}
 */
export async function loadDeviceKey(store) {
  let rec = await store.get('device-key');
  if (!rec?.privateKey || !rec?.publicKey) {
    const pair = await generateDeviceKey(false);
    rec = { privateKey: pair.privateKey, publicKey: pair.publicKey, created: Date.now() };
    await store.put('device-key', rec);
  }
  return { privateKey: rec.privateKey, publicKey: rec.publicKey, publicKeyRaw: await exportPublicKey(rec.publicKey) };
}

/**
 * @typedef {object} OrgTrust
 * @property {string} orgId
 * @property {string} name the organisation's name, for "Certified by <name>"
 * @property {CryptoKey|null} key the pinned CA key to verify credentials
 *   with; null when none is pinned or the pin was contradicted
 * @property {boolean} changed the server now presents another key than the
 *   pinned one: an alarm, never an update
 * @property {string} alarm ORG_KEY_WITHHELD when a key is pinned and the
 *   server gives none (a server silencing this browser's checks), else ''
 */

/**
 * Pins the organisation's E2EE CA key on first use and checks it on every
 * later use. A different key keeps the old pin, and the result says
 * `changed` with no key to verify with.
 * @param {KeyValueStore} store
 * @param {{orgId: string, name: string, publicKey: string}|null} org GET /api/e2ee/org, or null when unavailable
 * @returns {Promise<OrgTrust>}
 */
export async function pinOrgKey(store, org) {
  const pinned = await store.get('org');
  if (!org || typeof org.publicKey !== 'string' || !org.publicKey) {
    return { orgId: pinned?.orgId ?? '', name: pinned?.name ?? '', key: null, changed: false, alarm: pinned?.publicKey ? ORG_KEY_WITHHELD : '' };
  }
  let raw;
  try {
    raw = fromBase64(org.publicKey);
  } catch {
    raw = new Uint8Array(0);
  }
  if (pinned?.publicKey) {
    const same = equal(fromBase64(pinned.publicKey), raw) && pinned.orgId === String(org.orgId ?? '');
    if (!same) return { orgId: pinned.orgId, name: pinned.name, key: null, changed: true, alarm: '' };
    return { orgId: pinned.orgId, name: String(org.name || pinned.name || ''), key: await importPublicKey(raw), changed: false, alarm: '' };
  }
  let key;
  try {
    key = await importPublicKey(raw);
  } catch {
    return { orgId: '', name: '', key: null, changed: false, alarm: '' }; // not a key: nothing to pin
  }
  await store.put('org', { orgId: String(org.orgId ?? ''), name: String(org.name ?? ''), publicKey: toBase64(raw), pinnedAt: Date.now() });
  return { orgId: String(org.orgId ?? ''), name: String(org.name ?? ''), key, changed: false, alarm: '' };
}

/**
 * Returns a credential for the device key of the signed-in account: the
 * cached one while it is valid for more than a day, else a new one from
 * the server. null for guests and when no valid credential can be had.
 * @param {KeyValueStore} store
 * @param {DeviceKey} device
 * @param {OrgTrust} org
 * @param {object} io
 * @param {string} io.account the signed-in username ('' for a guest)
 * @param {(devicePublicKey: string) => Promise<{credential: string}|null>} io.request
 *   POST /api/e2ee/credential; null when refused (not signed in)
 * @param {() => number} [io.now] milliseconds
 * @returns {Promise<Uint8Array|null>}
 */
export async function deviceCredential(store, device, org, { account, request, now = () => Date.now() }) {
  if (!account || !org.key) return null;
  const usable = async (raw) => {
    try {
      const c = await verifyCredential(org.key, raw, now() / 1000);
      if (!equal(c.devicePublicKey, device.publicKeyRaw) || c.orgId !== org.orgId) return null;
      return c.notAfter * 1000 - now() > RENEW_BEFORE_MS ? 'fresh' : 'valid';
    } catch {
      return null;
    }
  };
  const cached = await store.get('credential');
  let fallback = null;
  if (cached?.account === account && typeof cached.credential === 'string') {
    const raw = fromBase64(cached.credential);
    const state = await usable(raw);
    if (state === 'fresh') return raw;
    if (state === 'valid') fallback = raw; // renew, but keep it if renewal fails
  }
  let res = null;
  try {
    res = await request(toBase64(device.publicKeyRaw));
  } catch {
    res = null;
  }
  if (res && typeof res.credential === 'string') {
    let raw = null;
    try {
      raw = fromBase64(res.credential);
      parseCredential(raw);
    } catch {
      raw = null;
    }
    if (raw && await usable(raw)) {
      await store.put('credential', { account, credential: res.credential, notAfter: res.notAfter ?? '' });
      return raw;
    }
  }
  return fallback;
}

/**
 * Pins the transparency log's verifier key on first use, like the
 * organisation key: a different key later keeps the old pin and is
 * reported as changed (and then nobody can be certified). A pinned key the
 * server no longer gives is an alarm too: without it this browser could
 * neither see devices added to its account nor a split view, so a server
 * must not be able to switch the checks off silently.
 * @param {KeyValueStore} store
 * @param {string} vkey the logKey of GET /api/e2ee/org ('' when none)
 * @returns {Promise<{vkey: string, changed: boolean, alarm: string}>} vkey '' when none can be trusted
 */
export async function pinLogKey(store, vkey) {
  const pinned = await store.get('log-key');
  if (!vkey) return { vkey: '', changed: false, alarm: pinned?.vkey ? LOG_KEY_WITHHELD : '' };
  if (pinned?.vkey) return pinned.vkey === vkey ? { vkey, changed: false, alarm: '' } : { vkey: '', changed: true, alarm: LOG_KEY_CHANGED };
  await store.put('log-key', { vkey, pinnedAt: Date.now() });
  return { vkey, changed: false, alarm: '' };
}
