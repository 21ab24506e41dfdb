// Checks the shared vectors (internal/e2ee/testdata/vectors.json) and the
// round-trip and tamper behaviour. Run: node --test web/static/js/e2ee/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  fromHex, toHex, concat, utf8, toBase64, fromBase64,
  encodeHeader, parseHeader, sframeLabel, SFrameKey, LABEL_SFRAME_KEY, LABEL_SFRAME_SALT, AuthError,
  kidOf, splitKid, ratchet, chatKey, UnknownKeyError,
  Sender, Receiver, clearPrefix, codecFromMimeType,
  importPublicKey, importPrivateScalar, generateDeviceKey, exportPublicKey, sign, verify, fingerprint,
  encodeCredentialBody, parseCredential, verifyCredential, issueCredential, ExpiredError, SignatureError,
  encodeAnnouncementBody, signAnnouncement, verifyAnnouncement,
  possessionMessage, provePossession, verifyRevocation,
  logVerifier, openCheckpoint, checkRecord, checkTree, recordHash, verifyConsistency, SplitViewError,
  viewHash, nonceHash, verifyCommit, parseReveal, meetingCodeV2, RoundState,
  cleanName, skeleton, looksLike, claimsAccount,
  pairwiseKeys, Channel, ReplayError, generateEphemeral,
  sealChat, chatSigned, encodeFileDescriptor, CHAT_TEXT, CHAT_FILE,
  FileCipher, encryptFile, decryptFile, FILE_CHUNK_SIZE,
} from './index.mjs';
import { LEAVE_DEBOUNCE_MS, SWITCH_DELAY_MS, ANNOUNCE_GRACE_MS, KEY_REQUEST_INTERVAL_MS, VIEW_GRACE_MS } from './meetingcrypto.mjs';
import { KEY_WAIT_MS, MISSING_KEY_MS, MISSING_KEY_REPEAT_MS } from './framecryptor.mjs';
import { MAX_RATCHET_AHEAD, DEFAULT_RETENTION_MS } from './keys.mjs';
import { ROUND_QUIET_MS, ROUND_MAX_WAIT_MS, COMMIT_RATE, COMMIT_BURST } from './round.mjs';

const V = JSON.parse(readFileSync(new URL('../../../../internal/e2ee/testdata/vectors.json', import.meta.url), 'utf8'));

test('the key schedule\'s timings are the contract\'s', () => {
  const s = V.schedule;
  assert.equal(LEAVE_DEBOUNCE_MS, s.rotationDebounceMs);
  assert.equal(SWITCH_DELAY_MS, s.switchDelayMs);
  assert.equal(KEY_WAIT_MS, s.keyWaitMs);
  assert.equal(DEFAULT_RETENTION_MS, s.retentionMs);
  assert.equal(MAX_RATCHET_AHEAD, s.maxRatchetAhead);
  assert.equal(KEY_REQUEST_INTERVAL_MS, s.keyRequestAnswerIntervalMs);
  assert.equal(ANNOUNCE_GRACE_MS, s.announceGraceMs);
  assert.equal(VIEW_GRACE_MS, s.viewGraceMs);
  assert.equal(ROUND_QUIET_MS, s.roundQuietMs);
  assert.equal(ROUND_MAX_WAIT_MS, s.roundMaxWaitMs);
  assert.equal(COMMIT_RATE, s.commitRatePerSecond);
  assert.equal(COMMIT_BURST, s.commitBurst);
  assert.equal(MISSING_KEY_MS, s.keyRequestAfterMs.browser);
  assert.equal(MISSING_KEY_REPEAT_MS, s.keyRequestRepeatMs.browser);
});
const h = fromHex;
const hexEq = (got, want, msg) => assert.equal(toHex(got), want, msg);
const NOW = 1767225600;
const subtle = globalThis.crypto.subtle;

const sk = (v) => ({ index: v.index, generation: v.generation, step: v.step, key: h(v.key) });
const pair = (list, name) => list.find((k) => k.name === name);
const devicePriv = (name) => { const k = pair(V.keys.devices, name); return importPrivateScalar(h(k.private), h(k.public)); };
const devicePub = (name) => importPublicKey(h(pair(V.keys.devices, name).public));
const ecdhPriv = (name) => { const k = pair(V.keys.ecdh, name); return importPrivateScalar(h(k.private), h(k.public), { name: 'ECDH', namedCurve: 'P-256' }, ['deriveBits']); };
const caPub = () => importPublicKey(h(V.keys.ca.public));

test('RFC 9605 header vectors', () => {
  assert.equal(V.rfc9605.header.length, 289);
  for (const v of V.rfc9605.header) {
    const kid = BigInt(v.kid), ctr = BigInt(v.ctr);
    hexEq(encodeHeader(kid, ctr), v.header, `${v.kid}/${v.ctr}`);
    const p = parseHeader(concat(h(v.header), Uint8Array.of(0xaa)));
    assert.deepEqual([p.kid, p.ctr, p.length], [kid, ctr, v.header.length / 2]);
  }
});

test('RFC 9605 SFrame vector, AES_256_GCM_SHA512_128', async () => {
  const [v] = V.rfc9605.sframe;
  assert.equal(v.cipher_suite, '0x0005');
  const kid = BigInt(v.kid), ctr = BigInt(v.ctr);
  hexEq(sframeLabel(LABEL_SFRAME_KEY, kid), v.sframe_key_label);
  hexEq(sframeLabel(LABEL_SFRAME_SALT, kid), v.sframe_salt_label);
  // HKDF-Extract with salt "" is HMAC keyed with HashLen zero bytes.
  const hk = await subtle.importKey('raw', new Uint8Array(64), { name: 'HMAC', hash: 'SHA-512' }, false, ['sign']);
  hexEq(new Uint8Array(await subtle.sign('HMAC', hk, h(v.base_key))), v.sframe_secret);
  const k = await SFrameKey.derive(h(v.base_key), kid);
  hexEq(k.key, v.sframe_key);
  hexEq(k.salt, v.sframe_salt);
  hexEq(k.nonce(ctr), v.nonce);
  hexEq(await k.seal(ctr, h(v.metadata), h(v.pt)), v.ct);
  hexEq(await k.open(h(v.metadata), h(v.ct)), v.pt);
  const { length } = parseHeader(h(v.ct));
  hexEq(concat(h(v.ct).subarray(0, length), h(v.metadata)), v.aad);
});

test('media frame vectors', async () => {
  for (const m of V.media) {
    const key = sk(m.sender_key);
    assert.equal(kidOf(key), m.kid, m.name);
    assert.deepEqual(splitKid(m.kid), { index: key.index, generation: key.generation, step: key.step });
    assert.equal(clearPrefix(m.codec, h(m.frame)), m.clear_prefix, m.name);
    const s = await Sender.create(key.index, key);
    hexEq(s.sf.key, m.sframe_key, m.name);
    hexEq(s.sf.salt, m.sframe_salt, m.name);
    s.ctr = m.ctr;
    hexEq(await s.encryptFrame(m.codec, h(m.frame)), m.encrypted, m.name);
    const r = new Receiver(key.index);
    await r.addKey(key);
    hexEq(await r.decryptFrame(m.codec, h(m.encrypted)), m.frame, m.name);
  }
});

test('ratchet and chat key vectors', async () => {
  let k = sk({ index: V.ratchet.index, generation: V.ratchet.generation, step: 0, key: V.ratchet.steps[0].key });
  for (const [i, s] of V.ratchet.steps.entries()) {
    if (i > 0) k = await ratchet(k);
    assert.equal(k.step, s.step);
    hexEq(k.key, s.key);
    hexEq(await chatKey(k), s.chat_key);
  }
});

test('credential vectors', async () => {
  const ca = await caPub();
  for (const c of V.credentials) {
    const dev = h(pair(V.keys.devices, c.device).public);
    const body = encodeCredentialBody({ orgId: c.org_id, userId: c.user_id, account: c.account, displayName: c.display_name, devicePublicKey: dev,
      notBefore: c.not_before, notAfter: c.not_after, serial: BigInt(c.serial) });
    hexEq(body, c.body, c.name);
    hexEq(concat(body, h(c.signature)), c.credential);
    const p = await verifyCredential(ca, h(c.credential), NOW);
    assert.equal(p.userId, c.user_id);
    assert.equal(p.displayName, c.display_name);
    assert.equal(p.account, c.account);
    await assert.rejects(verifyCredential(ca, h(c.credential), c.not_after + 1), ExpiredError);
    await assert.rejects(verifyCredential(ca, h(c.credential), c.not_before - 1), ExpiredError);
    await assert.rejects(verifyCredential(await devicePub('alice'), h(c.credential), NOW), SignatureError);
  }
});

test('credential sign and verify round-trip', async () => {
  const ca = await generateDeviceKey();
  const dev = await generateDeviceKey();
  const f = { orgId: 'org', userId: 'u', account: 'u', displayName: 'D', devicePublicKey: await exportPublicKey(dev.publicKey), notBefore: 10, notAfter: 20, serial: 1n };
  const cred = await issueCredential(ca.privateKey, f);
  assert.equal((await verifyCredential(ca.publicKey, cred, 15)).userId, 'u');
  for (let i = 0; i < cred.length; i += 7) {
    const bad = cred.slice(); bad[i] ^= 1;
    await assert.rejects(verifyCredential(ca.publicKey, bad, 15));
  }
});

async function verifiedAnnouncements() {
  const opts = { meetingId: V.announcements[0].meeting_id, orgKey: await caPub(), nowSeconds: NOW };
  const out = {};
  for (const a of V.announcements) out[a.name] = await verifyAnnouncement(h(a.announcement), opts);
  return out;
}

test('announcement vectors', async () => {
  const creds = Object.fromEntries(V.credentials.map((c) => [c.name, h(c.credential)]));
  for (const a of V.announcements) {
    const body = encodeAnnouncementBody({ meetingId: a.meeting_id, participantId: a.participant_id, userId: a.user_id, displayName: a.display_name,
      ecdhPublicKey: h(pair(V.keys.ecdh, a.ecdh).public), devicePublicKey: h(pair(V.keys.devices, a.device).public),
      credential: a.credential ? creds[a.credential] : null, senderIndex: a.sender_index, timestampMs: a.timestamp_ms });
    hexEq(body, a.body, a.name);
    hexEq(concat(body, h(a.signature)), a.announcement);
  }
  const v = await verifiedAnnouncements();
  for (const a of V.announcements) {
    assert.equal(v[a.name].certified, a.certified, a.name);
    assert.equal(v[a.name].participantId, a.participant_id);
    assert.equal(v[a.name].senderIndex, a.sender_index);
  }
  const uncertified = await verifyAnnouncement(h(V.announcements[0].announcement), { meetingId: V.announcements[0].meeting_id, nowSeconds: NOW });
  assert.equal(uncertified.certified, false);
});

test('fingerprint vectors', async () => {
  for (const f of V.fingerprints) assert.equal(await fingerprint(h(f.public)), f.fingerprint);
  const v = await verifiedAnnouncements();
  assert.equal(v.alice.fingerprint, V.fingerprints[0].fingerprint);
});

test('announcement tampering and ghosts are refused', async () => {
  const base = h(V.announcements[0].announcement);
  const opts = { meetingId: V.announcements[0].meeting_id, orgKey: await caPub(), nowSeconds: NOW };
  for (let i = 0; i < base.length; i += 5) {
    const bad = base.slice(); bad[i] ^= 0x10;
    await assert.rejects(verifyAnnouncement(bad, opts), undefined, `flip at ${i}`);
  }
  await assert.rejects(verifyAnnouncement(base, { ...opts, meetingId: 'other' }));
  await assert.rejects(verifyAnnouncement(base, { ...opts, nowSeconds: NOW + 365 * 86400 }), ExpiredError);
  // A ghost: a participant the server invents, with its own device key and
  // a copied credential, or with no valid signature at all.
  const ghost = await generateDeviceKey();
  const eph = await generateEphemeral();
  const fields = { meetingId: opts.meetingId, participantId: 'p-ghost', userId: 'u-1001', displayName: 'Alice Martin', ecdhPublicKey: eph.publicKey,
    devicePublicKey: await exportPublicKey(ghost.publicKey), credential: h(V.credentials[0].credential), senderIndex: 3, timestampMs: NOW * 1000 };
  await assert.rejects(verifyAnnouncement(await signAnnouncement(ghost.privateKey, fields), opts), /another device key/);
  await assert.rejects(verifyAnnouncement(concat(encodeAnnouncementBody(fields), new Uint8Array(64)), opts), SignatureError);
  await assert.rejects(verifyAnnouncement(await signAnnouncement(ghost.privateKey, { ...fields, credential: null }), opts), /user id without a credential/);
  const guest = await verifyAnnouncement(await signAnnouncement(ghost.privateKey, { ...fields, credential: null, userId: '' }), opts);
  assert.equal(guest.certified, false);
  // The meeting code changes when a participant is added.
  const v = await verifiedAnnouncements();
  assert.notDeepEqual(await viewHash([v.alice, v.bob]), await viewHash([v.alice, v.bob, guest]));
});

test('pairwise and key message vectors', async () => {
  const p = V.pairwise;
  const pubA = h(pair(V.keys.ecdh, p.ecdh_a).public), pubB = h(pair(V.keys.ecdh, p.ecdh_b).public);
  const privA = await ecdhPriv(p.ecdh_a), privB = await ecdhPriv(p.ecdh_b);
  const ka = await pairwiseKeys(p.meeting_id, privA, pubA, pubB);
  const kb = await pairwiseKeys(p.meeting_id, privB, pubB, pubA);
  hexEq(ka.secret, p.shared_secret);
  hexEq(ka.send, p.key_a_to_b); hexEq(ka.recv, p.key_b_to_a);
  hexEq(kb.send, p.key_b_to_a); hexEq(kb.recv, p.key_a_to_b);
  const chA = await Channel.create(p.meeting_id, p.a, privA, pubA, p.b, pubB);
  const chB = await Channel.create(p.meeting_id, p.b, privB, pubB, p.a, pubA);
  for (const m of p.messages) {
    const [from, to] = m.from === p.a ? [chA, chB] : [chB, chA];
    hexEq(await from.sealSeq(m.seq, sk(m.sender_key)), m.payload);
    const got = await to.open(h(m.payload));
    assert.deepEqual({ ...got, key: toHex(got.key) }, m.sender_key);
  }
  // Replays of every message are refused now.
  for (const m of p.messages) await assert.rejects((m.from === p.a ? chB : chA).open(h(m.payload)), ReplayError);
});

test('key messages: round trip, replay, tamper, misdirection', async () => {
  const a = await generateEphemeral(), b = await generateEphemeral(), c = await generateEphemeral();
  const ab = await Channel.create('m', 'pa', a.privateKey, a.publicKey, 'pb', b.publicKey);
  const ba = await Channel.create('m', 'pb', b.privateKey, b.publicKey, 'pa', a.publicKey);
  const cb = await Channel.create('m', 'pc', c.privateKey, c.publicKey, 'pb', b.publicKey);
  const k = { index: 1, generation: 2, step: 3, key: new Uint8Array(32).fill(9) };
  const m1 = await ab.seal(k);
  const payload = toBase64(m1);
  assert.deepEqual(await ba.open(fromBase64(payload)), k);
  await assert.rejects(ba.open(m1), ReplayError);
  const m2 = await ab.seal(k);
  for (let i = 9; i < m2.length; i++) {
    const bad = m2.slice(); bad[i] ^= 1;
    await assert.rejects(ba.open(bad), AuthError);
  }
  const bc = await Channel.create('m', 'pb', b.privateKey, b.publicKey, 'pc', c.publicKey);
  await assert.rejects(bc.open(await ab.seal(k)), AuthError); // meant for pb from pa, presented as from pc
  await assert.rejects(ab.open(await ab.seal(k)), AuthError); // reflected
  const baOther = await Channel.create('m2', 'pb', b.privateKey, b.publicKey, 'pa', a.publicKey);
  await assert.rejects(baOther.open(await ab.seal(k)), AuthError);
  assert.ok(cb);
});

test('chat vectors', async () => {
  for (const c of V.chat) {
    const key = sk(c.sender_key);
    hexEq(await chatKey(key), c.chat_key);
    const msg = c.kind === CHAT_TEXT
      ? { kind: CHAT_TEXT, text: c.text, timestampMs: c.timestamp_ms }
      : { kind: CHAT_FILE, file: { id: h(c.file.id), name: c.file.name, size: c.file.size, mimeType: c.file.mime_type, key: h(c.file.key), sha256: h(c.file.sha256) }, timestampMs: c.timestamp_ms };
    const header = concat(Uint8Array.of(1, key.index >> 8, key.index & 255, key.generation, key.step), h(c.seq.toString(16).padStart(16, '0')));
    const body = c.kind === CHAT_TEXT ? utf8(c.text) : encodeFileDescriptor(msg.file);
    hexEq(chatSigned(c.meeting_id, c.participant_id, header, c.timestamp_ms, c.kind, body), c.signed, c.name);
    assert.ok(await verify(await devicePub(c.device), h(c.signed), h(c.signature)));
    hexEq(await sealChat(c.meeting_id, c.participant_id, key, c.seq, msg, async () => h(c.signature)), c.payload, c.name);
    const r = new Receiver(key.index);
    await r.addKey(key);
    const got = await r.openChat(c.meeting_id, c.participant_id, await devicePub(c.device), h(c.payload));
    assert.equal(got.seq, c.seq);
    assert.equal(got.timestampMs, c.timestamp_ms);
    if (c.kind === CHAT_TEXT) assert.equal(got.text, c.text); else assert.equal(toHex(got.file.key), c.file.key);
    await assert.rejects(r.openChat(c.meeting_id, c.participant_id, await devicePub(c.device), h(c.payload)), ReplayError);
  }
});

test('chat: round trip after a ratchet, forgery refused', async () => {
  const dev = await generateDeviceKey(), other = await generateDeviceKey();
  const s = await Sender.create(6);
  const r = new Receiver(6);
  await r.addKey(s.key);
  await s.ratchet();
  const p = await s.sealChat('m', 'p6', dev.privateKey, { kind: CHAT_TEXT, text: 'salut', timestampMs: 5 });
  assert.equal((await r.openChat('m', 'p6', dev.publicKey, p)).text, 'salut');
  const forged = await s.sealChat('m', 'p6', other.privateKey, { kind: CHAT_TEXT, text: 'forged', timestampMs: 6 });
  await assert.rejects(r.openChat('m', 'p6', dev.publicKey, forged), SignatureError);
  const p2 = await s.sealChat('m', 'p6', dev.privateKey, { kind: CHAT_TEXT, text: 'x', timestampMs: 7 });
  await assert.rejects(r.openChat('m', 'p7', dev.publicKey, p2), AuthError);
});

test('file chunk vectors', async () => {
  const f = V.file;
  const fc = await FileCipher.create(h(f.key), h(f.id));
  assert.equal(f.chunk_size, FILE_CHUNK_SIZE);
  for (const c of f.chunks) {
    hexEq(await fc.sealChunk(c.index, c.last, h(c.plaintext)), c.sealed);
    hexEq(await fc.openChunk(c.index, c.last, h(c.sealed)), c.plaintext);
    await assert.rejects(fc.openChunk(c.index, !c.last, h(c.sealed)), AuthError);
  }
  const data = new Uint8Array(f.pattern_length).map((_, i) => i % 251);
  hexEq(new Uint8Array(await subtle.digest('SHA-256', data)), f.pattern_sha256);
  const blob = await fc.sealAll(data);
  assert.equal(blob.length, f.pattern_blob_length);
  hexEq(new Uint8Array(await subtle.digest('SHA-256', blob)), f.pattern_blob_sha256);
  const sealed = FILE_CHUNK_SIZE + 16;
  await assert.rejects(fc.openAll(blob.subarray(0, sealed)), AuthError); // truncated at a chunk boundary
  await assert.rejects(fc.openAll(concat(blob.subarray(sealed, 2 * sealed), blob.subarray(0, sealed), blob.subarray(2 * sealed))), AuthError);
});

test('files: round trip', async () => {
  for (const n of [0, 1, FILE_CHUNK_SIZE, FILE_CHUNK_SIZE + 1]) {
    const data = new Uint8Array(n).map((_, i) => i & 255);
    const { descriptor, blob } = await encryptFile('f.bin', 'application/octet-stream', data);
    assert.deepEqual(await decryptFile(descriptor, blob), data);
    await assert.rejects(decryptFile({ ...descriptor, size: n + 1 }, blob));
  }
});

test('frames: round trip, bit flips, wrong KID, rotation', async () => {
  let t = 1000000;
  const now = () => t;
  const s = await Sender.create(9);
  const r = new Receiver(9, { retentionMs: 3000, now });
  await r.addKey(s.key);
  const vp8 = concat(Uint8Array.of(0x90, 1, 2, 3, 4, 5, 6, 7, 8, 9), new Uint8Array(64).fill(0xab));
  for (const [codec, frame] of [['vp8', vp8], ['vp8', Uint8Array.of(0x31, 5, 6, 7)], ['vp9', new Uint8Array(40).fill(0x82)], ['opus', new Uint8Array(30).fill(0xfc)]]) {
    const enc = await s.encryptFrame(codec, frame);
    assert.notDeepEqual(enc, await s.encryptFrame(codec, frame));
    assert.deepEqual(await r.decryptFrame(codec, enc), frame);
    for (let i = 0; i < enc.length; i++) {
      const bad = enc.slice(); bad[i] ^= 0x04;
      await assert.rejects(r.decryptFrame(codec, bad), undefined, `${codec} flip at ${i}`);
    }
  }
  const wrong = new Receiver(10);
  await wrong.addKey({ ...s.key, index: 10 });
  await assert.rejects(wrong.decryptFrame('opus', await s.encryptFrame('opus', Uint8Array.of(1))), /not from sender/);

  const before = await s.encryptFrame('opus', utf8('before'));
  const { key: k1, fresh } = await s.ratchet();
  assert.equal(fresh, false);
  const newcomer = new Receiver(9, { now });
  await newcomer.addKey(k1);
  const after = await s.encryptFrame('opus', utf8('after'));
  await assert.rejects(newcomer.decryptFrame('opus', before), UnknownKeyError);
  assert.deepEqual(await r.decryptFrame('opus', after), utf8('after'));
  assert.deepEqual(await newcomer.decryptFrame('opus', after), utf8('after'));
  assert.deepEqual(await r.decryptFrame('opus', before), utf8('before'));
  t += 4000;
  await assert.rejects(r.decryptFrame('opus', before), UnknownKeyError);
  const k2 = await s.rotate();
  assert.deepEqual([k2.generation, k2.step], [1, 0]);
  const rotated = await s.encryptFrame('opus', utf8('rotated'));
  await assert.rejects(newcomer.decryptFrame('opus', rotated), UnknownKeyError);
  await r.addKey(k2);
  assert.deepEqual(await r.decryptFrame('opus', rotated), utf8('rotated'));
  assert.equal(codecFromMimeType('video/VP8'), 'vp8');
  assert.throws(() => clearPrefix('h264', Uint8Array.of(0, 0, 1)));
});

test('device signatures round-trip in P1363 form', async () => {
  const d = await generateDeviceKey();
  const sig = await sign(d.privateKey, utf8('m'));
  assert.equal(sig.length, 64);
  assert.ok(await verify(d.publicKey, utf8('m'), sig));
  assert.ok(!(await verify(d.publicKey, utf8('n'), sig)));
  const cred = h(V.credentials[0].credential);
  assert.equal(parseCredential(cred).serial, BigInt(V.credentials[0].serial));
  assert.ok(await verify(await caPub(), h(V.credentials[0].body), h(V.credentials[0].signature)));
  assert.ok(await devicePriv('alice'));
});

test('proof of possession vectors', async () => {
  const p = V.possession;
  const dev = h(pair(V.keys.devices, p.device).public);
  hexEq(possessionMessage(p.org_id, p.account, dev, h(p.challenge)), p.message);
  assert.ok(await verify(await devicePub(p.device), h(p.message), h(p.signature)));
  const sig = await provePossession(await devicePriv(p.device), p.org_id, p.account, dev, h(p.challenge));
  assert.ok(await verify(await devicePub(p.device), h(p.message), sig));
  assert.throws(() => possessionMessage(p.org_id, p.account, dev, new Uint8Array(31)));
});

test('revocation vectors', async () => {
  for (const r of V.revocations) {
    const v = await verifyRevocation(await caPub(), h(r.revocation));
    assert.equal(v.userId, r.user_id);
    assert.equal(v.reason, r.reason);
    assert.equal(v.revokedAt, r.revoked_at);
    hexEq(v.devicePublicKey, pair(V.keys.devices, r.device).public);
    const bad = h(r.revocation); bad[10] ^= 1;
    await assert.rejects(verifyRevocation(await caPub(), bad));
  }
});

test('log vectors: checkpoint, inclusion and consistency proofs', async () => {
  const L = V.log;
  const v = await logVerifier(L.verifier_key);
  assert.equal(v.name, L.origin);
  assert.equal(v.keyId, L.key_id);
  const cp = await openCheckpoint(L.checkpoint, v);
  assert.equal(cp.size, L.size);
  hexEq(cp.hash, L.root_hash);
  for (const [i, r] of L.records.entries()) hexEq(await recordHash(h(r)), L.record_hashes[i]);
  for (const inc of L.inclusion) {
    const proof = inc.proof.map(h);
    assert.ok(await checkRecord(proof, cp.size, cp.hash, inc.index, h(L.record_hashes[inc.index])), `record ${inc.index}`);
    assert.equal(await checkRecord(proof, cp.size, cp.hash, inc.index, h(L.record_hashes[(inc.index + 1) % cp.size])), false);
  }
  for (const c of L.consistency) {
    const proof = c.proof.map(h);
    assert.ok(await checkTree(proof, cp.size, cp.hash, c.from, h(c.from_hash)), `from ${c.from}`);
    const other = h(c.from_hash); other[0] ^= 1;
    await assert.rejects(verifyConsistency({ origin: cp.origin, size: c.from, hash: other }, cp, proof), SplitViewError);
  }
  // A tampered note, another key, a note with a signature line changed.
  await assert.rejects(openCheckpoint(L.checkpoint.replace(`\n${L.size}\n`, `\n${L.size + 1}\n`), v));
  const other = await logVerifier(L.verifier_key);
  other.keyId ^= 1;
  await assert.rejects(openCheckpoint(L.checkpoint, other));
  await assert.rejects(logVerifier(L.verifier_key.replace('e2ee-log.conclave/', 'e2ee-log.conclave/x')));
});

test('round vectors: view, commits, reveals, codes', async () => {
  const v = await verifiedAnnouncements();
  for (const w of V.rounds.views) hexEq(await viewHash(w.announcements.map((n) => v[n])), w.view);
  const log = await logVerifier(V.log.verifier_key);
  const cp = await openCheckpoint(V.log.checkpoint, log);
  const nonces = [];
  for (const c of V.rounds.commits) {
    const a = v[c.participant];
    hexEq(await nonceHash(a.meetingId, a.participantId, c.round, h(c.nonce)), c.nonce_hash);
    const got = await verifyCommit(h(c.commit), a);
    assert.equal(got.round, c.round);
    assert.equal(got.checkpoint, V.log.checkpoint);
    const r = parseReveal(h(c.reveal));
    hexEq(r.nonce, c.nonce);
    nonces.push({ participantId: a.participantId, nonce: h(c.nonce) });
    const bad = h(c.commit); bad[bad.length - 70] ^= 1;
    await assert.rejects(verifyCommit(bad, a));
  }
  const view = await viewHash([v.alice, v.bob]);
  for (const c of V.rounds.codes) assert.equal(await meetingCodeV2(view, cp, nonces, c.digits), c.code);
});

test('a round between two RoundStates agrees, and reveals only after every commit', async () => {
  const v = await verifiedAnnouncements();
  const view = [v.alice, v.bob];
  const a = new RoundState({ meetingId: v.alice.meetingId, selfId: v.alice.participantId, device: await devicePriv('alice'), digits: 7 });
  const b = new RoundState({ meetingId: v.bob.meetingId, selfId: v.bob.participantId, device: await devicePriv('bob'), digits: 7 });
  const ca = await a.begin(view, null);
  const cb = await b.begin(view, null);
  assert.equal(a.reveal(), null);
  await a.onCommit(v.bob.participantId, cb);
  await b.onCommit(v.alice.participantId, ca);
  const ra = a.reveal();
  const rb = b.reveal();
  assert.ok(ra && rb);
  assert.equal(a.reveal(), null);
  await a.onReveal(v.bob.participantId, rb);
  await b.onReveal(v.alice.participantId, ra);
  const code = await a.currentCode();
  assert.match(code, /^\d{3} \d{3} \d$/);
  assert.equal(await b.currentCode(), code);
});

test('name vectors: clean names and skeletons agree with Go', () => {
  for (const n of V.names) {
    assert.equal(cleanName(n.name), n.clean, JSON.stringify(n.name));
    assert.equal(skeleton(n.name), n.skeleton, JSON.stringify(n.name));
  }
});

test('look-alike vectors: chosen names against names and accounts agree with Go', () => {
  assert.ok(V.lookalikes.length > 10);
  for (const c of V.lookalikes) {
    const what = JSON.stringify([c.chosen, c.other]);
    assert.equal(looksLike(c.chosen, c.other, false), c.looksLike, what);
    assert.equal(looksLike(c.chosen, c.other, true), c.within, what);
    assert.equal(claimsAccount(c.chosen, c.other), c.claimsAccount, what);
  }
});
