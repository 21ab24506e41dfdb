// The device identity: non-extractable key kept and reused, the org key
// pinned on first use and a change treated as an alarm, credentials cached
// and renewed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore, loadDeviceKey, pinOrgKey, pinLogKey, deviceCredential, RENEW_BEFORE_MS, LOG_KEY_CHANGED, LOG_KEY_WITHHELD, ORG_KEY_WITHHELD } from './device.mjs';
import { generateDeviceKey, exportPublicKey, issueCredential, toBase64, equal } from './index.mjs';

async function ca() {
  const pair = await generateDeviceKey(false);
  return { ...pair, raw: await exportPublicKey(pair.publicKey) };
}

test('the device key is generated once, non-extractable, and reused', async () => {
  const store = new MemoryStore();
  const a = await loadDeviceKey(store);
  const b = await loadDeviceKey(store);
  assert.equal(a.privateKey.extractable, false);
  assert.equal(a.publicKeyRaw.length, 65);
  assert.ok(equal(a.publicKeyRaw, b.publicKeyRaw));
  assert.equal(a.privateKey, b.privateKey);
});

test('the org key is pinned on first use; another key later is an alarm and keeps the pin', async () => {
  const store = new MemoryStore();
  const one = await ca();
  const two = await ca();
  const first = await pinOrgKey(store, { orgId: 'acme', name: 'Acme', publicKey: toBase64(one.raw) });
  assert.equal(first.changed, false);
  assert.ok(first.key);
  const again = await pinOrgKey(store, { orgId: 'acme', name: 'Acme', publicKey: toBase64(one.raw) });
  assert.equal(again.changed, false);
  const changed = await pinOrgKey(store, { orgId: 'acme', name: 'Acme', publicKey: toBase64(two.raw) });
  assert.equal(changed.changed, true);
  assert.equal(changed.key, null);
  const still = await pinOrgKey(store, { orgId: 'acme', name: 'Acme', publicKey: toBase64(two.raw) });
  assert.equal(still.changed, true, 'never silently updated');
  assert.equal((await pinOrgKey(store, null)).key, null);
});

test('credentials: fetched when signed in, cached, renewed within a day of expiry, none for guests', async () => {
  const store = new MemoryStore();
  const org = await ca();
  const trust = await pinOrgKey(store, { orgId: 'acme', name: 'Acme', publicKey: toBase64(org.raw) });
  const device = await loadDeviceKey(store);
  let now = Date.now();
  let calls = 0;
  let lifetime = 7 * 24 * 3600;
  const request = async (pub) => {
    calls++;
    assert.equal(pub, toBase64(device.publicKeyRaw));
    const s = Math.floor(now / 1000);
    const c = await issueCredential(org.privateKey, { orgId: 'acme', userId: 'u1', account: 'u1', displayName: 'U', devicePublicKey: device.publicKeyRaw, notBefore: s - 1, notAfter: s + lifetime, serial: calls });
    return { credential: toBase64(c), notAfter: new Date((s + lifetime) * 1000).toISOString() };
  };
  const io = { account: 'u1', request, now: () => now };
  assert.equal(await deviceCredential(store, device, trust, { ...io, account: '' }), null);
  assert.equal(calls, 0);
  const c1 = await deviceCredential(store, device, trust, io);
  assert.ok(c1);
  await deviceCredential(store, device, trust, io);
  assert.equal(calls, 1, 'cached');
  now += 7 * 24 * 3600 * 1000 - RENEW_BEFORE_MS + 1000;
  await deviceCredential(store, device, trust, io);
  assert.equal(calls, 2, 'renewed near expiry');
  assert.equal(await deviceCredential(store, device, trust, { ...io, account: 'u2', request: async () => null }), null, 'another account does not reuse it');
  // A credential for another device key is refused.
  lifetime = 3600;
  const other = await loadDeviceKey(new MemoryStore());
  assert.equal(await deviceCredential(new MemoryStore(), other, trust, io), null);
  // Without a pinned key nothing can be verified: no credential.
  assert.equal(await deviceCredential(store, device, { ...trust, key: null }, io), null);
});

test('a pinned key the server no longer gives, or replaces, is an alarm, not a silent "no log" (review of issue 11)', async () => {
  const store = new MemoryStore();
  const one = await ca();
  const org = { orgId: 'acme', name: 'Acme', publicKey: toBase64(one.raw) };
  assert.equal((await pinOrgKey(store, org)).alarm, '');
  const gone = await pinOrgKey(store, null);
  assert.deepEqual({ key: gone.key, alarm: gone.alarm }, { key: null, alarm: ORG_KEY_WITHHELD });
  assert.equal((await pinOrgKey(new MemoryStore(), null)).alarm, '', 'nothing pinned, nothing withheld');
  const vkey = 'e2ee-log.conclave/0011223344556677+01020304+AgAA';
  assert.deepEqual(await pinLogKey(store, vkey), { vkey, changed: false, alarm: '' });
  assert.deepEqual(await pinLogKey(store, ''), { vkey: '', changed: false, alarm: LOG_KEY_WITHHELD });
  assert.deepEqual(await pinLogKey(store, `${vkey}x`), { vkey: '', changed: true, alarm: LOG_KEY_CHANGED });
  assert.deepEqual(await pinLogKey(store, vkey), { vkey, changed: false, alarm: '' }, 'the pin is kept');
  assert.deepEqual(await pinLogKey(new MemoryStore(), ''), { vkey: '', changed: false, alarm: '' });
});
