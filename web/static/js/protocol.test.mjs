import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  joinMessage, publishMessage, subscribeAnswerMessage, candidateMessage, stateMessage, restartIceMessage,
  leaveMessage, pingMessage, clientMessageProblem, parseServerMessage, nameProblem, pinProblem,
  muteMessage, muteGuestsMessage, removeMessage, setRoleMessage, lockMessage, admitMessage, denyMessage,
  roomSettingsMessage, endMessage, layoutMessage, checkClientMessage, byteLength,
  VERSION, LIMITS, SOURCES, ROLES, FIELDS, CODES, MAX_PIN,
} from './protocol.mjs';

const SDP = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n';

test('builders produce valid messages', () => {
  const valid = [
    joinMessage('weekly', '  Ada  '),
    joinMessage('weekly', 'Ada', 'tok-1.x_y'),
    publishMessage(SDP, { 0: { source: 'microphone' }, 1: { source: 'camera' } }, 'publish-1'),
    publishMessage(SDP, {}),
    subscribeAnswerMessage(SDP),
    candidateMessage('pub', { candidate: 'candidate:1 1 udp 1 1.2.3.4 5 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'abcd' }),
    candidateMessage('sub', null),
    stateMessage({ audio: true, video: false, screen: false }),
    restartIceMessage(),
    leaveMessage(),
    pingMessage(),
    joinMessage('weekly', 'Ada', undefined, '123456'),
    joinMessage('weekly', 'Ada', 'tok', '0'.repeat(32)),
    muteMessage('p1'),
    muteGuestsMessage(),
    removeMessage('p-1.x_y'),
    setRoleMessage('p1', 'host'),
    setRoleMessage('p1', 'participant'),
    setRoleMessage('p1', 'guest'),
    lockMessage(true),
    lockMessage(false),
    admitMessage('k1'),
    denyMessage('k1'),
    roomSettingsMessage({ guestsMayUnmute: true }),
    { v: 1, type: 'room-settings', settings: {} },
    endMessage(),
  ];
  for (const m of valid) assert.equal(clientMessageProblem(m), '', JSON.stringify(m));
});

test('join trims the name and leaves out an empty resume', () => {
  assert.deepEqual(joinMessage('r', ' Ada ', ''), { v: 1, type: 'join', room: 'r', name: 'Ada' });
});

test('host command builders', () => {
  assert.deepEqual(joinMessage('r', 'Ada', '', '123456'), { v: 1, type: 'join', room: 'r', name: 'Ada', pin: '123456' });
  assert.deepEqual(joinMessage('r', 'Ada', '', ''), { v: 1, type: 'join', room: 'r', name: 'Ada' }, 'no PIN, no field');
  assert.deepEqual(lockMessage(1), { v: 1, type: 'lock', locked: true });
  assert.deepEqual(roomSettingsMessage({ guestsMayPresent: true, extra: true }),
    { v: 1, type: 'room-settings', settings: { locked: false, guestsMayUnmute: false, guestsMayPresent: true, hostPresent: false } });
  assert.deepEqual(setRoleMessage('p1', 'guest'), { v: 1, type: 'set-role', target: 'p1', role: 'guest' });
});

test('PINs typed by a person', () => {
  assert.equal(pinProblem(''), '');
  assert.equal(pinProblem('0123456789'), '');
  assert.match(pinProblem('12 34'), /digits only/);
  assert.match(pinProblem('１２３'), /digits only/, 'full-width digits are not ASCII digits');
  assert.match(pinProblem('1'.repeat(33)), /at most 32/);
});

test('candidate copies only the fields the server accepts', () => {
  const fake = { candidate: 'c', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: null, address: '1.2.3.4', toJSON() {} };
  assert.deepEqual(candidateMessage('pub', fake).candidate, { candidate: 'c', sdpMid: '0', sdpMLineIndex: 0 });
  assert.deepEqual(candidateMessage('pub', null).candidate, { candidate: '' });
});

// The contract shared with the server (internal/signal/testdata/messages.json,
// also read by internal/signal's tests): the same limits and client types,
// every valid message accepted, every invalid one refused with the code
// the server answers.
const contract = JSON.parse(readFileSync(new URL('../../../internal/signal/testdata/messages.json', import.meta.url), 'utf8'));

/** A contract case as the client would have it: an object, or what parses of raw text. */
function contractMessage(c) {
  if (c.raw !== undefined || c.rawBase64 !== undefined) {
    const bytes = c.raw !== undefined ? new TextEncoder().encode(c.raw) : Uint8Array.from(atob(c.rawBase64), (ch) => ch.charCodeAt(0));
    try {
      return { parsed: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) };
    } catch {
      return { unparsable: true };
    }
  }
  const m = structuredClone(c.message);
  const at = (path) => {
    let o = m;
    for (const k of path.slice(0, -1)) o = o[k];
    return [o, path[path.length - 1]];
  };
  if (c.pad) {
    const [o, k] = at(c.pad.path);
    o[k] = (o[k] ?? '') + c.pad.with.repeat(Math.max(0, c.pad.bytes - byteLength(o[k] ?? '')));
  }
  if (c.repeat) {
    const [o, k] = at(c.repeat.path);
    o[k] = Object.fromEntries(Array.from({ length: c.repeat.count }, (_, i) => [String(i), structuredClone(c.repeat.value)]));
  }
  return { parsed: m };
}

test('the contract: limits, sources, roles and client types are the server\'s', () => {
  assert.equal(contract.version, VERSION);
  assert.deepEqual({ ...LIMITS }, contract.limits);
  assert.deepEqual([...SOURCES], contract.sources);
  assert.deepEqual([...ROLES], contract.roles);
  assert.deepEqual(JSON.parse(JSON.stringify(FIELDS)), contract.types);
  assert.equal(MAX_PIN, contract.limits.pin);
});

test('the contract: valid messages are accepted', () => {
  for (const c of contract.valid) {
    const { parsed } = contractMessage(c);
    assert.deepEqual(checkClientMessage(parsed), { code: '', problem: '' }, c.name);
  }
});

test('the contract: invalid messages are refused with the server\'s code', () => {
  for (const c of contract.invalid) {
    const { parsed, unparsable } = contractMessage(c);
    if (unparsable) {
      assert.equal(c.code, CODES.badMessage, `${c.name}: what JSON.parse refuses is a bad message`);
      continue;
    }
    const got = checkClientMessage(parsed);
    assert.equal(got.code, c.code, `${c.name}: ${got.problem}`);
    assert.ok(got.problem, `${c.name}: no problem given`);
  }
});

test('problems say what is wrong', () => {
  const cases = [
    [{ v: 2, type: 'ping' }, /v must be/],
    [{ v: 1, type: 'nope' }, /unknown type/],
    [{ v: 1, type: 'ping', extra: 1 }, /unknown field extra/],
    [{ v: 1, type: 'leave', id: 'bad id' }, /id is malformed/],
    [{ v: 1, type: 'join', room: 'r', name: 'a', pin: 123456 }, /pin must be a string/],
    [{ v: 1, type: 'join', room: 'r', name: 'a', pin: '12a4' }, /digits only/],
    [{ v: 1, type: 'publish', sdp: SDP, tracks: { 0: { source: 'webcam' } } }, /unknown source/],
    [{ v: 1, type: 'publish', sdp: SDP + 'x'.repeat(200 << 10) }, /too long/],
    [{ v: 1, type: 'lock', locked: 'yes' }, /locked must be a boolean/],
    [{ v: 1, type: 'room-settings', settings: { guestsMayChat: true } }, /unknown field guestsMayChat/],
    [{ v: 1, type: 'set-role', target: 'p1', role: 'admin' }, /role must be/],
    [{ v: 1, type: 'state', state: { audio: true }, by: 'p1' }, /only the server/],
  ];
  for (const [m, re] of cases) assert.match(clientMessageProblem(m), re, JSON.stringify(m).slice(0, 80));
});

test('too many tracks are refused', () => {
  const tracks = {};
  for (let i = 0; i < 65; i++) tracks[i] = { source: 'camera' };
  assert.match(clientMessageProblem(publishMessage(SDP, tracks)), /more than 64/);
});

test('server messages are parsed and checked', () => {
  assert.deepEqual(parseServerMessage('{"v":1,"type":"pong"}'), { v: 1, type: 'pong' });
  assert.throws(() => parseServerMessage('[1]'), /not a JSON object/);
  assert.throws(() => parseServerMessage('{"v":2,"type":"pong"}'), /version 2/);
  assert.throws(() => parseServerMessage('{"v":1}'), /no type/);
  assert.throws(() => parseServerMessage('nope'), SyntaxError);
});

test('display names', () => {
  assert.equal(nameProblem('Ada'), '');
  assert.equal(nameProblem('é'.repeat(64)), '');
  assert.match(nameProblem(''), /Enter/);
  assert.match(nameProblem('😀'.repeat(65)), /too long/);
  assert.match(nameProblem('a\tb'), /control/);
});

test('layout messages are checked as the server checks them', () => {
  assert.equal(clientMessageProblem(layoutMessage({ 0: { width: 640, height: 360 }, a1: { width: 0, height: 0 } })), '');
  assert.equal(clientMessageProblem(layoutMessage({})), '');
  assert.equal(clientMessageProblem(layoutMessage({ 0: { width: 16384, height: 16384 } })), '');
  assert.match(clientMessageProblem(layoutMessage({ 0: { width: 16385, height: 1 } })), /size outside/);
  assert.match(clientMessageProblem(layoutMessage({ 0: { width: -1, height: 1 } })), /size outside/);
  assert.match(clientMessageProblem(layoutMessage({ 0: { width: 1.5, height: 1 } })), /must be an integer/);
  assert.match(clientMessageProblem(layoutMessage({ 'bad mid': { width: 1, height: 1 } })), /malformed/);
  assert.match(clientMessageProblem({ v: 1, type: 'layout', layout: { 0: { width: 1, height: 1, depth: 1 } } }), /unknown field depth/);
  assert.match(clientMessageProblem({ v: 1, type: 'layout' }), /layout is required/);
  const many = {};
  for (let i = 0; i < 65; i++) many[i] = { width: 1, height: 1 };
  assert.match(clientMessageProblem(layoutMessage(many)), /more than 64/);
});
