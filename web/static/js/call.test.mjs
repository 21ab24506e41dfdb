// Tests of the Call: two browsers' calls meet through a fake signaling
// server, with fake WebSockets and peer connections (testing/fakes.mjs)
// but the real end-to-end encryption (MeetingCrypto, FrameCryptor and
// WebCrypto): they verify each other, show the same meeting code, encrypt
// frames for each other and chat; resumes, key requests, a browser that
// cannot encrypt media and the end of the call are handled as the page
// expects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Call, NO_FRAME_ENCRYPTION } from './call.mjs';
import { world, flush } from './testing/fakes.mjs';
import { FrameCryptor } from './e2ee/framecryptor.mjs';
import { KEY_REQUEST } from './e2ee/meetingcrypto.mjs';
import { ROUND_QUIET_MS } from './e2ee/round.mjs';
import { generateDeviceKey, exportPublicKey, issueCredential, toBase64 } from './e2ee/index.mjs';

console.warn = () => {};

const ORG = 'acme';

/** The organisation's log as the calls see it: every credential issued here is logged. */
class Log extends EventTarget {
  constructor() { super(); this.logged = new Set(); this.refreshes = 0; this.verifier = null; }
  async status(c) { return { logged: this.logged.has(toBase64(c)), revoked: false, firstCertifiedMs: Date.now() - 30 * 86400 * 1000 }; }
  async refresh() { this.refreshes++; }
  checkpoint() { return null; }
  split() { return ''; }
}
const log = new Log();

async function certified(ca, userId) {
  const pair = await generateDeviceKey(false);
  const publicKeyRaw = await exportPublicKey(pair.publicKey);
  const now = Math.floor(Date.now() / 1000);
  const credential = await issueCredential(ca.privateKey, { orgId: ORG, userId, account: userId, displayName: userId, devicePublicKey: publicKeyRaw, notBefore: now - 60, notAfter: now + 3600, serial: 1 });
  log.logged.add(toBase64(credential));
  return { device: { privateKey: pair.privateKey, publicKeyRaw }, credential, org: { orgId: ORG, name: 'Acme Corp', key: ca.publicKey, changed: false }, log };
}

/**
 * The page's media encryption as a Call sees it: transforms for the
 * session (no-ops here), keys into a real FrameCryptor, and the events of
 * the worker.
 */
class FakeFrames extends EventTarget {
  constructor() {
    super();
    this.c = new FrameCryptor({ keyWaitMs: 0 });
    this.available = true;
    this.ops = [];
    this.resets = 0;
  }
  peerConfig() { return {}; }
  attachSender() {}
  attachReceiver() {}
  mapReceiver() {}
  setSendKey(k) { this.ops.push(this.c.setSendKey(k)); }
  setReceiver(p, i) { this.c.setReceiver(p, i); }
  addKey(p, k) { this.ops.push(this.c.addKey(p, k)); }
  removeParticipant(p) { this.c.removeParticipant(p); }
  reset() { this.resets++; this.c.reset(); }
}

/**
 * The signaling server for the calls: welcome, participant lists, and the
 * relay of announce (to everyone, and the latest of each to a newcomer),
 * key (to one) and chat (to the others), as internal/meeting does.
 */
class Server {
  constructor() {
    this.members = []; // {id, name, ws}
    this.announcements = new Map();
    this.seen = new Map(); // ws -> messages handled
    this.seq = 0;
  }

  /** Handles what every socket sent since the last call. */
  pump(sockets) {
    for (const ws of sockets) {
      const from = this.seen.get(ws) ?? 0;
      const todo = ws.sent.slice(from);
      this.seen.set(ws, ws.sent.length);
      for (const m of todo) this.#handle(ws, m);
    }
  }

  #member(ws) { return this.members.find((p) => p.ws === ws); }

  #handle(ws, m) {
    const me = this.#member(ws);
    switch (m.type) {
      case 'join': {
        const old = m.resume ? this.members.find((p) => p.resume === m.resume) : null;
        if (old) {
          old.ws = ws;
          ws.receive({ type: 'welcome', resumed: true, self: { id: old.id, name: old.name }, resume: old.resume, participants: this.#others(old), roomInfo: { alias: 'weekly', name: 'Weekly' } });
          return;
        }
        const p = { id: `p${++this.seq}`, name: m.name, ws, resume: `r${this.seq}` };
        const others = this.#others(p);
        this.members.push(p);
        ws.receive({ type: 'welcome', meeting: 'm-1', uploadToken: `up-${p.id}`, self: { id: p.id, name: p.name }, resume: p.resume, participants: others, roomInfo: { alias: 'weekly', name: 'Weekly' } });
        for (const o of this.members) if (o !== p) o.ws.receive({ type: 'participant-joined', participant: { id: p.id, name: p.name } });
        for (const [from, payload] of this.announcements) ws.receive({ type: 'announce', from, payload });
        return;
      }
      case 'announce':
        this.announcements.set(me.id, m.payload);
        for (const o of this.members) if (o !== me) o.ws.receive({ type: 'announce', from: me.id, payload: m.payload });
        return;
      case 'key':
        this.members.find((o) => o.id === m.to)?.ws.receive({ type: 'key', from: me.id, payload: m.payload });
        return;
      case 'chat':
      case 'verify':
        for (const o of this.members) if (o !== me) o.ws.receive({ type: m.type, from: me.id, payload: m.payload });
        return;
      case 'leave':
        this.members = this.members.filter((o) => o !== me);
        this.announcements.delete(me.id);
        ws.receive({ type: 'bye', reason: 'left' });
        for (const o of this.members) o.ws.receive({ type: 'participant-left', participant: { id: me.id, name: me.name } });
    }
  }

  #others(p) { return this.members.filter((o) => o !== p).map((o) => ({ id: o.id, name: o.name })); }
}

/** A meeting of calls on one server, with the E2EE clock the test drives. */
class Meeting {
  constructor(ca) {
    this.ca = ca;
    this.server = new Server();
    this.people = [];
    this.clock = { now: Date.now(), timers: [], seq: 0 };
    const c = this.clock;
    this.cryptoEnv = {
      now: () => c.now,
      setTimeout: (fn, ms) => { const id = ++c.seq; c.timers.push({ id, at: c.now + ms, fn }); return id; },
      clearTimeout: (id) => { c.timers = c.timers.filter((t) => t.id !== id); },
    };
  }

  async join(name) {
    const w = world();
    const frames = new FakeFrames();
    const call = new Call({ room: 'weekly', name, identity: await certified(this.ca, name.toLowerCase()), frames, url: 'wss://h/ws', env: w.env, cryptoEnv: this.cryptoEnv });
    const p = { name, w, frames, call, events: [] };
    for (const type of ['joined', 'left', 'chat', 'chat-reset', 'e2ee-state', 'participants']) call.addEventListener(type, (e) => p.events.push([type, e.detail]));
    this.people.push(p);
    call.join();
    w.ws().open();
    await this.settle();
    return p;
  }

  /** Lets messages, E2EE tasks and key operations run until nothing moves. */
  async settle() {
    for (let i = 0; i < 20; i++) {
      this.server.pump(this.people.flatMap((p) => p.w.sockets));
      await flush();
      for (const p of this.people) {
        await p.call.crypto.tail;
        await Promise.all(p.frames.ops);
      }
    }
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

const frame = Uint8Array.from({ length: 300 }, (_, i) => (i * 13) & 0xff);

async function meeting() {
  const pair = await generateDeviceKey(false);
  return new Meeting({ privateKey: pair.privateKey, publicKey: pair.publicKey });
}

test('two calls verify each other, show one meeting code and encrypt frames for each other', async () => {
  const m = await meeting();
  const alice = await m.join('Alice');
  const bob = await m.join('Bob');
  await m.advance(200); // the rotation on Bob's join
  await m.advance(ROUND_QUIET_MS); // the verification round, once the view is quiet

  for (const p of [alice, bob]) {
    const e = p.call.e2ee;
    assert.ok(e, `${p.name} has no E2EE state`);
    assert.equal(e.state, 'e2ee', `${p.name}: ${JSON.stringify(e)}`);
    const other = e.participants.find((v) => !v.self);
    assert.equal(other.e2ee, 'verified');
    assert.equal(other.certified, true);
    assert.equal(other.orgName, 'Acme Corp');
    assert.ok(p.events.some(([t]) => t === 'e2ee-state'), `${p.name} got no e2ee-state event`);
  }
  assert.ok(alice.call.e2ee.code);
  assert.equal(alice.call.e2ee.code, bob.call.e2ee.code);

  // Keys went from the E2EE to the frame encryption: Alice's frames
  // decrypt at Bob's, and the other way.
  const aliceId = alice.call.session.self.id;
  const bobId = bob.call.session.self.id;
  const enc = await alice.frames.c.encrypt('vp9', frame);
  assert.ok(enc instanceof Uint8Array, `Alice could not encrypt: ${enc}`);
  assert.notDeepEqual(enc, frame);
  assert.deepEqual(await bob.frames.c.decrypt(aliceId, 'vp9', enc), frame);
  const back = await bob.frames.c.encrypt('opus', frame);
  assert.deepEqual(await alice.frames.c.decrypt(bobId, 'opus', back), frame);
});

test('chat goes end to end; a new meeting resets the chat, a resume does not', async () => {
  const m = await meeting();
  const alice = await m.join('Alice');
  const bob = await m.join('Bob');
  await m.advance(200);
  assert.equal(alice.events.filter(([t]) => t === 'chat-reset').length, 1);

  await alice.call.sendText('Good morning');
  await m.settle();
  const got = bob.events.filter(([t]) => t === 'chat').map(([, d]) => d);
  assert.equal(got.length, 1);
  assert.equal(got[0].text, 'Good morning');
  assert.equal(got[0].ok, true);
  assert.equal(got[0].from, alice.call.session.self.id);
  // What the server relayed is not the text.
  const relayed = alice.w.ws().ofType('chat').at(-1);
  assert.ok(!Buffer.from(relayed.payload, 'base64').toString('latin1').includes('Good morning'));

  // The WebSocket drops; the session resumes: the same meeting, no reset,
  // the announcement is sent again.
  const announcesBefore = alice.w.sockets.flatMap((s) => s.ofType('announce')).length;
  alice.w.ws().drop();
  await alice.w.advance(1000);
  alice.w.ws().open();
  await m.settle();
  assert.equal(alice.events.filter(([t]) => t === 'joined').at(-1)[1].resumed, true);
  assert.equal(alice.events.filter(([t]) => t === 'chat-reset').length, 1, 'a resume reset the chat');
  assert.equal(alice.w.sockets.flatMap((s) => s.ofType('announce')).length, announcesBefore + 1);
  assert.equal(alice.call.e2ee.code, bob.call.e2ee.code);
});

test('another node of the same meeting (a failover) keeps the chat; the participant is new there', async () => {
  const m = await meeting();
  const alice = await m.join('Alice');
  await m.join('Bob');
  await m.advance(200);
  const before = alice.call.session.self.id;
  // Alice's node dies; another node of the cluster has the meeting but
  // not her connection: a new participant, the same meeting id.
  m.server.members = m.server.members.filter((p) => p.id !== before);
  alice.w.ws().drop();
  await alice.w.advance(1000);
  alice.w.ws().open();
  await m.settle();
  const last = alice.events.filter(([t]) => t === 'joined').at(-1)[1];
  assert.equal(last.resumed, false);
  assert.notEqual(alice.call.session.self.id, before);
  assert.equal(alice.events.filter(([t]) => t === 'chat-reset').length, 1, 'the failover reset the chat');
});

test('frames under a missing key make the call ask the sender for it, until the call ends', async () => {
  const m = await meeting();
  const alice = await m.join('Alice');
  const bob = await m.join('Bob');
  await m.advance(200);
  const aliceId = alice.call.session.self.id;
  const requests = () => bob.w.ws().ofType('key').filter((k) => k.to === aliceId && k.payload === toBase64(KEY_REQUEST));

  bob.frames.dispatchEvent(new CustomEvent('missing-key', { detail: { participant: aliceId } }));
  assert.equal(requests().length, 1, 'no key request sent');

  bob.call.leave();
  await m.settle();
  assert.equal(bob.events.at(-1)[0], 'left');
  assert.equal(bob.call.e2ee, null, 'the E2EE state outlived the call');
  assert.ok(bob.frames.resets > 0, 'the keys were not forgotten');
  m.clock.now += 10000; // past the key request interval
  bob.frames.dispatchEvent(new CustomEvent('missing-key', { detail: { participant: aliceId } }));
  assert.equal(requests().length, 1, 'a call that ended still asked for keys');
  await assert.rejects(bob.call.sendText('late'), /not in the meeting/);
});

test('a browser that cannot encrypt media turns the state into a warning that says so', async () => {
  const m = await meeting();
  const alice = await m.join('Alice');
  await m.settle();
  alice.frames.available = false;
  alice.frames.dispatchEvent(new CustomEvent('failed', { detail: { message: 'worker failed' } }));
  const e = alice.call.e2ee;
  assert.equal(e.state, 'warning');
  assert.equal(e.warnings[0], NO_FRAME_ENCRYPTION);
  assert.equal(alice.events.filter(([t]) => t === 'e2ee-state').at(-1)[1], e);
});

test('session events reach the page after the call acted on them', async () => {
  const m = await meeting();
  const alice = await m.join('Alice');
  const seen = [];
  alice.call.addEventListener('participants', () => seen.push(alice.call.crypto.listed.size));
  await m.join('Bob');
  assert.deepEqual(seen.slice(-1), [1], 'the page heard of Bob before the E2EE listed him');
});
