// The browser's log monitor against an in-memory log (the server's tlog
// proofs, rebuilt here from RFC 6962 so that the test owns the server):
// trust on first use, consistency on every new checkpoint, records scanned
// with their inclusion proofs, a new device of the own account reported
// once, revocations known, and a split view (another tree of the same
// size, or a peer's checkpoint the server cannot prove consistent)
// reported and remembered across page loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LogMonitor, SplitViewError, logVerifier, recordHash, nodeHash, NEW_DEVICE_AGE_MS,
  generateDeviceKey, exportPublicKey, issueCredential, fingerprint, toBase64, toHex, concat, utf8,
} from './index.mjs';
import { MemoryStore } from './device.mjs';

const subtle = globalThis.crypto.subtle;
const ORG = 'acme';

async function mth(leaves) {
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(await mth(leaves.slice(0, k)), await mth(leaves.slice(k)));
}

async function path(m, leaves) {
  if (leaves.length <= 1) return [];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  if (m < k) return [...(await path(m, leaves.slice(0, k))), await mth(leaves.slice(k))];
  return [...(await path(m - k, leaves.slice(k))), await mth(leaves.slice(0, k))];
}

async function subproof(m, leaves, b) {
  const n = leaves.length;
  if (m === n) return b ? [] : [await mth(leaves)];
  let k = 1;
  while (k * 2 < n) k *= 2;
  if (m <= k) return [...(await subproof(m, leaves.slice(0, k), b)), await mth(leaves.slice(k))];
  return [...(await subproof(m - k, leaves.slice(k), false)), await mth(leaves.slice(0, k))];
}

function p1363ToDer(sig) {
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.subarray(i);
    if (v[0] & 0x80) v = concat(Uint8Array.of(0), v);
    return concat(Uint8Array.of(2, v.length), v);
  };
  const body = concat(int(sig.subarray(0, 32)), int(sig.subarray(32)));
  return concat(Uint8Array.of(0x30, body.length), body);
}

/** A log server: records, signed checkpoints, proofs. fork() shows another history. */
class Server {
  static async create() {
    const s = new Server();
    s.key = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const spki = new Uint8Array(await subtle.exportKey('spki', s.key.publicKey));
    const h = new Uint8Array(await subtle.digest('SHA-256', spki));
    s.keyId = new DataView(h.buffer).getUint32(0);
    s.origin = `e2ee-log.conclave/${toHex(h.subarray(0, 8))}`;
    s.vkey = `${s.origin}+${s.keyId.toString(16).padStart(8, '0')}+${toBase64(concat(Uint8Array.of(2), spki))}`;
    s.records = [];
    return s;
  }

  async checkpoint(size = this.records.length) {
    const leaves = await Promise.all(this.records.slice(0, size).map(recordHash));
    const root = size ? await mth(leaves) : new Uint8Array(await subtle.digest('SHA-256', new Uint8Array(0)));
    const text = `${this.origin}\n${size}\n${toBase64(root)}\n`;
    const sig = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, this.key.privateKey, utf8(text)));
    const id = new Uint8Array(4);
    new DataView(id.buffer).setUint32(0, this.keyId);
    return `${text}\n\u2014 ${this.origin} ${toBase64(concat(id, p1363ToDer(sig)))}\n`;
  }

  api() {
    return {
      prove: async (from, to) => {
        const n = to || this.records.length;
        const leaves = await Promise.all(this.records.slice(0, n).map(recordHash));
        return { checkpoint: to ? '' : await this.checkpoint(), size: n,
          consistency: from > 0 && from < n ? await subproof(from, leaves, true) : [], inclusion: [] };
      },
      entries: async (start, size) => {
        const leaves = await Promise.all(this.records.slice(0, size).map(recordHash));
        const out = [];
        for (let i = start; i < size; i++) out.push({ record: this.records[i], proof: await path(i, leaves) });
        return out;
      },
    };
  }
}

async function credential(ca, userId, device) {
  const now = Math.floor(Date.now() / 1000);
  return issueCredential(ca.privateKey, { orgId: ORG, userId, account: userId, displayName: userId, devicePublicKey: device, notBefore: now - 60, notAfter: now + 3600, serial: 1 });
}

test('the log monitor: trusts on first use, scans, reports a new device of the account once, and remembers across loads', async () => {
  const ca = await generateDeviceKey(false);
  const srv = await Server.create();
  const mine = await exportPublicKey((await generateDeviceKey(false)).publicKey);
  const other = await exportPublicKey((await generateDeviceKey(false)).publicKey);
  const myCred = await credential(ca, 'u1', mine);
  srv.records.push(await credential(ca, 'u2', other), myCred);
  const store = new MemoryStore();
  const open = async () => new LogMonitor({ api: srv.api(), verifier: await logVerifier(srv.vkey), orgKey: ca.publicKey, orgId: ORG,
    store, userId: 'u1', device: mine, fingerprint }).load();
  const m = await open();
  const events = [];
  m.addEventListener('new-device', (e) => events.push(e.detail));
  await m.refresh();
  assert.equal(m.checkpoint().size, 2);
  assert.deepEqual(await m.status(myCred), { logged: true, revoked: false, firstCertifiedMs: (Math.floor(Date.now() / 1000) - 60) * 1000 });
  assert.equal((await m.status(await credential(ca, 'u1', other))).logged, false, 'a credential the log does not hold');
  assert.equal(events.length, 0);
  // The server certifies another device in u1's name.
  const rogue = await exportPublicKey((await generateDeviceKey(false)).publicKey);
  srv.records.push(await credential(ca, 'u1', rogue));
  await m.refresh();
  assert.equal(events.length, 1);
  assert.equal(events[0].fingerprint, await fingerprint(rogue));
  // A later page load of the same browser: consistent, and not reported again.
  srv.records.push(await credential(ca, 'u3', other));
  const m2 = await open();
  const again = [];
  m2.addEventListener('new-device', (e) => again.push(e.detail));
  await m2.refresh();
  assert.equal(m2.checkpoint().size, 4);
  assert.equal(again.length, 0);
});

test('the log monitor: a rewritten history and an unprovable peer checkpoint are split views, remembered', async () => {
  const ca = await generateDeviceKey(false);
  const srv = await Server.create();
  const dev = await exportPublicKey((await generateDeviceKey(false)).publicKey);
  srv.records.push(await credential(ca, 'u1', dev), await credential(ca, 'u2', dev));
  const store = new MemoryStore();
  const v = await logVerifier(srv.vkey);
  const m = await new LogMonitor({ api: srv.api(), verifier: v, orgKey: ca.publicKey, orgId: ORG, store, userId: 'u1', device: dev, fingerprint }).load();
  await m.refresh();
  const splits = [];
  m.addEventListener('split', (e) => splits.push(e.detail.text));
  // A peer was shown another tree of the same size (the server's fork).
  const fork = Object.assign(Object.create(Server.prototype), srv, { records: [srv.records[0], await credential(ca, 'u9', dev)] });
  await assert.rejects(m.adopt(await fork.checkpoint()), SplitViewError);
  assert.equal(splits.length, 1);
  // The server rewrites history: the next checkpoint does not extend ours.
  srv.records = [srv.records[1], srv.records[0], await credential(ca, 'u3', dev)];
  await assert.rejects(m.refresh(), SplitViewError);
  const m2 = await new LogMonitor({ api: srv.api(), verifier: v, orgKey: ca.publicKey, orgId: ORG, store, userId: 'u1', device: dev, fingerprint }).load();
  assert.match(m2.split(), /split view/);
});

test('the log monitor: a revocation in the log revokes the device for its user', async () => {
  const ca = await generateDeviceKey(false);
  const srv = await Server.create();
  const dev = await exportPublicKey((await generateDeviceKey(false)).publicKey);
  const cred = await credential(ca, 'u1', dev);
  srv.records.push(cred);
  const m = await new LogMonitor({ api: srv.api(), verifier: await logVerifier(srv.vkey), orgKey: ca.publicKey, orgId: ORG, fingerprint }).load();
  await m.refresh();
  assert.equal((await m.status(cred)).revoked, false);
  const body = new Uint8Array([...utf8('CREV'), 1, 0, ORG.length, ...utf8(ORG), 0, 2, ...utf8('u1'), ...dev, 0, 0, 0, 0, 0x65, 0, 0, 0, 0, 4, ...utf8('lost')]);
  const sig = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, ca.privateKey, body));
  srv.records.push(concat(body, sig));
  await m.refresh();
  assert.equal((await m.status(cred)).revoked, true);
});

test('the log monitor: a credential the server backdates is as new as its place in the log (review of issue 11)', async () => {
  const ca = await generateDeviceKey(false);
  const srv = await Server.create();
  const DAY = 86400;
  let now = Date.UTC(2026, 11, 1, 9) / 1000;
  const cred = async (userId, notBefore) => {
    const dev = await exportPublicKey((await generateDeviceKey(false)).publicKey);
    const c = await issueCredential(ca.privateKey, { orgId: ORG, userId, account: userId, displayName: userId, devicePublicKey: dev, notBefore, notAfter: notBefore + 7 * DAY, serial: 1 });
    srv.records.push(c);
    return { c, dev };
  };
  const bob = await cred('bob', now - 30 * DAY);
  await cred('carol', now - 7200); // an honest record, two hours old
  const rogue1 = await cred('ann', now - 3 * DAY);
  const m = await new LogMonitor({ api: srv.api(), verifier: await logVerifier(srv.vkey), orgKey: ca.publicKey, orgId: ORG,
    userId: 'bob', device: bob.dev, fingerprint, now: () => now * 1000 }).load();
  // First use: the rogue credential comes after a record of two hours ago.
  await m.refresh();
  const age = async (c) => now * 1000 - (await m.status(c)).firstCertifiedMs;
  assert.ok(await age(rogue1.c) < NEW_DEVICE_AGE_MS, `backdated after a 2 h old record: first certified ${(await age(rogue1.c)) / 3600000} h ago`);
  // A quiet log, watched: a credential dated three days back appears now.
  now += 2 * DAY;
  await m.refresh();
  now += 10;
  const rogue2 = await cred('ann', now - 3 * DAY);
  await m.refresh();
  assert.equal((await m.status(rogue2.c)).logged, true);
  assert.ok(await age(rogue2.c) < NEW_DEVICE_AGE_MS, `backdated in a watched log: first certified ${(await age(rogue2.c)) / 3600000} h ago`);
  assert.ok(await age(bob.c) > NEW_DEVICE_AGE_MS, 'an honest month-old device stays old');
});
