// Simulated meetings of MeetingCrypto clients through a fake relay (the
// signaling server, which may misbehave), each with a FrameCryptor as its
// media worker: key exchange, meeting codes, frame decryption across joins
// and leaves, and what a malicious relay can and cannot do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MeetingCrypto, KEY_REQUEST, ORG_CHANGED_WARNING, LEAVE_DEBOUNCE_MS, SWITCH_DELAY_MS, VIEW_GRACE_MS } from './meetingcrypto.mjs';
import { FrameCryptor } from './framecryptor.mjs';
import { KeyRing, newSenderKey } from './keys.mjs';
import {
  fromBase64, toBase64, generateDeviceKey, exportPublicKey, issueCredential, signAnnouncement,
  generateEphemeral, parseAnnouncement, concat, encodeAnnouncementBody, verifyAnnouncement, RoundState, isReveal,
  parseReveal, viewHash, meetingCodeV2, signCommit, encodeReveal, verifyCommit,
  Writer, utf8, compare, ROUND_QUIET_MS, ROUND_MAX_WAIT_MS, COMMIT_RATE, COMMIT_BURST,
} from './index.mjs';

const MEETING = 'meeting-1';
const ORG = 'acme';

async function makeCA() {
  const pair = await generateDeviceKey(false);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/**
 * The organisation's transparency log as MeetingCrypto asks it (the real
 * LogMonitor is tested with the vectors and against the server): which
 * credentials are logged, which devices revoked, when each was first
 * certified. One per world, shared by its clients (an honest, unsplit log).
 */
class FakeLog extends EventTarget {
  constructor() { super(); this.logged = new Set(); this.revokedKeys = new Set(); this.first = new Map(); this.verifier = null; }
  add(credential, firstCertifiedMs = Date.now() - 30 * 86400 * 1000) {
    this.logged.add(toBase64(credential));
    this.first.set(toBase64(credential), firstCertifiedMs);
  }
  revoke(credential) {
    this.revokedKeys.add(toBase64(credential));
    this.dispatchEvent(new CustomEvent('advanced', { detail: {} }));
  }
  async status(credential) {
    const k = toBase64(credential);
    return { logged: this.logged.has(k), revoked: this.revokedKeys.has(k), firstCertifiedMs: this.first.get(k) ?? 0 };
  }
  checkpoint() { return null; }
  split() { return ''; }
  async adopt() { return null; }
}

/** A device identity, certified by ca for userId unless userId is ''; logged in log unless told. */
async function identity(ca, userId = '', { orgKey = ca.publicKey, changed = false, log = null, unlogged = false, displayName = userId, firstCertifiedMs, alarms = [] } = {}) {
  const pair = await generateDeviceKey(false);
  const publicKeyRaw = await exportPublicKey(pair.publicKey);
  let credential = null;
  if (userId) {
    const now = Math.floor(Date.now() / 1000);
    credential = await issueCredential(ca.privateKey, { orgId: ORG, userId, account: userId, displayName, devicePublicKey: publicKeyRaw, notBefore: now - 60, notAfter: now + 3600, serial: 1 });
    if (log && !unlogged) log.add(credential, firstCertifiedMs);
  }
  return { device: { privateKey: pair.privateKey, publicKeyRaw }, credential, org: { orgId: ORG, name: 'Acme Corp', key: changed ? null : orgKey, changed }, log, alarms };
}

/** Fake clock shared by a world. */
function clock() {
  const c = { now: Date.now(), timers: [], seq: 0 };
  c.env = {
    now: () => c.now,
    setTimeout: (fn, ms) => { const id = ++c.seq; c.timers.push({ id, at: c.now + ms, fn }); return id; },
    clearTimeout: (id) => { c.timers = c.timers.filter((t) => t.id !== id); },
  };
  return c;
}

/**
 * The media worker of a client: a FrameCryptor whose async key operations
 * are tracked. Frames without a key fail at once unless keyWaitMs is given.
 */
class Frames {
  constructor(env, keyWaitMs = 0) { this.c = new FrameCryptor({ ...env, keyWaitMs }); this.ops = []; }
  setSendKey(k) { this.ops.push(this.c.setSendKey(k)); }
  setReceiver(p, i) { this.c.setReceiver(p, i); }
  addKey(p, k) { this.ops.push(this.c.addKey(p, k)); }
  removeParticipant(p) { this.c.removeParticipant(p); }
  reset() { this.c.reset(); }
}

/**
 * The relay: keeps the latest announcement per participant, sends all of
 * them to a newcomer right after its welcome, relays key to one and chat
 * to all others. `tamper(m)` may change, drop (null) or multiply (array)
 * what it delivers: m = {type, from, to, payload}.
 */
class World {
  constructor(ca) {
    this.ca = ca;
    this.log = new FakeLog();
    this.clock = clock();
    this.clients = new Map();
    this.announcements = new Map();
    this.tamper = (m) => m;
    this.seq = 0;
    this.sent = [];
    this.chats = new Map();
    /** The FrameCryptor's keyWaitMs for clients joining from now on. */
    this.keyWaitMs = 0;
    /** join() lets the rounds settle (settleRounds); false: it only delivers. */
    this.joinSettles = true;
  }

  async join(name, userId = '', idOpts = {}) {
    const id = `p${++this.seq}-${name}`;
    const ident = await identity(this.ca, userId, { log: this.log, ...idOpts });
    const frames = new Frames(this.clock.env, this.keyWaitMs);
    const c = { id, name, frames, chats: [], gateway: idOpts.gateway ?? '' };
    c.ident = ident;
    c.mc = new MeetingCrypto({ identity: ident, send: (type, f) => this.#from(c, type, f), frames, env: this.clock.env, retentionMs: 5000, codeDigits: idOpts.codeDigits });
    c.mc.addEventListener('chat', (e) => c.chats.push(e.detail));
    const others = [...this.clients.values()];
    this.clients.set(id, c);
    c.mc.start({ meetingId: MEETING, selfId: id, name, participants: others.map((o) => ({ id: o.id, name: o.name, gateway: o.gateway })) });
    for (const o of others) o.mc.setServerParticipants(this.#listFor(o));
    for (const [from, payload] of this.announcements) this.deliver(c, { type: 'announce', from, payload });
    if (this.joinSettles) await this.settleRounds();
    else await this.settle();
    return c;
  }

  leave(c) {
    this.clients.delete(c.id);
    this.announcements.delete(c.id);
    for (const o of this.clients.values()) o.mc.setServerParticipants(this.#listFor(o));
  }

  #listFor(c) {
    return [...this.clients.values()].filter((o) => o !== c).map((o) => ({ id: o.id, name: o.name, gateway: o.gateway }));
  }

  #from(c, type, f) {
    if (!this.clients.has(c.id)) return false;
    this.sent.push({ from: c.id, type, ...f });
    if (type === 'announce') {
      this.announcements.set(c.id, f.payload);
      for (const o of this.clients.values()) if (o !== c) this.deliver(o, { type, from: c.id, payload: f.payload });
    } else if (type === 'key') {
      const o = this.clients.get(f.to);
      if (o) this.deliver(o, { type, from: c.id, to: f.to, payload: f.payload });
    } else if (type === 'chat' || type === 'verify') {
      for (const o of this.clients.values()) if (o !== c) this.deliver(o, { type, from: c.id, payload: f.payload });
    }
    return true;
  }

  deliver(to, m) {
    let out = this.tamper({ ...m, to: to.id });
    if (out === null) return;
    if (!Array.isArray(out)) out = [out];
    for (const x of out) to.mc.receive(x);
  }

  async settle() {
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setImmediate(r));
      for (const c of this.clients.values()) {
        await c.mc.tail;
        await Promise.all(c.frames.ops);
      }
    }
  }

  /**
   * Delivers everything and lets the rounds of the meeting code run their
   * course: a commit waits until its member's view has been quiet for
   * ROUND_QUIET_MS, and for a token when its member committed often. It
   * advances the clock to each owed commit in turn until none is owed.
   */
  async settleRounds() {
    for (let i = 0; i < 1000; i++) {
      await this.settle();
      const dues = [...this.clients.values()].map((c) => c.mc.rounds?.due() ?? null).filter((d) => d !== null);
      if (!dues.length) return;
      await this.advance(Math.max(Math.min(...dues) - this.clock.now, 0));
    }
    throw new Error('the rounds never settled');
  }

  async advance(ms) {
    const end = this.clock.now + ms;
    for (;;) {
      this.clock.timers.sort((a, b) => a.at - b.at);
      const t = this.clock.timers[0];
      if (!t || t.at > end) break;
      this.clock.timers.shift();
      this.clock.now = t.at;
      t.fn();
      await this.settle();
    }
    this.clock.now = end;
    await this.settle();
  }
}

const frame = (n) => Uint8Array.from({ length: 200 }, (_, i) => (i * 7 + n) & 0xff);

/** Encrypts a frame on `from` and decrypts it on `to`: the plaintext, or the drop reason. */
async function through(from, to, codec = 'vp9', data = frame(1)) {
  const enc = await from.frames.c.encrypt(codec, data);
  assert.ok(enc instanceof Uint8Array, `${from.name} could not encrypt: ${enc}`);
  return to.frames.c.decrypt(from.id, codec, enc);
}

async function assertDecrypts(from, to) {
  const data = frame(Math.floor(Math.random() * 255));
  const out = await through(from, to, 'vp8', Uint8Array.of(0x31, ...data)); // a VP8 delta frame
  assert.ok(out instanceof Uint8Array, `${to.name} cannot decrypt ${from.name}'s frame: ${out}`);
  assert.deepEqual(out, Uint8Array.of(0x31, ...data));
}

const codes = (...cs) => cs.map((c) => c.mc.snapshot().code);

test('two participants: same code, verified, frames decrypt both ways', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const b = await w.join('Bob', 'bob');
  const [ca, cb] = codes(a, b);
  assert.match(ca, /^\d{3} \d{3} \d{3} \d{3}$/);
  assert.equal(ca, cb);
  for (const c of [a, b]) {
    const s = c.mc.snapshot();
    assert.equal(s.state, 'e2ee', JSON.stringify(s));
    assert.equal(s.participants.length, 2);
    for (const p of s.participants) {
      assert.equal(p.e2ee, 'verified');
      assert.equal(p.certified, true);
      assert.equal(p.orgName, 'Acme Corp');
      assert.match(p.fingerprint, /^([0-9A-F]{4} ){7}[0-9A-F]{4}$/);
    }
  }
  await assertDecrypts(a, b);
  await assertDecrypts(b, a);
  // Identical plaintexts give different ciphertexts.
  const x = await a.frames.c.encrypt('opus', frame(9));
  const y = await a.frames.c.encrypt('opus', frame(9));
  assert.notDeepEqual(x, y);
});

test('three participants (one guest): same code everywhere, all pairs decrypt, the guest is not certified', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const b = await w.join('Bob', 'bob');
  const g = await w.join('Guest');
  const [ca, cb, cg] = codes(a, b, g);
  assert.equal(ca, cb);
  assert.equal(ca, cg);
  for (const x of [a, b, g]) {
    assert.equal(x.mc.snapshot().state, 'e2ee');
    for (const y of [a, b, g]) if (x !== y) await assertDecrypts(x, y);
  }
  const guestView = a.mc.snapshot().participants.find((p) => p.id === g.id);
  assert.equal(guestView.certified, false);
  assert.equal(guestView.userId, '');
  assert.equal(a.mc.snapshot().participants.find((p) => p.id === b.id).userId, 'bob');
});

test('the code changes when someone joins or leaves', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const two = a.mc.snapshot().code;
  const c = await w.join('Carol');
  const three = a.mc.snapshot().code;
  assert.notEqual(two, three);
  assert.deepEqual(codes(a, b, c), [three, three, three]);
  w.leave(c);
  await w.settleRounds();
  // A new epoch: fresh nonces, so a new code, the same for both.
  const after = a.mc.snapshot().code;
  assert.match(after, /^\d{3} \d{3} \d{3} \d{3}$/);
  assert.equal(b.mc.snapshot().code, after);
  assert.notEqual(after, two);
  assert.notEqual(after, three);
});

/** No two of the clients show the same code while their views differ ('' is "verifying"). */
function apart(x, y) {
  const [cx, cy] = codes(x, y);
  return cx === '' || cy === '' || cx !== cy;
}

test('join ratchet: a newcomer cannot decrypt what was sent before it joined', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const before = await a.frames.c.encrypt('vp9', frame(3));
  const genBefore = a.mc.snapshot().senderKeyStep;
  const c = await w.join('Carol');
  assert.equal(a.mc.snapshot().senderKeyStep, genBefore + 1, 'Alice ratcheted for Carol');
  assert.equal(await c.frames.c.decrypt(a.id, 'vp9', before), 'no-key');
  assert.ok((await b.frames.c.decrypt(a.id, 'vp9', before)) instanceof Uint8Array, 'Bob still decrypts the old frame');
  // After the join everyone decrypts Alice; Bob derived the ratcheted key himself.
  await assertDecrypts(a, c);
  await assertDecrypts(a, b);
  await assertDecrypts(c, b);
});

test('leave rotation: after the rotation the one who left decrypts nothing', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const c = await w.join('Carol');
  await assertDecrypts(a, c);
  const gen = a.mc.snapshot().senderKeyGeneration;
  w.leave(c);
  await w.settle();
  await w.advance(LEAVE_DEBOUNCE_MS - 1);
  assert.equal(a.mc.snapshot().senderKeyGeneration, gen, 'no rotation before the debounce');
  await w.advance(1);
  assert.equal(a.mc.snapshot().senderKeyGeneration, gen + 1, 'rotated after the debounce');
  // The new key is sent at once, used SWITCH_DELAY_MS later: Bob has it before it is used.
  await assertDecrypts(a, b);
  await w.advance(SWITCH_DELAY_MS);
  const f = await a.frames.c.encrypt('vp9', frame(5));
  assert.equal(a.frames.c.report().sendingSince[gen + 1], w.clock.now, "Alice's worker notes when it began encrypting with the rotated key");
  assert.equal(await c.frames.c.decrypt(a.id, 'vp9', f), 'no-key');
  assert.ok((await b.frames.c.decrypt(a.id, 'vp9', f)) instanceof Uint8Array);
  await assertDecrypts(b, a);
  assert.equal(b.mc.snapshot().state, 'e2ee');
  assert.deepEqual(b.mc.snapshot().participants.map((p) => p.id).sort(), [a.id, b.id].sort());
  // Bob's worker reports when it first decrypted each of Alice's generations, and no key.
  const seen = b.frames.c.report().participants[a.id];
  assert.deepEqual(seen.last, { generation: gen + 1, step: 0 });
  assert.deepEqual(Object.keys(seen.firstDecrypt).map(Number), [gen, gen + 1]);
  assert.equal(seen.firstDecrypt[gen + 1], w.clock.now);
  assert.ok(seen.decrypted >= 2 && seen.noKey === 0 && seen.auth === 0, JSON.stringify(seen));
  assert.doesNotMatch(JSON.stringify(b.frames.c.report()), /key"/);
  const gone = c.frames.c.report().participants[a.id];
  assert.equal(gone.noKey, 1, 'Carol could not decrypt the frame sent after the rotation');
});

test('a gateway (a telephone through the server) turns the meeting "not end-to-end" while present; after it leaves, a rotation and end-to-end again', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  assert.equal(a.mc.snapshot().state, 'e2ee');
  const g = await w.join('Alice (phone)', '', { gateway: 'sip' });
  const snap = a.mc.snapshot();
  assert.equal(snap.state, 'not-e2ee', 'a gateway in the meeting is not end-to-end');
  assert.deepEqual(snap.gateways, [g.id]);
  assert.equal(snap.participants.find((p) => p.id === g.id).e2ee, 'gateway');
  assert.match(snap.warnings.join(' '), /Alice \(phone\) is a telephone connected through the server: the server hears everything/);
  // It holds the keys: that is what a gateway is.
  await assertDecrypts(a, g);
  const gen = a.mc.snapshot().senderKeyGeneration;
  w.leave(g);
  await w.settle();
  await w.advance(LEAVE_DEBOUNCE_MS + SWITCH_DELAY_MS);
  const after = a.mc.snapshot();
  assert.equal(after.senderKeyGeneration, gen + 1, 'Alice rotated after the gateway left');
  assert.equal(after.state, 'e2ee', 'end-to-end again once the gateway is gone');
  assert.deepEqual(after.gateways, []);
  assert.doesNotMatch(after.warnings.join(' '), /telephone/);
  const f = await a.frames.c.encrypt('vp9', frame(9));
  assert.equal(await g.frames.c.decrypt(a.id, 'vp9', f), 'no-key', 'the gateway cannot decrypt after the rotation');
  assert.ok((await b.frames.c.decrypt(a.id, 'vp9', f)) instanceof Uint8Array);
});

test('frames of a rotated key that overtake its key message wait for it; a key that never comes stalls them once', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  w.keyWaitMs = 400;
  const b = await w.join('Bob');
  w.keyWaitMs = 0;
  const c = await w.join('Carol');
  const d = await w.join('Dave');
  const held = [];
  const holdKeysToBob = (m) => (m.type === 'key' && m.to === b.id ? (held.push(m), null) : m);
  const track = (p) => { const t = { done: false }; t.result = p.then((x) => { t.done = true; return x; }); return t; };
  const rotate = async (gone) => {
    w.leave(gone);
    await w.settle();
    await w.advance(LEAVE_DEBOUNCE_MS + SWITCH_DELAY_MS);
    assert.ok(held.length > 0, "Alice's rotated key to Bob was held back");
    const data = frame(held.length);
    return { data, enc: await a.frames.c.encrypt('vp9', data) };
  };

  // The key message comes while the frame waits.
  w.tamper = holdKeysToBob;
  let f = await rotate(c);
  const first = track(b.frames.c.decrypt(a.id, 'vp9', f.enc));
  await w.settle();
  await w.advance(200);
  assert.equal(first.done, false, 'the frame waits for its key');
  w.tamper = (m) => m;
  for (const m of held.splice(0)) w.deliver(b, m);
  await w.settle();
  assert.deepEqual(await first.result, f.data, 'the waiting frame decrypts once its key comes');

  // The key message is lost: the first frame waits 400 ms, one on another
  // track shares the rest of that wait, and later ones do not wait.
  w.tamper = holdKeysToBob;
  f = await rotate(d);
  const waiting = [track(b.frames.c.decrypt(a.id, 'vp9', f.enc))];
  await w.settle();
  await w.advance(100);
  waiting.push(track(b.frames.c.decrypt(a.id, 'vp9', f.enc)));
  await w.settle();
  await w.advance(299);
  assert.deepEqual(waiting.map((t) => t.done), [false, false]);
  await w.advance(1);
  assert.deepEqual(waiting.map((t) => t.done), [true, true], 'both frames gave up 400 ms after the first began to wait');
  for (const t of waiting) assert.equal(await t.result, 'no-key');
  const later = track(b.frames.c.decrypt(a.id, 'vp9', f.enc));
  await w.settle();
  assert.equal(later.done, true, 'a frame after the wait ended is dropped at once');
  assert.equal(await later.result, 'no-key');
  assert.equal(b.frames.c.report().participants[a.id].noKey, 3);
});

test('KeyRing.awaits: newer generations than those held, as in Go (TestAwaits)', async () => {
  const ring = new KeyRing(3);
  assert.ok(ring.awaits(0) && ring.awaits(200), 'an empty ring awaits any generation');
  await ring.add({ ...newSenderKey(3, 255) });
  const want = { 255: false, 0: true, 1: true, 126: true, 127: false, 254: false, 200: false };
  for (const [gen, w] of Object.entries(want)) assert.equal(ring.awaits(Number(gen)), w, `holding 255: awaits(${gen})`);
});

test('a burst of leaves costs one rotation', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const c = await w.join('Carol');
  const d = await w.join('Dan');
  const gen = a.mc.snapshot().senderKeyGeneration;
  w.leave(c);
  await w.advance(400);
  w.leave(d);
  await w.advance(2000);
  assert.equal(a.mc.snapshot().senderKeyGeneration, gen + 1);
  await assertDecrypts(a, b);
});

test('a relay that substitutes an announced key is caught: signature warning, no keys for it', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const relayEcdh = await generateEphemeral();
  let fake = null;
  w.tamper = (m) => {
    if (m.type !== 'announce' || m.to === m.from) return m;
    const b = fromBase64(m.payload);
    const ann = parseAnnouncement(b);
    const at = ann.body.length - 2 - 8 - 2 - (ann.credential?.length ?? 0) - 65 - 65; // the ECDH key's offset
    const out = b.slice();
    out.set(relayEcdh.publicKey, at); // the relay's ECDH public key, signature unchanged
    fake = out;
    return { ...m, payload: toBase64(out) };
  };
  const b = await w.join('Bob', 'bob');
  assert.ok(fake);
  for (const x of [a, b]) {
    const s = x.mc.snapshot();
    assert.equal(s.state, 'warning');
    assert.equal(s.warnings.length, 1);
    assert.match(s.warnings[0], /invalid signature/);
    assert.equal(s.participants.find((p) => p.id !== x.id).e2ee, 'unverified');
  }
  assert.equal(await through(a, b), 'unknown-sender');
});

test('a relay that re-signs an announcement with its own device key: guest shows as another device, codes diverge; a certified user fails', async () => {
  const w = new World(await makeCA());
  const relayDevice = await generateDeviceKey(false);
  const relayRaw = await exportPublicKey(relayDevice.publicKey);
  const relayEcdh = await generateEphemeral();
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const real = parseAnnouncement(fromBase64(w.announcements.get(b.id)));
  const forged = await signAnnouncement(relayDevice.privateKey, {
    meetingId: MEETING, participantId: b.id, userId: '', displayName: 'Bob', ecdhPublicKey: relayEcdh.publicKey,
    devicePublicKey: relayRaw, credential: null, senderIndex: real.senderIndex, timestampMs: real.timestampMs,
  });
  const c = await w.join('Carol');
  c.mc.receive({ type: 'announce', from: b.id, payload: toBase64(forged) });
  await w.settle();
  // Carol now has a "Bob" with another device key: no code is shared with
  // her, and once the grace has passed Alice and Bob are told that Carol
  // sees another list.
  assert.ok(apart(c, a) && apart(c, b));
  assert.ok(c.mc.snapshot().warnings.some((x) => /device key of Bob changed/.test(x)));
  await w.advance(6000);
  assert.ok(a.mc.snapshot().warnings.some((x) => /Carol sees a different list of participants/.test(x)), a.mc.snapshot().warnings.join(' | '));

  // A certified participant's credential does not match a substituted device key.
  const w2 = new World(await makeCA());
  const x = await w2.join('Xena', 'xena');
  const y = await w2.join('Yann', 'yann');
  const realY = parseAnnouncement(fromBase64(w2.announcements.get(y.id)));
  const forgedY = await signAnnouncement(relayDevice.privateKey, {
    meetingId: MEETING, participantId: y.id, userId: 'yann', displayName: 'Yann', ecdhPublicKey: relayEcdh.publicKey,
    devicePublicKey: relayRaw, credential: realY.credential, senderIndex: realY.senderIndex, timestampMs: realY.timestampMs,
  });
  const solo = await w2.join('Solo', 'solo');
  solo.mc.receive({ type: 'announce', from: y.id, payload: toBase64(forgedY) });
  await w2.settle();
  assert.ok(x);
  const s = solo.mc.snapshot();
  assert.equal(s.state, 'warning');
  assert.match(s.warnings.join(' '), /belongs to another device/);
});

test('ghosts: a guest ghost shown to everyone is verified but not certified and never keyed; shown to one, codes diverge', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const b = await w.join('Bob', 'bob');
  const ghostDevice = await generateDeviceKey(false);
  const ghostEcdh = await generateEphemeral();
  const ghost = await signAnnouncement(ghostDevice.privateKey, {
    meetingId: MEETING, participantId: 'ghost', userId: '', displayName: 'Nobody', ecdhPublicKey: ghostEcdh.publicKey,
    devicePublicKey: await exportPublicKey(ghostDevice.publicKey), credential: null, senderIndex: 77, timestampMs: Date.now(),
  });
  a.mc.receive({ type: 'announce', from: 'ghost', payload: toBase64(ghost) });
  await w.settle();
  assert.ok(apart(a, b), 'shown to Alice only: no common code');
  const g = a.mc.snapshot().participants.find((p) => p.id === 'ghost');
  assert.deepEqual({ certified: g.certified, e2ee: g.e2ee, listed: g.listed, name: g.name }, { certified: false, e2ee: 'connecting', listed: false, name: 'Nobody' });
  assert.equal(a.mc.snapshot().state, 'connecting', 'a participant that never sends a key keeps the meeting "connecting"');
  b.mc.receive({ type: 'announce', from: 'ghost', payload: toBase64(ghost) });
  await w.settle();
  // Shown to everyone: the ghost is in every list, and since it does not
  // take part in the round (it has no commit to give), nobody gets a code.
  assert.deepEqual(codes(a, b), ['', '']);
  assert.ok(b.mc.snapshot().participants.some((p) => p.id === 'ghost'));
});

test('ghosts with a forged credential, another meeting id or a relayed id are refused with a warning', async () => {
  const ca = await makeCA();
  const w = new World(ca);
  const a = await w.join('Alice', 'alice');
  const codeBefore = a.mc.snapshot().code;
  const fakeCA = await makeCA();
  const ghostDevice = await generateDeviceKey(false);
  const ghostRaw = await exportPublicKey(ghostDevice.publicKey);
  const ghostEcdh = await generateEphemeral();
  const now = Math.floor(Date.now() / 1000);
  const forgedCred = await issueCredential(fakeCA.privateKey, { orgId: ORG, userId: 'ceo', account: 'ceo', displayName: 'CEO', devicePublicKey: ghostRaw, notBefore: now - 10, notAfter: now + 3600, serial: 9 });
  const ann = (over) => signAnnouncement(ghostDevice.privateKey, {
    meetingId: MEETING, participantId: 'ghost', userId: '', displayName: 'Ghost', ecdhPublicKey: ghostEcdh.publicKey,
    devicePublicKey: ghostRaw, credential: null, senderIndex: 5, timestampMs: Date.now(), ...over,
  });
  const cases = [
    [await ann({ userId: 'ceo', credential: forgedCred }), 'ghost', /not issued by your organisation/],
    [await ann({ meetingId: 'another-meeting' }), 'ghost', /another meeting/],
    [await ann({}), 'someone-else', /relayed as coming from/],
    [await ann({ userId: 'ceo' }), 'ghost', /claims an account/],
  ];
  for (const [payload, from, re] of cases) {
    a.mc.receive({ type: 'announce', from, payload: toBase64(payload) });
    await w.settle();
    const s = a.mc.snapshot();
    assert.equal(s.state, 'warning');
    assert.ok(s.warnings.some((x) => re.test(x)), `${re} in ${s.warnings}`);
    assert.equal(s.code, codeBefore, 'a refused announcement is not in the code');
    assert.equal(s.participants.length, 1);
  }
});

test('a participant the server lists without an announcement is "not end-to-end" after the grace period', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  a.mc.setServerParticipants([{ id: 'silent', name: 'Silent' }]);
  await w.settle();
  assert.equal(a.mc.snapshot().state, 'connecting');
  await w.advance(11000);
  const s = a.mc.snapshot();
  assert.equal(s.state, 'not-e2ee');
  assert.equal(s.participants.find((p) => p.id === 'silent').e2ee, 'unverified');
});

test('dropped key messages: no plaintext, then recovery by key request once they flow again', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  let drop = true;
  w.tamper = (m) => (drop && m.type === 'key' && m.from === a.id ? null : m);
  const b = await w.join('Bob');
  assert.equal(b.mc.snapshot().participants.find((p) => p.id === a.id).e2ee, 'connecting');
  assert.equal(b.mc.snapshot().state, 'connecting');
  assert.equal(await through(a, b), 'no-key');
  drop = false;
  await w.advance(1600);
  assert.equal(await through(a, b), 'no-key'); // still lacking: now it is time to ask
  const missing = b.frames.c.missingKeys();
  assert.deepEqual(missing, [a.id]);
  const sent = [];
  w.tamper = (m) => { sent.push(m); return m; };
  for (const p of missing) b.mc.requestKey(p);
  await w.settle();
  assert.ok(sent.some((m) => m.type === 'key' && m.from === b.id && m.payload === toBase64(KEY_REQUEST)));
  await assertDecrypts(a, b);
  assert.equal(b.mc.snapshot().state, 'e2ee');
  // Requests are rate limited.
  sent.length = 0;
  b.mc.requestKey(a.id);
  await w.settle();
  assert.equal(sent.length, 0);
});

test('a key message that does not open raises a warning naming the participant', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  w.tamper = (m) => {
    if (m.type !== 'key' || m.from !== a.id) return m;
    const b = fromBase64(m.payload);
    b[b.length - 1] ^= 1;
    return { ...m, payload: toBase64(b) };
  };
  const b = await w.join('Bob');
  const s = b.mc.snapshot();
  assert.equal(s.state, 'warning');
  assert.ok(s.warnings.some((x) => /key message from Alice could not be opened/.test(x)), s.warnings.join());
});

test('chat: sealed, relayed, opened and verified; tampered messages are reported, not shown', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const b = await w.join('Bob');
  const c = await w.join('Carol');
  await a.mc.sendText('hello, world');
  await w.settle();
  for (const x of [b, c]) {
    assert.equal(x.chats.length, 1);
    assert.deepEqual({ ok: x.chats[0].ok, text: x.chats[0].text, from: x.chats[0].from, name: x.chats[0].name }, { ok: true, text: 'hello, world', from: a.id, name: 'Alice' });
  }
  assert.equal(a.chats.length, 1);
  assert.equal(a.chats[0].self, true);
  // A file descriptor travels the same way.
  const file = { id: new Uint8Array(16).fill(1), name: 'notes.txt', size: 3, mimeType: 'text/plain', key: new Uint8Array(32).fill(2), sha256: new Uint8Array(32).fill(3) };
  await b.mc.sendFile(file);
  await w.settle();
  assert.equal(a.chats.at(-1).file.name, 'notes.txt');
  // The relay alters a message: shown as unverifiable.
  w.tamper = (m) => {
    if (m.type !== 'chat') return m;
    const x = fromBase64(m.payload);
    x[x.length - 1] ^= 1;
    return { ...m, payload: toBase64(x) };
  };
  await c.mc.sendText('secret plan');
  await w.settle();
  const got = a.chats.at(-1);
  assert.equal(got.ok, false);
  assert.equal(got.text, undefined);
  assert.equal(got.name, 'Carol');
  // A chat from a participant without a verified announcement.
  a.mc.receive({ type: 'chat', from: 'nobody', payload: toBase64(concat(Uint8Array.of(1), new Uint8Array(120))) });
  await w.settle();
  assert.equal(a.chats.at(-1).ok, false);
});

test('a chat that arrives before its key waits for it', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const held = [];
  w.tamper = (m) => {
    if (m.type === 'key' && m.from === a.id) { held.push(m); return null; }
    return m;
  };
  const b = await w.join('Bob');
  await a.mc.sendText('early');
  await w.settle();
  assert.equal(b.chats.length, 0);
  w.tamper = (m) => m;
  for (const m of held) w.deliver(b, m);
  await w.settle();
  assert.equal(b.chats.length, 1);
  assert.equal(b.chats[0].text, 'early');
});

test('a contradicted org pin: warning, nobody certified, own announcement without credential', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice', { changed: true });
  const b = await w.join('Bob', 'bob');
  const s = a.mc.snapshot();
  assert.equal(s.state, 'warning');
  assert.deepEqual(s.warnings, [ORG_CHANGED_WARNING]);
  assert.ok(s.participants.every((p) => !p.certified));
  assert.equal(b.mc.snapshot().participants.find((p) => p.id === a.id).certified, false);
  assert.equal(b.mc.snapshot().state, 'e2ee');
  await assertDecrypts(a, b);
});

test('a fresh start (new meeting id) starts over; a repeated announcement changes nothing', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const step = a.mc.snapshot().senderKeyStep;
  b.mc.resumed(); // sends the same announcement again
  await w.settle();
  assert.equal(a.mc.snapshot().senderKeyStep, step, 'no ratchet for a repeated announcement');
  assert.equal(a.mc.snapshot().code, b.mc.snapshot().code);
  await a.mc.start({ meetingId: 'meeting-2', selfId: a.id, name: 'Alice', participants: [] });
  await w.settle();
  assert.equal(a.mc.snapshot().participants.length, 1);
  assert.equal(a.mc.snapshot().state, 'e2ee');
});

// ---- issue 11: what a server cannot do ------------------------------------------

/** The version-1 meeting code (the regression fixture of the relay's search). */
async function legacyCode(anns, digits) {
  const list = [...anns].sort((x, y) => compare(utf8(x.participantId), utf8(y.participantId)) || compare(x.body, y.body));
  const w = new Writer().raw(utf8('Conclave E2EE v1 meeting code'));
  for (const a of list) w.bytes32(a.body);
  const h = new DataView(await globalThis.crypto.subtle.digest('SHA-256', w.bytes()));
  return (h.getBigUint64(0) % (10n ** BigInt(digits))).toString();
}

test('the relay runs the birthday search against two browsers: in 20 attempts their codes always differ', async () => {
  const DIGITS = 7;
  const ATTEMPTS = 20;
  const relay = await generateDeviceKey(false);
  const relayRaw = await exportPublicKey(relay.publicKey);
  const eph = await generateEphemeral();
  const wa = new World(await makeCA());
  const wb = new World(wa.ca);
  const alice = await wa.join('Alice', '', { codeDigits: DIGITS });
  const bob = await wb.join('Bob', '', { codeDigits: DIGITS });
  const realA = await verifyAnnouncement(fromBase64(wa.announcements.get(alice.id)), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
  const realB = await verifyAnnouncement(fromBase64(wb.announcements.get(bob.id)), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
  const fake = (pid, name, ts) => ({ meetingId: MEETING, participantId: pid, userId: '', displayName: name, ecdhPublicKey: eph.publicKey,
    devicePublicKey: relayRaw, credential: null, senderIndex: 7, timestampMs: ts });
  const bodyOf = (a) => ({ participantId: a.participantId, body: encodeAnnouncementBody(a) });
  let searched = 0;
  for (let n = 0; n < ATTEMPTS; n++) {
    // The search: fake announcements whose version-1 codes collide.
    const start = Date.now() + n * 100000;
    const seen = new Map();
    let pair = null;
    for (let i = 0; i < 1 << 13 && !pair; i++) seen.set(await legacyCode([realA, bodyOf(fake(bob.id, 'Bob', start + i))], DIGITS), start + i);
    for (let j = 0; j < 1 << 13 && !pair; j++) {
      const ts = seen.get(await legacyCode([bodyOf(fake(alice.id, 'Alice', start + j)), realB], DIGITS));
      if (ts !== undefined) pair = { fakeB: fake(bob.id, 'Bob', ts), fakeA: fake(alice.id, 'Alice', start + j) };
    }
    searched += seen.size;
    if (!pair) continue; // no collision this time: try again with other time stamps
    const codeA = await playFake(wa, alice, pair.fakeB, relay.privateKey, DIGITS);
    const codeB = await playFake(wb, bob, pair.fakeA, relay.privateKey, DIGITS);
    assert.match(codeA, /^\d{3} \d{3} \d$/);
    assert.match(codeB, /^\d{3} \d{3} \d$/);
    assert.notEqual(codeA, codeB, `attempt ${n}: both read ${codeA}`);
    // The next attempt needs a new epoch on both sides: the fakes leave.
    alice.mc.participantLeft(bob.id);
    bob.mc.participantLeft(alice.id);
    await wa.settle();
    await wb.settle();
  }
  assert.ok(searched > 0);
});

/** Announces the relay's fake to the victim and plays its side of the round (commit first, reveal after the victim). */
async function playFake(w, victim, fakeFields, relayKey, digits) {
  const payload = await signAnnouncement(relayKey, fakeFields);
  const fakeAnn = await verifyAnnouncement(payload, { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
  const own = await verifyAnnouncement(fromBase64(w.announcements.get(victim.id)), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
  const from = w.sent.length;
  victim.mc.setServerParticipants([{ id: fakeAnn.participantId, name: fakeAnn.displayName }]);
  victim.mc.receive({ type: 'announce', from: fakeAnn.participantId, payload: toBase64(payload) });
  await w.settleRounds(); // the victim commits once its view is quiet
  const rs = new RoundState({ meetingId: MEETING, selfId: fakeAnn.participantId, device: relayKey, digits });
  let commit = await rs.begin([own, fakeAnn], null);
  // The victim committed on seeing the fake: the fake joins its round
  // (round numbers are public) and commits before the victim reveals.
  const feed = async (start) => {
    let revealed = false;
    for (const m of w.sent.slice(start)) {
      if (m.type !== 'verify' || m.from !== victim.id) continue;
      const b = fromBase64(m.payload);
      if (isReveal(b)) {
        revealed = true;
        await rs.onReveal(victim.id, b);
      } else {
        await rs.onCommit(victim.id, b);
      }
    }
    return revealed;
  };
  await feed(from);
  commit = rs.pending?.() ?? commit;
  const sent = w.sent.length;
  victim.mc.receive({ type: 'verify', from: fakeAnn.participantId, payload: toBase64(commit) });
  await w.settle();
  assert.ok(await feed(sent), 'the victim revealed once it held the relay\'s commit');
  victim.mc.receive({ type: 'verify', from: fakeAnn.participantId, payload: toBase64(rs.reveal()) });
  await w.settle();
  assert.equal(victim.mc.snapshot().code, await rs.currentCode());
  return victim.mc.snapshot().code;
}

test('the relay commits again after the victims revealed, with nonces it chose knowing theirs: the victims start a new round and their codes differ', async () => {
  const DIGITS = 7;
  const ATTEMPTS = 10;
  const relay = await generateDeviceKey(false);
  const relayRaw = await exportPublicKey(relay.publicKey);
  const eph = await generateEphemeral();
  const wa = new World(await makeCA());
  const wb = new World(wa.ca);
  const alice = await wa.join('Alice', '', { codeDigits: DIGITS });
  const bob = await wb.join('Bob', '', { codeDigits: DIGITS });
  const ann = async (w, c) => verifyAnnouncement(fromBase64(w.announcements.get(c.id)), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
  const fake = (pid, name, ts) => ({ meetingId: MEETING, participantId: pid, userId: '', displayName: name, ecdhPublicKey: eph.publicKey,
    devicePublicKey: relayRaw, credential: null, senderIndex: 7, timestampMs: ts });
  const lastNonce = (w, c) => {
    const m = w.sent.filter((x) => x.type === 'verify' && x.from === c.id && isReveal(fromBase64(x.payload))).at(-1);
    return parseReveal(fromBase64(m.payload)).nonce;
  };
  const nonce = async (tag, i) => new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', utf8(`${tag} ${i}`)));
  for (let n = 0; n < ATTEMPTS; n++) {
    const ts = Date.now() + n;
    const fakeB = fake(bob.id, 'Bob', ts);
    const fakeA = fake(alice.id, 'Alice', ts);
    await playFake(wa, alice, fakeB, relay.privateKey, DIGITS);
    await playFake(wb, bob, fakeA, relay.privateKey, DIGITS);
    const annFB = await verifyAnnouncement(await signAnnouncement(relay.privateKey, fakeB), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
    const annFA = await verifyAnnouncement(await signAnnouncement(relay.privateKey, fakeA), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
    const viewA = await viewHash([await ann(wa, alice), annFB]);
    const viewB = await viewHash([annFA, await ann(wb, bob)]);
    const nA = lastNonce(wa, alice);
    const nB = lastNonce(wb, bob);
    // The relay's search over nonces of its own, knowing the victims'.
    const seen = new Map();
    let x = null;
    let y = null;
    for (let i = 0; i < 1 << 13; i++) {
      const c = await nonce(`x${n}`, i);
      seen.set(await meetingCodeV2(viewA, null, [{ participantId: alice.id, nonce: nA }, { participantId: bob.id, nonce: c }], DIGITS), c);
    }
    for (let j = 0; j < 1 << 14 && !x; j++) {
      const c = await nonce(`y${n}`, j);
      const hit = seen.get(await meetingCodeV2(viewB, null, [{ participantId: alice.id, nonce: c }, { participantId: bob.id, nonce: nB }], DIGITS));
      if (hit) [x, y] = [hit, c];
    }
    assert.ok(x, `attempt ${n}: the search found no collision`);
    const recommit = async (w, victim, fakeAnn, view, chosen) => {
      const round = 1000000 * (n + 1);
      const c = await signCommit(relay.privateKey, { meetingId: MEETING, participantId: fakeAnn.participantId, round, view, checkpoint: '' }, chosen);
      const from = w.sent.length;
      victim.mc.receive({ type: 'verify', from: fakeAnn.participantId, payload: toBase64(c) });
      victim.mc.receive({ type: 'verify', from: fakeAnn.participantId, payload: toBase64(encodeReveal({ meetingId: MEETING, participantId: fakeAnn.participantId, round, nonce: chosen })) });
      await w.settleRounds(); // a move waits for a token when the victim committed often
      const moved = w.sent.slice(from).some((m) => m.type === 'verify' && m.from === victim.id && !isReveal(fromBase64(m.payload)));
      return { code: victim.mc.snapshot().code, moved };
    };
    const a = await recommit(wa, alice, annFB, viewA, x);
    const b = await recommit(wb, bob, annFA, viewB, y);
    assert.ok(!a.code || a.code !== b.code, `attempt ${n}: the relay chose its nonces after the victims revealed: both read ${a.code}`);
    assert.ok(a.moved && b.moved, `attempt ${n}: a victim did not start a new round with a new commit`);
    alice.mc.participantLeft(bob.id);
    bob.mc.participantLeft(alice.id);
    await wa.settle();
    await wb.settle();
  }
});

test('a participant cannot use up the rounds: its commit to the last round is refused with a warning, and the others agree once it left', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice');
  const b = await w.join('Bob');
  const m = await w.join('Mal');
  assert.equal(new Set(codes(a, b, m)).size, 1);
  // Mal's client signs a commit of its view for the last round a u32 numbers.
  const malAnn = await verifyAnnouncement(fromBase64(w.announcements.get(m.id)), { meetingId: MEETING, nowSeconds: Date.now() / 1000 });
  const own = w.sent.filter((x) => x.type === 'verify' && x.from === m.id && !isReveal(fromBase64(x.payload))).at(-1);
  const c = await verifyCommit(fromBase64(own.payload), malAnn);
  const last = await signCommit(m.ident.device.privateKey, { meetingId: MEETING, participantId: m.id, round: 0xffffffff, view: c.view,
    checkpoint: c.checkpoint }, new Uint8Array(32));
  // From now on Mal's client sends only that.
  w.tamper = (x) => (x.from === m.id ? null : x);
  for (const x of [a, b]) x.mc.receive({ type: 'verify', from: m.id, to: x.id, payload: toBase64(last) });
  await w.settle();
  const warned = [a, b].map((x) => x.mc.snapshot().warnings);
  w.leave(m);
  await w.settleRounds();
  const [ca, cb] = codes(a, b);
  assert.match(ca, /^\d{3} \d{3} \d{3} \d{3}$/, 'Alice shows a code after Mal left');
  assert.equal(cb, ca);
  for (const ws of warned) assert.ok(ws.some((t) => t.includes('commitment of Mal')), ws.join(' | '));
});

test('revocation: the revoked device is shown revoked, gets no key of the rotation and cannot decrypt after it', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const b = await w.join('Bob', 'bob');
  const m = await w.join('Mallory', 'mallory');
  await assertDecrypts(a, m);
  const gen = a.mc.snapshot().senderKeyGeneration;
  w.log.revoke(m.ident.credential);
  await w.settle();
  await w.advance(LEAVE_DEBOUNCE_MS + SWITCH_DELAY_MS + 10);
  for (const c of [a, b]) {
    const s = c.mc.snapshot();
    assert.ok(s.warnings.some((x) => /revoked the device of mallory/.test(x)), s.warnings.join(' | '));
    assert.ok(!s.participants.some((p) => p.id === m.id && p.certified), 'still listed as certified');
    assert.equal(s.senderKeyGeneration, gen + 1, `${c.name} rotated`);
  }
  assert.equal(a.mc.snapshot().code, b.mc.snapshot().code);
  await assertDecrypts(a, b);
  assert.ok(!((await through(a, m)) instanceof Uint8Array), 'the revoked device decrypts after the rotation');
});

test('impersonation by display name: a second account joining as "Alice" is shown as itself, flagged as a look-alike', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice', { displayName: 'Alice' });
  const x = await w.join('Alice', 'bob', { displayName: 'Bob Stone' });
  const g = await w.join('\u0410lice\u202e');
  const s = a.mc.snapshot();
  const vx = s.participants.find((p) => p.id === x.id);
  assert.deepEqual({ name: vx.name, account: vx.account, freeName: vx.freeName, nameDiffers: vx.nameDiffers, certified: vx.certified },
    { name: 'Bob Stone', account: 'bob', freeName: 'Alice', nameDiffers: true, certified: true });
  assert.match(vx.lookalike, /Alice \(@alice\)/);
  const vg = s.participants.find((p) => p.id === g.id);
  assert.equal(vg.certified, false);
  assert.equal(vg.name, '\u0410lice', 'bidi controls removed');
  assert.match(vg.lookalike, /Alice/);
  const self = s.participants.find((p) => p.self);
  assert.equal(self.lookalike, '', 'the real Alice is not flagged against herself');
});

test('a device certified less than a day ago is flagged as new', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const r = await w.join('Alice', 'alice', { firstCertifiedMs: Date.now() - 3600 * 1000 });
  const v = a.mc.snapshot().participants.find((p) => p.id === r.id);
  assert.equal(v.newDevice, true);
  assert.ok(a.mc.snapshot().warnings.some((x) => /uses a new device, first certified 60 minutes ago/.test(x)), a.mc.snapshot().warnings.join(' | '));
});

test('a credential the log does not hold is not certified', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice');
  const r = await w.join('Rogue', 'alice', { unlogged: true });
  const v = a.mc.snapshot().participants.find((p) => p.id === r.id);
  assert.deepEqual({ certified: v.certified, pending: v.pending }, { certified: false, pending: true });
});

test('an identity whose pinned log or org key the server withheld shows the alarm in the meeting (review of issue 11)', async () => {
  const w = new World(await makeCA());
  const a = await w.join('Alice', 'alice', { alarms: ['The server no longer gives the identity log key this browser pinned.'] });
  const s = a.mc.snapshot();
  assert.equal(s.state, 'warning');
  assert.ok(s.warnings.some((x) => /no longer gives the identity log key/.test(x)), s.warnings.join(' | '));
});

test('look-alike names: a title added, an account written out, a second account with the same name (review of issue 11)', async () => {
  const w = new World(await makeCA());
  const b = await w.join('Bob Stone', 'bob', { displayName: 'Bob Stone' });
  const a = await w.join('Alice Martin', 'alice', { displayName: 'Alice Martin' });
  const twin = await w.join('Alice Martin', 'alice.martin', { displayName: 'Alice Martin' });
  const ceo = await w.join('Alice Martin (CEO)');
  const al = await w.join('Al (@bob)');
  const seen = new Map(b.mc.snapshot().participants.map((p) => [p.id, p]));
  assert.match(seen.get(ceo.id).lookalike, /^Alice Martin \(@alice/);
  assert.equal(seen.get(al.id).lookalike, 'Bob Stone (@bob)');
  // Two certified accounts with one name: both flagged, each naming the other.
  assert.equal(seen.get(twin.id).lookalike, 'Alice Martin (@alice)');
  assert.equal(seen.get(a.id).lookalike, 'Alice Martin (@alice.martin)');
  assert.equal(seen.get(b.id).lookalike, '');
});

/** The commits each client sent. */
function commitsBy(w) {
  const out = new Map();
  for (const m of w.sent) if (m.type === 'verify' && !isReveal(fromBase64(m.payload))) out.set(m.from, (out.get(m.from) ?? 0) + 1);
  return out;
}

test('a burst of joins shares verification rounds: a few commits each, one code, no different-list warning (Go: TestJoinBurstSharesRounds)', async () => {
  const N = 12;
  const w = new World(await makeCA());
  w.joinSettles = false;
  const cs = [];
  for (let i = 0; i < N; i++) {
    cs.push(await w.join(`P${i}`));
    await w.advance(50); // faster than ROUND_QUIET_MS
  }
  await w.settleRounds();
  await w.advance(VIEW_GRACE_MS);
  await w.settleRounds();
  const all = codes(...cs);
  assert.match(all[0], /^\d{3} \d{3} \d{3} \d{3}$/);
  assert.equal(new Set(all).size, 1, all.join(' | '));
  const commits = commitsBy(w);
  for (const c of cs) {
    const n = commits.get(c.id) ?? 0;
    assert.ok(n >= 1 && n <= 3, `${c.name} committed ${n} times for a burst of ${N} joins`);
    assert.equal(c.mc.snapshot().participants.length, N);
    assert.ok(!c.mc.snapshot().warnings.some((t) => t.includes('different list')), c.mc.snapshot().warnings.join(' | '));
  }
});

test('a continuous stream of joins still gives a round every ROUND_MAX_WAIT_MS, not one per join (Go: TestJoinStreamKeepsRounds)', async () => {
  const N = 24;
  const w = new World(await makeCA());
  w.joinSettles = false;
  const cs = [];
  for (let i = 0; i < N; i++) {
    cs.push(await w.join(`P${i}`));
    await w.advance(250); // never quiet for ROUND_QUIET_MS
  }
  await w.settleRounds();
  await w.advance(VIEW_GRACE_MS);
  await w.settleRounds();
  assert.equal(new Set(codes(...cs)).size, 1);
  assert.notEqual(codes(cs[0])[0], '');
  // 6 s of joins: one commit per ROUND_MAX_WAIT_MS (3) and the last one.
  const n = commitsBy(w).get(cs[0].id);
  assert.ok(n >= 3 && n <= 5, `the first member committed ${n} times during ${N} joins`);
  for (const c of cs) assert.ok(!c.mc.snapshot().warnings.some((t) => t.includes('different list')), c.mc.snapshot().warnings.join(' | '));
});

test('the pace of the rounds: a quiet view, the longest wait, the commit budget; an owed commit reveals nothing (Go: roundpace_test.go)', async () => {
  const clock = { t: 1_800_000_000_000 };
  const member = async (pid) => {
    const dev = await generateDeviceKey(false);
    const eph = await generateEphemeral();
    const payload = await signAnnouncement(dev.privateKey, { meetingId: MEETING, participantId: pid, userId: '', displayName: pid,
      ecdhPublicKey: eph.publicKey, devicePublicKey: await exportPublicKey(dev.publicKey), credential: null, senderIndex: 1, timestampMs: clock.t });
    return { dev, ann: await verifyAnnouncement(payload, { meetingId: MEETING, nowSeconds: clock.t / 1000 }) };
  };
  const a = await member('p-a');
  const b = await member('p-b');
  const r = new RoundState({ meetingId: MEETING, selfId: 'p-a', device: a.dev.privateKey, digits: 7, now: () => clock.t });
  // Three changes 100 ms apart: one commit, ROUND_QUIET_MS after the last.
  const start = clock.t;
  const view = [a.ann];
  for (let i = 0; i < 3; i++) {
    if (i) clock.t += 100;
    view.push(i === 0 ? b.ann : (await member(`p-${i}`)).ann);
    await r.change(view, null);
    assert.equal(await r.commitDue(), null, `a commit at once after change ${i + 1}`);
  }
  assert.equal(r.due(), start + 200 + ROUND_QUIET_MS);
  clock.t = r.due() - 1;
  assert.equal(await r.commitDue(), null);
  clock.t += 1;
  assert.ok(await r.commitDue());
  assert.equal(r.due(), null);
  // A change every 200 ms: a commit at most ROUND_MAX_WAIT_MS after the first.
  const two = [a.ann, b.ann];
  let first = 0;
  for (let step = 0; step < 600; step++) {
    if (step % 20 === 0) {
      two.push((await member(`p-s${step}`)).ann);
      await r.change(two, null);
      if (!first) first = clock.t;
    }
    if (await r.commitDue()) {
      assert.ok(clock.t - first <= ROUND_MAX_WAIT_MS, `committed ${clock.t - first} ms after the first change`);
      first = 0;
    }
    assert.ok(!first || clock.t - first <= ROUND_MAX_WAIT_MS);
    clock.t += 10;
  }
  // A peer that keeps leading to higher rounds: moves at once while tokens
  // last, then one per token; while a move waits, no reveal and no code.
  const pair = [a.ann, b.ann];
  await r.change(pair, null);
  clock.t = r.due();
  await r.commitDue();
  const made = r.commitCount();
  const t0 = clock.t;
  const vh = await viewHash(pair);
  const nonce = new Uint8Array(32);
  let lastHash = null;
  const from = r.round + 1;
  for (let round = from; round < from + 29; round++) {
    await r.onCommit('p-b', await signCommit(b.dev.privateKey, { meetingId: MEETING, participantId: 'p-b', round, view: vh, checkpoint: '' }, nonce));
    await r.onReveal('p-b', encodeReveal({ meetingId: MEETING, participantId: 'p-b', round, nonce }));
    let moved = r.pending();
    if (!moved) {
      assert.equal(r.reveal(), null, 'revealed while a move waits for a token');
      assert.equal(await r.currentCode(), '');
      assert.ok(r.due() > clock.t);
      clock.t = r.due();
      moved = await r.commitDue();
    }
    const c = await verifyCommit(moved, a.ann);
    assert.equal(c.round, round);
    assert.notDeepEqual(c.nonceHash, lastHash);
    lastHash = c.nonceHash;
    assert.ok(r.reveal());
    assert.notEqual(await r.currentCode(), '');
    assert.ok(r.commitCount() - made <= COMMIT_BURST + COMMIT_RATE * (clock.t - t0) / 1000 + 1);
  }
  assert.ok(clock.t - t0 >= 15000, `29 moves took ${clock.t - t0} ms: the budget did not slow them`);
});
