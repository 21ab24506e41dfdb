// Tests of the protocol client against fake WebSocket, RTCPeerConnection,
// MediaStream and timers: the order of a join, renegotiation, mapping of
// subscribed tracks by mid, reconnection and ICE recovery.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Session, ICE_RECOVERY_MS, PUBLISH_RETRIES, PUBLISH_RETRY_MS, FAILOVER_DELAY_MS } from './session.mjs';
import { reconnectDelay } from './backoff.mjs';
import { FakeTrack, FakeStream, fakeOffer, world, flush } from './testing/fakes.mjs';

// The session warns on the console about the failures these tests provoke.
console.warn = () => {};

function record(session) {
  const events = [];
  for (const type of ['status', 'participants', 'tracks', 'joined', 'error', 'left', 'waiting', 'room-state', 'knocks', 'muted', 'notice']) {
    session.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  return events;
}

const welcome = (over = {}) => ({
  type: 'welcome',
  self: { id: 'me', name: 'Ada', audio: true, video: true, screen: false },
  resume: 'resume-1',
  participants: [{ id: 'p1', name: 'Bob', audio: true, video: true, screen: false }],
  iceServers: [{ urls: ['stun:127.0.0.1:3478'] }],
  roomInfo: { alias: 'weekly', name: 'Weekly' },
  ...over,
});

/** Starts a session with a microphone and a camera and answers its first publish. */
async function joined(w, opts = {}) {
  const mic = new FakeTrack('audio', 'mic');
  const cam = new FakeTrack('video', 'cam');
  const s = new Session({ room: 'weekly', name: ' Ada ', url: 'wss://h/ws', media: { microphone: mic, camera: cam }, env: w.env, ...opts });
  const events = record(s);
  s.join();
  w.ws().open();
  w.ws().receive(welcome());
  await flush();
  return { s, events, mic, cam, pub: w.pcs[0], sub: w.pcs[1] };
}

// ---- tests ---------------------------------------------------------------------

test('the order of a join: join, welcome, publish with the tracks map, answer', async () => {
  const w = world();
  const { s, events, pub, sub } = await joined(w);
  const ws = w.ws();
  assert.equal(ws.url, 'wss://h/ws');
  assert.deepEqual(ws.sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada' });
  assert.equal(w.pcs.length, 2);
  assert.deepEqual(pub.config.iceServers, [{ urls: ['stun:127.0.0.1:3478'] }]);
  assert.deepEqual(pub.transceivers.map((t) => [t.kind, t.direction, t.mid]), [['audio', 'sendonly', '0'], ['video', 'sendonly', '1']]);
  assert.equal(pub.transceivers[0].streams[0], pub.transceivers[1].streams[0], 'microphone and camera share a stream');
  assert.deepEqual(pub.transceivers[1].codecs.map((c) => c.mimeType), ['video/VP8', 'video/VP9', 'video/rtx']);
  const [publish] = ws.ofType('publish');
  assert.deepEqual(publish.tracks, { 0: { source: 'microphone' }, 1: { source: 'camera' } });
  assert.match(publish.sdp, /^v=0/);
  assert.ok(publish.id);
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: true, video: true, screen: false });

  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  assert.deepEqual(pub.remoteDescription, { type: 'answer', sdp: 'v=0\r\nanswer' });
  assert.equal(s.pendingPublish, null);
  assert.equal(sub.transceivers.length, 0);
  assert.deepEqual(events.filter(([t]) => t === 'status').map(([, d]) => d.state), ['connecting', 'connected']);
  const last = events.filter(([t]) => t === 'participants').at(-1)[1];
  assert.equal(last.self.id, 'me');
  assert.deepEqual(last.participants.map((p) => p.name), ['Bob']);
});

test('a viewer without media publishes nothing and still subscribes', async () => {
  const w = world();
  const s = new Session({ room: 'weekly', name: 'Eve', url: 'wss://h/ws', env: w.env });
  s.join();
  w.ws().open();
  w.ws().receive(welcome());
  await flush();
  assert.equal(w.ws().ofType('publish').length, 0);
  assert.deepEqual(s.mediaState, { audio: false, video: false, screen: false });
  w.ws().receive({ type: 'subscribe-offer', sdp: fakeOffer({ 0: 'video' }), tracks: { 0: { participant: 'p1', source: 'camera', kind: 'video', stream: 's' } } });
  await flush();
  assert.equal(w.ws().ofType('subscribe-answer').length, 1);
  assert.equal(s.streamFor('p1', 'camera').getTracks().length, 1);
});

test('subscribed tracks go to tiles by mid; an absent mid means the track is gone', async () => {
  const w = world();
  const { s, events, sub } = await joined(w);
  const ws = w.ws();
  ws.receive({
    type: 'subscribe-offer',
    sdp: fakeOffer({ 0: 'audio', 1: 'video', 2: 'video', 3: 'audio' }),
    tracks: {
      0: { participant: 'p1', source: 'microphone', kind: 'audio', stream: 'a' },
      1: { participant: 'p1', source: 'camera', kind: 'video', stream: 'a' },
      2: { participant: 'p1', source: 'screen', kind: 'video', stream: 'b' },
      3: { participant: 'p1', source: 'screen-audio', kind: 'audio', stream: 'b' },
    },
  });
  await flush();
  assert.deepEqual(ws.ofType('subscribe-answer').map((m) => m.sdp), ['v=0\r\nanswer']);
  assert.equal(sub.remoteDescription.type, 'offer');
  const camera = s.streamFor('p1', 'camera');
  assert.deepEqual(camera.getTracks().map((t) => t.id), ['remote-0', 'remote-1']);
  assert.deepEqual(s.streamFor('p1', 'screen').getTracks().map((t) => t.id), ['remote-3', 'remote-2']);
  assert.ok(events.some(([t]) => t === 'tracks'));

  // The screen share ends and the camera moves to another mid.
  ws.receive({
    type: 'subscribe-offer',
    sdp: fakeOffer({ 0: 'audio', 1: 'video', 2: 'video', 3: 'audio' }),
    tracks: { 0: { participant: 'p1', source: 'microphone', kind: 'audio', stream: 'a' }, 2: { participant: 'p1', source: 'camera', kind: 'video', stream: 'a' } },
  });
  await flush();
  assert.equal(s.streamFor('p1', 'camera'), camera, 'the tile keeps its stream');
  assert.deepEqual(camera.getTracks().map((t) => t.id), ['remote-0', 'remote-2']);
  assert.equal(s.streamFor('p1', 'screen'), null);
});

test('candidates are trickled both ways', async () => {
  const w = world();
  const { pub, sub } = await joined(w);
  const ws = w.ws();
  pub.candidate({ candidate: 'candidate:1 1 udp 1 10.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'u', foo: 'x' });
  pub.candidate({ candidate: '', sdpMid: '0' }); // end of a generation: not sent
  pub.candidate(null);
  assert.deepEqual(ws.ofType('candidate'), [
    { v: 1, type: 'candidate', pc: 'pub', candidate: { candidate: 'candidate:1 1 udp 1 10.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'u' } },
    { v: 1, type: 'candidate', pc: 'pub', candidate: { candidate: '' } },
  ]);
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  ws.receive({ type: 'candidate', pc: 'pub', candidate: { candidate: 'candidate:2', sdpMid: '0' } });
  ws.receive({ type: 'subscribe-offer', sdp: fakeOffer({ 0: 'audio' }), tracks: {} });
  ws.receive({ type: 'candidate', pc: 'sub', candidate: { candidate: 'candidate:3', sdpMid: '0' } });
  await flush();
  assert.deepEqual(pub.candidates, [{ candidate: 'candidate:2', sdpMid: '0' }]);
  assert.deepEqual(sub.candidates, [{ candidate: 'candidate:3', sdpMid: '0' }]);
  assert.equal(sub.remoteDescription.type, 'offer', 'the candidate came after the offer was applied');
});

test('participants join, change and leave', async () => {
  const w = world();
  const { s, events } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'participant-joined', participant: { id: 'p2', name: 'Cy', audio: false, video: false, screen: false } });
  ws.receive({ type: 'participant-updated', participant: { id: 'p1', name: 'Bob', audio: false, video: true, screen: true } });
  ws.receive({ type: 'participant-left', participant: { id: 'p2', name: 'Cy' } });
  assert.deepEqual([...s.participants.values()], [{ id: 'p1', name: 'Bob', audio: false, video: true, screen: true }]);
  assert.equal(events.filter(([t]) => t === 'participants').length >= 4, true);
});

test('microphone mute, camera off and on, without renegotiation', async () => {
  const w = world();
  const { s, mic, pub } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  s.setMicrophoneEnabled(false);
  assert.equal(mic.enabled, false);
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: false, video: true, screen: false });
  s.setCamera(null);
  await flush();
  assert.equal(pub.transceivers[1].sender.track, null);
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: false, video: false, screen: false });
  const cam2 = new FakeTrack('video', 'cam2');
  s.setCamera(cam2);
  await flush();
  assert.equal(pub.transceivers[1].sender.track, cam2);
  assert.equal(ws.ofType('publish').length, 1, 'no renegotiation for mute or camera');
  assert.equal(s.self.video, true);
});

test('screen share adds sendonly transceivers, stopping omits their mids', async () => {
  const w = world();
  const { s, pub } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  const screen = new FakeTrack('video', 'screen');
  const screenAudio = new FakeTrack('audio', 'screen-audio');
  s.startScreen(screen, screenAudio);
  await flush();
  let publishes = ws.ofType('publish');
  assert.equal(publishes.length, 2);
  assert.deepEqual(publishes[1].tracks, { 0: { source: 'microphone' }, 1: { source: 'camera' }, 2: { source: 'screen' }, 3: { source: 'screen-audio' } });
  assert.equal(ws.ofType('state').at(-1).state.screen, true);
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer2' });
  await flush();

  s.stopScreen();
  await flush();
  publishes = ws.ofType('publish');
  assert.equal(publishes.length, 3);
  assert.deepEqual(publishes[2].tracks, { 0: { source: 'microphone' }, 1: { source: 'camera' } });
  assert.deepEqual(pub.transceivers.slice(2).map((t) => [t.direction, t.sender.track]), [['inactive', null], ['inactive', null]]);
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer3' });
  await flush();

  // Sharing again reuses the transceivers.
  s.startScreen(new FakeTrack('video', 'screen2'));
  await flush();
  assert.equal(pub.transceivers.length, 4);
  assert.deepEqual(ws.ofType('publish')[3].tracks, { 0: { source: 'microphone' }, 1: { source: 'camera' }, 2: { source: 'screen' } });
});

test('changes made while a publish is outstanding coalesce into one offer after the answer', async () => {
  const w = world();
  const { s } = await joined(w);
  const ws = w.ws();
  s.startScreen(new FakeTrack('video', 'x'));
  s.stopScreen();
  s.startScreen(new FakeTrack('video', 'y'));
  await flush();
  assert.equal(ws.ofType('publish').length, 1, 'waits for the answer');
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  assert.equal(ws.ofType('publish').length, 2);
  assert.deepEqual(ws.ofType('publish')[1].tracks, { 0: { source: 'microphone' }, 1: { source: 'camera' }, 2: { source: 'screen' } });
});

test('a refused publish is rolled back and retried', async () => {
  const w = world();
  const { pub } = await joined(w);
  const ws = w.ws();
  const [first] = ws.ofType('publish');
  ws.receive({ type: 'error', code: 'negotiation-failed', message: 'no', id: first.id, ref: 'publish' });
  await flush();
  assert.equal(pub.signalingState, 'stable');
  await w.advance(1000);
  assert.equal(ws.ofType('publish').length, 2);
});

test('a dropped WebSocket is resumed: same peer connections, unanswered publish sent again', async () => {
  const w = world();
  const { s, events, pub } = await joined(w);
  const first = w.ws();
  const [publish] = first.ofType('publish');
  pub.candidate({ candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 });
  first.drop();
  pub.candidate({ candidate: 'candidate:2', sdpMid: '0', sdpMLineIndex: 0 });
  assert.equal(events.filter(([t]) => t === 'status').at(-1)[1].text, 'Reconnecting…');
  await w.advance(499);
  assert.equal(w.sockets.length, 1);
  await w.advance(1);
  assert.equal(w.sockets.length, 2);
  const second = w.ws();
  second.open();
  assert.deepEqual(second.sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada', resume: 'resume-1' });
  second.receive(welcome({ resumed: true, resume: 'resume-2' }));
  await flush();
  assert.equal(w.pcs.length, 2, 'peer connections kept');
  assert.equal(s.pub, pub);
  assert.deepEqual(second.ofType('publish'), [publish]);
  assert.deepEqual(second.ofType('candidate').map((m) => m.candidate.candidate), ['candidate:2']);
  assert.equal(events.filter(([t]) => t === 'status').at(-1)[1].text, '');
  second.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  assert.equal(pub.remoteDescription.sdp, 'v=0\r\nanswer');
  assert.equal(s.resumeToken, 'resume-2');
});

test('reconnection backs off 0.5 s doubling to 5 s and resets after a welcome', async () => {
  const w = world();
  await joined(w);
  const delays = [];
  for (let i = 0; i < 6; i++) {
    const n = w.sockets.length;
    w.ws().drop();
    let waited = 0;
    while (w.sockets.length === n) {
      await w.advance(100);
      waited += 100;
    }
    delays.push(waited);
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 5000, 5000]);
  w.ws().open();
  w.ws().receive(welcome({ resumed: true }));
  await flush();
  w.ws().drop();
  const n = w.sockets.length;
  await w.advance(500);
  assert.equal(w.sockets.length, n + 1);
});

test('a welcome that does not resume starts the peer connections again, keeping local media', async () => {
  const w = world();
  const { s, pub, sub, cam } = await joined(w);
  w.ws().receive({ type: 'subscribe-offer', sdp: fakeOffer({ 0: 'video' }), tracks: { 0: { participant: 'p1', source: 'camera', kind: 'video', stream: 's' } } });
  await flush();
  w.ws().drop();
  await w.advance(500);
  w.ws().open();
  w.ws().receive(welcome({ resumed: false, self: { id: 'me2', name: 'Ada', audio: false, video: false, screen: false }, participants: [] }));
  await flush();
  assert.equal(pub.closed, true);
  assert.equal(sub.closed, true);
  assert.equal(w.pcs.length, 4);
  assert.equal(s.self.id, 'me2');
  assert.equal(s.streamFor('p1', 'camera'), null);
  assert.equal(w.pcs[2].transceivers[1].sender.track, cam);
  assert.deepEqual(w.ws().ofType('publish')[0].tracks, { 0: { source: 'microphone' }, 1: { source: 'camera' } });
});

test('ICE failure: restart pub with an ICE-restart offer, ask the server for sub', async () => {
  const w = world();
  const { pub, sub, events } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  pub.setICE('failed');
  await flush();
  assert.deepEqual(pub.offers.at(-1), { iceRestart: true });
  assert.match(ws.ofType('publish').at(-1).sdp, /ice-restart/);
  sub.setICE('failed');
  assert.deepEqual(ws.ofType('restart-ice'), [{ v: 1, type: 'restart-ice', pc: 'sub' }]);
  assert.equal(events.filter(([t]) => t === 'status').at(-1)[1].text, 'Reconnecting…');
  pub.setICE('connected');
  sub.setICE('connected');
  assert.equal(events.filter(([t]) => t === 'status').at(-1)[1].text, '');
  await w.advance(ICE_RECOVERY_MS * 2);
  assert.equal(w.sockets.length, 1, 'recovered: no rejoin');
});

test('ICE not recovered in 10 s: leave and join again from scratch', async () => {
  const w = world();
  const { sub } = await joined(w);
  const first = w.ws();
  sub.setICE('failed');
  await w.advance(ICE_RECOVERY_MS - 1);
  assert.equal(w.sockets.length, 1);
  await w.advance(1);
  assert.equal(first.ofType('leave').length, 1);
  assert.equal(sub.closed, true);
  assert.equal(w.sockets.length, 2);
  w.ws().open();
  assert.deepEqual(w.ws().sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada' }, 'no resume token');
});

test('fatal errors end the session without reconnecting', async () => {
  const w = world();
  const s = new Session({ room: 'nope', name: 'Ada', url: 'wss://h/ws', env: w.env });
  const events = record(s);
  s.join();
  w.ws().open();
  w.ws().receive({ type: 'error', code: 'room-not-found', message: 'No such meeting.', fatal: true });
  await flush();
  await w.advance(10000);
  assert.equal(w.sockets.length, 1);
  assert.deepEqual(events.find(([t]) => t === 'error')[1], { code: 'room-not-found', message: 'No such meeting.', fatal: true });
  assert.deepEqual(events.find(([t]) => t === 'left')[1], { reason: 'room-not-found', message: 'No such meeting.' });
});

test('bye ends the session with its reason', async () => {
  const w = world();
  const { events, pub } = await joined(w);
  w.ws().receive({ type: 'bye', reason: 'replaced' });
  await flush();
  await w.advance(10000);
  assert.equal(w.sockets.length, 1);
  assert.equal(pub.closed, true);
  assert.deepEqual(events.find(([t]) => t === 'left')[1], { reason: 'replaced', message: '' });
});

test('leave sends leave, closes everything and does not reconnect', async () => {
  const w = world();
  const { s, events, pub, sub } = await joined(w);
  const ws = w.ws();
  s.leave();
  assert.deepEqual(ws.ofType('leave'), [{ v: 1, type: 'leave' }]);
  assert.deepEqual(events.at(-1), ['left', { reason: 'leave', message: '' }]);
  assert.ok(pub.closed && sub.closed);
  await w.advance(10000);
  assert.equal(ws.readyState, 3);
  assert.equal(w.sockets.length, 1);
  s.leave(); // idempotent
});

test('non-fatal errors are reported, not fatal', async () => {
  const w = world();
  const { events } = await joined(w);
  w.ws().receive({ type: 'error', code: 'rate-limited', message: 'Slow down.' });
  assert.deepEqual(events.at(-1), ['error', { code: 'rate-limited', message: 'Slow down.', fatal: false }]);
  assert.equal(w.sockets.length, 1);
});

// ---- access control ----------------------------------------------------------

const UNAVAILABLE = 'This meeting is not available. Check the link and the PIN you were given.';
const ofType = (events, type) => events.filter(([t]) => t === type).map(([, d]) => d);

test('the PIN goes in every join, resumes included', async () => {
  const w = world();
  const s = new Session({ room: 'weekly', name: 'Ada', pin: '123456', url: 'wss://h/ws', env: w.env });
  s.join();
  w.ws().open();
  assert.deepEqual(w.ws().sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada', pin: '123456' });
  w.ws().receive(welcome());
  await flush();
  w.ws().drop();
  await w.advance(500);
  w.ws().open();
  assert.deepEqual(w.ws().sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada', resume: 'resume-1', pin: '123456' });
});

test('room-unavailable ends the session; a new session with a PIN tries again', async () => {
  const w = world();
  const s = new Session({ room: 'weekly', name: 'Ada', url: 'wss://h/ws', env: w.env });
  const events = record(s);
  s.join();
  w.ws().open();
  w.ws().receive({ type: 'error', code: 'room-unavailable', message: UNAVAILABLE, fatal: true, ref: 'join' });
  await flush();
  await w.advance(10000);
  assert.equal(w.sockets.length, 1, 'no reconnection');
  assert.equal(w.pcs.length, 0, 'no peer connection before a welcome');
  assert.deepEqual(ofType(events, 'left'), [{ reason: 'room-unavailable', message: UNAVAILABLE }]);

  const again = new Session({ room: 'weekly', name: 'Ada', pin: '654321', url: 'wss://h/ws', env: w.env });
  again.join();
  assert.equal(w.sockets.length, 2, 'a new WebSocket');
  w.ws().open();
  assert.deepEqual(w.ws().sent, [{ v: 1, type: 'join', room: 'weekly', name: 'Ada', pin: '654321' }]);
});

test('waiting for a host, then welcome: nothing is sent while waiting', async () => {
  const w = world();
  const mic = new FakeTrack('audio', 'mic');
  const s = new Session({ room: 'weekly', name: 'Gus', url: 'wss://h/ws', media: { microphone: mic }, env: w.env });
  const events = record(s);
  s.join();
  const ws = w.ws();
  ws.open();
  ws.receive({ type: 'waiting', wait: 'host', roomInfo: { alias: 'weekly', name: 'Weekly' } });
  await flush();
  assert.deepEqual(ofType(events, 'waiting'), [{ wait: 'host', roomInfo: { alias: 'weekly', name: 'Weekly' } }]);
  assert.equal(ofType(events, 'status').at(-1).state, 'waiting');
  assert.equal(w.pcs.length, 0);
  s.setMicrophoneEnabled(false); // a state change while waiting stays local
  assert.equal(s.mute('p1'), false);
  assert.deepEqual(ws.sent.map((m) => m.type), ['join']);

  ws.receive(welcome({ self: { id: 'me', name: 'Gus', role: 'guest', audio: false, video: false, screen: false }, roomState: { locked: false, guestsMayUnmute: true, guestsMayPresent: false, hostPresent: true } }));
  await flush();
  assert.equal(w.pcs.length, 2);
  assert.equal(s.self.role, 'guest');
  assert.deepEqual(ofType(events, 'room-state').at(-1).roomState, { locked: false, guestsMayUnmute: true, guestsMayPresent: false, hostPresent: true });
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: false, video: false, screen: false });
  assert.equal(ws.ofType('publish').length, 1);
});

test('waiting in the lobby, then denied', async () => {
  const w = world();
  const s = new Session({ room: 'weekly', name: 'Gus', url: 'wss://h/ws', env: w.env });
  const events = record(s);
  s.join();
  w.ws().open();
  w.ws().receive({ type: 'waiting', wait: 'lobby', roomInfo: { alias: 'weekly', name: 'Weekly' } });
  assert.equal(s.waitingFor, 'lobby');
  w.ws().receive({ type: 'bye', reason: 'denied' });
  await flush();
  await w.advance(10000);
  assert.equal(w.sockets.length, 1);
  assert.deepEqual(ofType(events, 'left'), [{ reason: 'denied', message: '' }]);
});

test('leave while waiting sends leave', async () => {
  const w = world();
  const s = new Session({ room: 'weekly', name: 'Gus', url: 'wss://h/ws', env: w.env });
  s.join();
  const ws = w.ws();
  ws.open();
  ws.receive({ type: 'waiting', wait: 'host', roomInfo: { alias: 'weekly', name: 'Weekly' } });
  s.leave();
  assert.deepEqual(ws.sent.map((m) => m.type), ['join', 'leave']);
});

test('bye reasons and the fatal removed end the session with that reason', async () => {
  for (const reason of ['no-host', 'removed', 'ended']) {
    const w = world();
    const { events } = await joined(w);
    w.ws().receive({ type: 'bye', reason });
    await flush();
    assert.deepEqual(ofType(events, 'left'), [{ reason, message: '' }]);
  }
  const w = world();
  const s = new Session({ room: 'weekly', name: 'Ada', url: 'wss://h/ws', env: w.env });
  const events = record(s);
  s.join();
  w.ws().open();
  w.ws().receive({ type: 'error', code: 'removed', message: 'A host removed you from this meeting.', fatal: true });
  await flush();
  await w.advance(10000);
  assert.equal(w.sockets.length, 1);
  assert.deepEqual(ofType(events, 'left'), [{ reason: 'removed', message: 'A host removed you from this meeting.' }]);
});

test('knocks come and go (hosts)', async () => {
  const w = world();
  const { s, events } = await joined(w);
  const ws = w.ws();
  const gus = { id: 'k1', name: 'Gus' };
  const ann = { id: 'k2', name: 'Ann', account: true };
  ws.receive({ type: 'knock', participant: gus });
  ws.receive({ type: 'knock', participant: ann });
  assert.deepEqual(ofType(events, 'knocks').at(-1), { knocks: [gus, ann], added: ann });
  ws.receive({ type: 'knock-ended', participant: { id: 'k1', name: 'Gus' } });
  assert.deepEqual(ofType(events, 'knocks').at(-1), { knocks: [ann], added: null });
  ws.receive({ type: 'knock-ended', participant: { id: 'nobody' } }); // ignored
  assert.equal(ofType(events, 'knocks').length, 4, 'welcome, two knocks, one end');
  assert.equal(s.admit('k2'), true);
  assert.equal(s.deny('k2'), true);
  assert.deepEqual(ws.sent.slice(-2), [{ v: 1, type: 'admit', target: 'k2' }, { v: 1, type: 'deny', target: 'k2' }]);
});

test('a host loses the lobby when demoted', async () => {
  const w = world();
  const { s, events } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'participant-updated', participant: { id: 'me', name: 'Ada', role: 'host', audio: true, video: true } });
  ws.receive({ type: 'knock', participant: { id: 'k1', name: 'Gus' } });
  assert.equal(s.knocks.size, 1);
  ws.receive({ type: 'participant-updated', participant: { id: 'me', name: 'Ada', role: 'participant', account: true, audio: false, video: false } });
  assert.equal(s.self.role, 'participant');
  assert.equal(s.self.account, true);
  assert.equal(s.self.audio, true, 'what we send is known locally');
  assert.equal(s.knocks.size, 0);
  assert.deepEqual(ofType(events, 'knocks').at(-1), { knocks: [], added: null });
});

test('muted by a host: the microphone goes off and state is sent', async () => {
  const w = world();
  const { s, events, mic } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'muted', by: 'p1' });
  assert.equal(mic.enabled, false);
  assert.equal(s.self.muted, true);
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: false, video: true, screen: false });
  assert.deepEqual(ofType(events, 'muted'), [{ by: 'p1', name: 'Bob' }]);
  assert.equal(ofType(events, 'participants').at(-1).self.audio, false);
});

test('an unmute refused with forbidden keeps the microphone muted', async () => {
  const w = world();
  const { s, events, mic } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'muted', by: 'p1' });
  s.setMicrophoneEnabled(true);
  assert.equal(mic.enabled, true);
  assert.equal(s.self.muted, false);
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: true, video: true, screen: false });
  const sentBefore = ws.ofType('state').length;
  ws.receive({ type: 'error', code: 'forbidden', message: 'A host muted you; guests may not unmute in this meeting.', ref: 'state' });
  assert.equal(mic.enabled, false);
  assert.equal(s.self.muted, true);
  assert.equal(ws.ofType('state').length, sentBefore + 1);
  assert.deepEqual(ws.ofType('state').at(-1).state, { audio: false, video: true, screen: false });
  assert.deepEqual(ofType(events, 'error').at(-1), { code: 'forbidden', message: 'A host muted you; guests may not unmute in this meeting.', fatal: false });
});

test('forbidden does not fail a pending publish', async () => {
  const w = world();
  const { s, events, pub } = await joined(w);
  const ws = w.ws();
  const [publish] = ws.ofType('publish');
  ws.receive({ type: 'error', code: 'forbidden', message: 'Guests may not present in this meeting.', ref: 'publish', id: publish.id });
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  assert.equal(pub.remoteDescription.sdp, 'v=0\r\nanswer');
  assert.equal(s.pendingPublish, null);
  assert.equal(ofType(events, 'error').at(-1).code, 'forbidden');
});

test('room-state and notices are reported', async () => {
  const w = world();
  const { s, events } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'room-state', roomState: { locked: true, guestsMayUnmute: false, guestsMayPresent: true, hostPresent: true, extra: 1 } });
  assert.deepEqual(s.roomState, { locked: true, guestsMayUnmute: false, guestsMayPresent: true, hostPresent: true });
  assert.deepEqual(ofType(events, 'room-state').at(-1).roomState, s.roomState);
  ws.receive({ type: 'notice', code: 'host-left', message: 'The host left.' });
  ws.receive({ type: 'notice', code: 'host-back' });
  assert.deepEqual(ofType(events, 'notice'), [{ code: 'host-left', message: 'The host left.' }, { code: 'host-back', message: '' }]);
});

test('host commands are sent as the protocol says', async () => {
  const w = world();
  const { s } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'room-state', roomState: { locked: true, guestsMayUnmute: false, guestsMayPresent: false, hostPresent: true } });
  const n = ws.sent.length;
  s.mute('p1');
  s.muteGuests();
  s.remove('p1');
  s.setRole('p1', 'host');
  s.lock(false);
  s.setRoomSettings({ guestsMayPresent: true });
  s.end();
  assert.deepEqual(ws.sent.slice(n), [
    { v: 1, type: 'mute', target: 'p1' },
    { v: 1, type: 'mute-guests' },
    { v: 1, type: 'remove', target: 'p1' },
    { v: 1, type: 'set-role', target: 'p1', role: 'host' },
    { v: 1, type: 'lock', locked: false },
    { v: 1, type: 'room-settings', settings: { locked: true, guestsMayUnmute: false, guestsMayPresent: true, hostPresent: true } },
    { v: 1, type: 'end' },
  ]);
  assert.equal(s.setRole('p1', 'admin'), false, 'an invalid message is not sent');
});

test('candidates made between a reconnection and its welcome wait for the welcome', async () => {
  const w = world();
  const { pub } = await joined(w);
  w.ws().drop();
  await w.advance(500);
  const second = w.ws();
  second.open();
  pub.candidate({ candidate: 'candidate:9', sdpMid: '0', sdpMLineIndex: 0 });
  assert.deepEqual(second.sent.map((m) => m.type), ['join']);
  second.receive(welcome({ resumed: true }));
  await flush();
  assert.deepEqual(second.ofType('candidate').map((m) => m.candidate.candidate), ['candidate:9']);
});

test('E2EE: announce, key and chat are passed on; sent ones are checked; transforms on every sender and receiver', async () => {
  const w = world();
  const calls = [];
  const frames = {
    peerConfig: () => ({ encodedInsertableStreams: true }),
    attachSender: (sender, kind) => calls.push(['send', kind, sender.track?.id ?? null]),
    attachReceiver: (receiver, kind) => calls.push(['recv', kind, receiver.track.id]),
    mapReceiver: (receiver, participant) => calls.push(['map', receiver.track.id, participant]),
  };
  const mic = new FakeTrack('audio', 'mic');
  const s = new Session({ room: 'weekly', name: 'Ada', url: 'wss://h/ws', media: { microphone: mic }, env: w.env, frames });
  const joinedEvents = [];
  const e2ee = [];
  s.addEventListener('joined', (e) => joinedEvents.push(e.detail));
  s.addEventListener('e2ee', (e) => e2ee.push(e.detail));
  s.join();
  w.ws().open();
  w.ws().receive(welcome({ meeting: 'm-1', uploadToken: 'up-1' }));
  await flush();
  assert.equal(joinedEvents[0].meeting, 'm-1');
  assert.equal(joinedEvents[0].uploadToken, 'up-1');
  assert.deepEqual(joinedEvents[0].participants.map((p) => p.id), ['p1']);
  assert.equal(w.pcs[0].config.encodedInsertableStreams, true);
  assert.deepEqual(calls, [['send', 'audio', 'mic']]);

  const ws = w.ws();
  for (const type of ['announce', 'key', 'chat']) ws.receive({ type, from: 'p1', payload: 'AAAA' });
  assert.deepEqual(e2ee.map((m) => m.type), ['announce', 'key', 'chat']);
  assert.equal(e2ee[1].from, 'p1');

  assert.equal(s.sendE2EE('key', { to: 'p1', payload: 'QUJD' }), true);
  assert.equal(s.sendE2EE('chat', { payload: 'QUJD' }), true);
  assert.equal(s.sendE2EE('announce', { payload: 'not base64!' }), false, 'refused before sending');
  assert.deepEqual(ws.ofType('key').at(-1), { v: 1, type: 'key', to: 'p1', payload: 'QUJD' });
  assert.deepEqual(ws.ofType('chat').at(-1), { v: 1, type: 'chat', payload: 'QUJD' });

  calls.length = 0;
  ws.receive({ type: 'subscribe-offer', sdp: fakeOffer({ 0: 'video', 1: 'audio' }), tracks: { 0: { participant: 'p1', source: 'camera', kind: 'video', stream: 's' } } });
  await flush();
  assert.deepEqual(calls, [['recv', 'video', 'remote-0'], ['recv', 'audio', 'remote-1'], ['map', 'remote-0', 'p1'], ['map', 'remote-1', '']]);
  // A resumed welcome keeps the meeting and the token when the server does not repeat them.
  ws.drop();
  await w.advance(1000);
  w.ws().open();
  w.ws().receive(welcome({ resumed: true }));
  await flush();
  assert.equal(joinedEvents.at(-1).resumed, true);
  assert.equal(s.meeting, 'm-1');
  assert.equal(s.uploadToken, 'up-1');
});

test('simulcast: a 640x480 camera is offered with the two layers Chromium encodes for it', async () => {
  const w = world();
  const mic = new FakeTrack('audio', 'mic');
  const cam = new FakeTrack('video', 'cam');
  cam.getSettings = () => ({ width: 640, height: 480, deviceId: 'c' });
  const s = new Session({ room: 'weekly', name: 'Ada', url: 'wss://h/ws', media: { microphone: mic, camera: cam }, env: w.env });
  s.join();
  w.ws().open();
  w.ws().receive(welcome());
  await flush();
  const enc = w.pcs[0].transceivers[1].sendEncodings;
  assert.deepEqual(enc.map((e) => [e.rid, e.scaleResolutionDownBy, e.maxBitrate]), [['q', 480 / 180, 150000], ['f', 1, 1700000]]);
});

test('simulcast: the camera is offered with three layers, the screen with one for text; layers messages switch encodings', async () => {
  const w = world();
  const { s, pub } = await joined(w);
  const ws = w.ws();
  ws.receive({ type: 'publish-answer', sdp: 'v=0\r\nanswer' });
  await flush();
  const cam = pub.transceivers[1];
  assert.deepEqual(cam.sendEncodings.map((e) => [e.rid, e.scaleResolutionDownBy, e.maxBitrate]), [['q', 4, 150000], ['h', 2, 500000], ['f', 1, 1700000]]);
  assert.equal(pub.transceivers[0].sendEncodings, undefined, 'audio: the default encoding');

  ws.receive({ type: 'layers', mid: '1', active: [true, false, false] });
  await flush();
  assert.deepEqual(cam.sender.getParameters().encodings.map((e) => e.active), [true, false, false]);
  ws.receive({ type: 'layers', mid: '1', active: [true, false, false] });
  await flush();
  assert.equal(cam.sender.sets.length, 1, 'nothing changed, no setParameters');
  ws.receive({ type: 'layers', mid: '1', active: [false, false, false] });
  ws.receive({ type: 'layers', mid: '1', active: [false, true, true] });
  ws.receive({ type: 'layers', mid: '9', active: [false, false, false] }); // unknown mid: ignored
  ws.receive({ type: 'layers', mid: '1', active: 'all' }); // malformed: ignored
  await flush();
  assert.deepEqual(cam.sender.sets.map((p) => p.encodings.map((e) => e.active)), [[true, false, false], [false, false, false], [false, true, true]]);

  s.startScreen(new FakeTrack('video', 'screen'));
  await flush();
  const screen = pub.transceivers[2];
  assert.deepEqual(screen.sendEncodings, [{ maxBitrate: 2500000 }]);
  assert.equal(screen.sender.getParameters().degradationPreference, 'maintain-resolution');
});

test('VP9 when asked: preferred first, one encoding with SVC layers', async () => {
  const w = world();
  const { pub } = await joined(w, { videoCodec: 'vp9' });
  const cam = pub.transceivers[1];
  assert.deepEqual(cam.codecs.map((c) => c.mimeType), ['video/VP9', 'video/VP8', 'video/rtx']);
  assert.deepEqual(cam.sendEncodings, [{ scalabilityMode: 'L3T3_KEY', maxBitrate: 2000000 }]);
});

test('VP9 asked in a browser that ignores scalabilityMode (Firefox): VP8 simulcast instead', async () => {
  const w = world();
  const Base = w.env.RTCPeerConnection;
  const env = {
    ...w.env,
    RTCPeerConnection: class extends Base {
      addTransceiver(trackOrKind, init) {
        const encodings = init.sendEncodings?.map(({ scalabilityMode, ...rest }) => rest);
        return super.addTransceiver(trackOrKind, { ...init, sendEncodings: encodings });
      }
    },
  };
  const { s, pub } = await joined(w, { videoCodec: 'vp9', env });
  const cam = pub.transceivers[1];
  assert.equal(s.videoCodec, 'vp8');
  assert.deepEqual(cam.codecs.map((c) => c.mimeType), ['video/VP8', 'video/VP9', 'video/rtx']);
  assert.deepEqual(cam.sendEncodings.map((e) => e.rid), ['q', 'h', 'f']);
});

test('the publish offer carries Opus FEC and DTX', async () => {
  const w = world();
  const opus = 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n';
  const env = { ...w.env, RTCPeerConnection: class extends w.env.RTCPeerConnection { async createOffer() { return { type: 'offer', sdp: opus }; } } };
  const { pub } = await joined(w, { env });
  const [publish] = w.ws().ofType('publish');
  assert.match(publish.sdp, /a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1;stereo=0\r\n/);
  assert.equal(pub.localDescription.sdp, publish.sdp);
});

test('speaker messages are reported once per change', async () => {
  const w = world();
  const { s } = await joined(w);
  const speakers = [];
  s.addEventListener('speaker', (e) => speakers.push(e.detail.participant));
  const ws = w.ws();
  ws.receive({ type: 'speaker', from: 'p1' });
  ws.receive({ type: 'speaker', from: 'p1' });
  ws.receive({ type: 'speaker', from: 'me' });
  ws.receive({ type: 'speaker' });
  assert.deepEqual(speakers, ['p1', 'me']);
  assert.equal(s.speaker, 'me');
});

test('layout: rendered sizes go out by sub mid, changes only, the full map after each subscribe-offer and resume', async () => {
  const w = world();
  const { s } = await joined(w);
  let ws = w.ws();
  const layouts = () => w.ws().ofType('layout').map((m) => m.layout);
  s.setRenderSize('p1', 'camera', { width: 640, height: 360 }); // before its tracks: kept for later
  await w.advance(1000);
  assert.deepEqual(layouts(), []);
  ws.receive({
    type: 'subscribe-offer',
    sdp: fakeOffer({ 0: 'audio', 1: 'video', 2: 'video' }),
    tracks: {
      0: { participant: 'p1', source: 'microphone', kind: 'audio', stream: 'a' },
      1: { participant: 'p1', source: 'camera', kind: 'video', stream: 'a' },
      2: { participant: 'p1', source: 'screen', kind: 'video', stream: 'b' },
    },
  });
  await flush();
  await w.advance(1000);
  assert.deepEqual(layouts(), [{ 1: { width: 640, height: 360 } }]);

  s.setRenderSize('p1', 'screen', { width: 1280, height: 720 });
  s.setRenderSize('p1', 'camera', { width: 160, height: 90 });
  await w.advance(1000);
  assert.deepEqual(layouts().at(-1), { 1: { width: 160, height: 90 }, 2: { width: 1280, height: 720 } });
  s.setRenderSize('p1', 'camera', { width: 0, height: 0 });
  await w.advance(1000);
  assert.deepEqual(layouts().at(-1), { 1: { width: 0, height: 0 } });
  const before = layouts().length;

  // The screen share ends: a new offer, the full map of what remains.
  ws.receive({
    type: 'subscribe-offer',
    sdp: fakeOffer({ 0: 'audio', 1: 'video', 2: 'video' }),
    tracks: { 0: { participant: 'p1', source: 'microphone', kind: 'audio', stream: 'a' }, 1: { participant: 'p1', source: 'camera', kind: 'video', stream: 'a' } },
  });
  await flush();
  await w.advance(1000);
  assert.deepEqual(layouts().slice(before), [{ 1: { width: 0, height: 0 } }]);

  // Sizes that change while the WebSocket is down are sent after the resume.
  ws.drop();
  s.setRenderSize('p1', 'camera', { width: 320, height: 180 });
  await w.advance(1000);
  w.ws().open();
  w.ws().receive(welcome({ resumed: true }));
  await flush();
  await w.advance(1000);
  assert.deepEqual(w.ws().ofType('layout').map((m) => m.layout), [{ 1: { width: 320, height: 180 } }]);
  for (const m of w.sockets.flatMap((x) => x.ofType('layout'))) assert.deepEqual(Object.keys(m).sort(), ['layout', 'type', 'v']);
});

// The recovery schedule is the contract's (the "schedule" of
// internal/signal/testdata/messages.json), which the native client's tests
// read too (internal/client).
test('the recovery schedule is the contract\'s', () => {
  const { schedule } = JSON.parse(readFileSync(new URL('../../../internal/signal/testdata/messages.json', import.meta.url), 'utf8'));
  assert.deepEqual(schedule.reconnectDelaysMs.map((_, i) => reconnectDelay(i)), schedule.reconnectDelaysMs);
  assert.equal(reconnectDelay(1000), schedule.reconnectDelaysMs.at(-1));
  assert.equal(ICE_RECOVERY_MS, schedule.iceRecoveryMs);
  assert.equal(PUBLISH_RETRIES, schedule.publishRetries);
  assert.equal(PUBLISH_RETRY_MS, schedule.publishRetryStepMs);
});

test('a node that does not answer: the next node of the welcome, at once, with the resume token', async () => {
  const w = world();
  const mic = new FakeTrack('audio', 'mic');
  const s = new Session({ room: 'weekly', name: 'Ada', url: 'wss://a:8443/ws', media: { microphone: mic }, env: w.env });
  s.join();
  w.ws().open();
  w.ws().receive(welcome({ nodes: ['https://b:8443', 'http://plain:80', 'not a url', 'https://c:8443'] }));
  await flush();
  // Node a dies: the first reconnection goes to a (a dropped connection
  // may be nothing more), which refuses; the next goes to b.
  w.ws().drop();
  await w.advance(500);
  assert.equal(w.ws().url, 'wss://a:8443/ws');
  w.ws().drop();
  await w.advance(FAILOVER_DELAY_MS);
  assert.equal(w.ws().url, 'wss://b:8443/ws');
  // b refuses too: c; the failed ones come after.
  w.ws().drop();
  await w.advance(FAILOVER_DELAY_MS);
  const c = w.ws();
  assert.equal(c.url, 'wss://c:8443/ws');
  assert.deepEqual(s.alternates, ['wss://a:8443/ws', 'wss://b:8443/ws']);
  c.open();
  assert.deepEqual(c.sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada', resume: 'resume-1', redirected: true });
  w.ws().receive(welcome({ self: { id: 'me2', name: 'Ada' }, resume: 'resume-2', nodes: ['https://b:8443'] }));
  await flush();
  assert.deepEqual(s.alternates, ['wss://b:8443/ws']);
});

test('a redirect joins the named node at once, with the resume token; a bad one is ignored', async () => {
  const w = world();
  const { s } = await joined(w);
  const first = w.ws();
  first.receive({ type: 'redirect', url: 'javascript:alert(1)', reason: 'draining' });
  await flush();
  assert.equal(w.ws(), first);
  first.receive({ type: 'redirect', url: 'https://b.example.org:8443', reason: 'draining' });
  await flush();
  assert.equal(first.readyState, 3, 'the old connection is closed');
  const b = w.ws();
  assert.equal(b.url, 'wss://b.example.org:8443/ws');
  b.open();
  assert.deepEqual(b.sent[0], { v: 1, type: 'join', room: 'weekly', name: 'Ada', resume: 'resume-1', redirected: true });
  await w.advance(5000);
  assert.equal(w.ws(), b, 'the old connection\'s close started no reconnection');
  assert.equal(s.closed, false);
});

test('a first join redirected with a ticket hands it to the node once; a refused ticket goes back to the first node, once', async () => {
  const w = world();
  const s = new Session({ room: 'staff', name: 'Mia', url: 'wss://mgmt:8443/ws', env: w.env });
  const events = record(s);
  s.join();
  const mgmt = w.ws();
  mgmt.open();
  assert.deepEqual(mgmt.sent[0], { v: 1, type: 'join', room: 'staff', name: 'Mia' });
  mgmt.receive({ type: 'redirect', url: 'https://node-a:8443', reason: 'node-selection', ticket: 'ct1.first.sig' });
  await flush();
  const a = w.ws();
  assert.equal(a.url, 'wss://node-a:8443/ws');
  a.open();
  assert.deepEqual(a.sent[0], { v: 1, type: 'join', room: 'staff', name: 'Mia', redirected: true, ticket: 'ct1.first.sig' });

  // The node refuses it (expired on the way): the session asks the first node again.
  a.receive({ type: 'error', code: 'ticket-refused', message: 'This sign-in pass has expired.', fatal: true });
  await flush();
  assert.equal(s.closed, false);
  const again = w.ws();
  assert.equal(again.url, 'wss://mgmt:8443/ws');
  again.open();
  assert.deepEqual(again.sent[0], { v: 1, type: 'join', room: 'staff', name: 'Mia' });
  again.receive({ type: 'redirect', url: 'https://node-a:8443', reason: 'node-selection', ticket: 'ct1.second.sig' });
  await flush();
  const b = w.ws();
  b.open();
  assert.equal(b.sent[0].ticket, 'ct1.second.sig');
  b.receive(welcome({ self: { id: 'me', name: 'Mia', role: 'participant', account: true } }));
  await flush();
  assert.equal(s.ticket, '', 'the ticket is spent');
  b.drop();
  await w.advance(5000);
  const resumed = w.ws();
  resumed.open();
  assert.deepEqual(resumed.sent[0], { v: 1, type: 'join', room: 'staff', name: 'Mia', resume: 'resume-1' });

  // A second refusal is the person's to read: no loop.
  const s2 = new Session({ room: 'staff', name: 'Mia', url: 'wss://mgmt:8443/ws', env: w.env });
  const events2 = record(s2);
  s2.join();
  w.ws().open();
  for (let i = 0; i < 2; i++) {
    w.ws().receive({ type: 'redirect', url: 'https://node-a:8443', reason: 'node-selection', ticket: `ct1.t${i}.sig` });
    await flush();
    w.ws().open();
    w.ws().receive({ type: 'error', code: 'ticket-refused', message: 'This sign-in pass was used already.', fatal: true });
    await flush();
  }
  assert.equal(s2.closed, true);
  assert.deepEqual(events2.filter(([t]) => t === 'left').map(([, d]) => d.reason), ['ticket-refused']);
  assert.ok(events.every(([t]) => t !== 'left'));
});

test('TURN: the welcome\'s servers and relay policy reach both peer connections; ice-servers and a resume update them', async () => {
  const w = world();
  const turn1 = [{ urls: ['turn:h:3478?transport=udp', 'turns:h:443?transport=tcp'], username: '100:me', credential: 'a' }];
  const mic = new FakeTrack('audio', 'mic');
  const s = new Session({ room: 'weekly', name: 'Ada', url: 'wss://h/ws', media: { microphone: mic }, env: w.env });
  s.join();
  w.ws().open();
  w.ws().receive(welcome({ iceServers: turn1, iceTransportPolicy: 'relay' }));
  await flush();
  const [pub, sub] = w.pcs;
  for (const pc of [pub, sub]) {
    assert.deepEqual(pc.config.iceServers, turn1);
    assert.equal(pc.config.iceTransportPolicy, 'relay');
  }
  assert.equal(pub.config.bundlePolicy, 'max-bundle');

  // Fresh credentials: both connections get them, the rest of their configuration unchanged.
  const turn2 = [{ ...turn1[0], username: '700:me', credential: 'b' }];
  w.ws().receive({ type: 'ice-servers', iceServers: turn2 });
  await flush();
  for (const pc of [pub, sub]) {
    assert.deepEqual(pc.config.iceServers, turn2);
    assert.equal(pc.config.iceTransportPolicy, 'relay');
  }
  assert.equal(pub.config.bundlePolicy, 'max-bundle');
  assert.equal(w.pcs.length, 2, 'no new peer connection');

  // A resumed welcome carries fresh credentials too.
  const turn3 = [{ ...turn1[0], username: '900:me', credential: 'c' }];
  w.ws().drop();
  await w.advance(5000);
  w.ws().open();
  w.ws().receive(welcome({ resumed: true, iceServers: turn3, iceTransportPolicy: 'relay' }));
  await flush();
  assert.equal(w.pcs.length, 2);
  for (const pc of [pub, sub]) assert.deepEqual(pc.config.iceServers, turn3);

  // Without the relay policy, all candidates.
  const w2 = world();
  await joined(w2);
  assert.equal(w2.pcs[0].config.iceTransportPolicy, 'all');
});

