// Tests of the small pure modules: backoff, queue, names, links, password,
// codecs, media errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconnectDelay } from './backoff.mjs';
import { SerialQueue } from './queue.mjs';
import { initials } from './names.mjs';
import { aliasFromInput, aliasProblem, aliasFromPath, meetingPath, safeNextPath, signInPath, signInLink } from './links.mjs';
import { checkPassword, passwordProblem } from './password.mjs';
import { preferVideoCodecs } from './codecs.mjs';
import { describeMediaError, isUserCancel } from './media-errors.mjs';

test('reconnect delays: 0.5 s doubling to at most 5 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 50, 1e6].map(reconnectDelay), [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
  assert.equal(reconnectDelay(-1), 500);
});

test('serial queue runs tasks one at a time, in order, past failures', async () => {
  const q = new SerialQueue();
  const log = [];
  let running = 0;
  const task = (name, ms, fail) => q.run(async () => {
    running++;
    assert.equal(running, 1, 'tasks overlap');
    log.push(`start ${name}`);
    await new Promise((r) => setTimeout(r, ms));
    log.push(`end ${name}`);
    running--;
    if (fail) throw new Error(name);
    return name;
  });
  const results = await Promise.allSettled([task('a', 20), task('b', 1, true), task('c', 5)]);
  assert.deepEqual(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  assert.equal(results[2].value, 'c');
});

test('initials', () => {
  const cases = { 'Ada Lovelace': 'AL', plato: 'P', ' jean  paul   sartre ': 'JS', '': '?', '  ': '?', '***': '?', 'élodie durand': 'ÉD', '😀 Zoe': 'Z', '李 小龙': '李小' };
  for (const [name, want] of Object.entries(cases)) assert.equal(initials(name), want, name);
});

test('aliases from what users type or paste', () => {
  const ok = {
    'weekly-sync': 'weekly-sync',
    'Weekly Sync': 'weekly-sync',
    '  board.2026 ': 'board.2026',
    'https://meet.example.org/r/weekly-sync': 'weekly-sync',
    'https://meet.example.org/r/Weekly-Sync/': 'weekly-sync',
    'https://meet.example.org/r/weekly%2Dsync?x=1#frag': 'weekly-sync',
    '/r/abc': 'abc',
    'meet.example.org/r/abc': 'abc',
  };
  for (const [input, alias] of Object.entries(ok)) assert.deepEqual(aliasFromInput(input), { alias, error: '' }, input);
  for (const input of ['', '   ', 'https://meet.example.org/admin', 'https://x/r/a/b', '-dash', 'a/b', 'café', 'x'.repeat(65)]) {
    assert.notEqual(aliasFromInput(input).error, '', input);
  }
});

test('alias rules and paths', () => {
  assert.equal(aliasProblem('a'), '');
  assert.equal(aliasProblem('0a_b-c.d'), '');
  assert.match(aliasProblem('A'), /start/);
  assert.match(aliasProblem('ab!'), /"!"/);
  assert.match(aliasProblem(''), /Enter/);
  assert.equal(aliasFromPath('/r/weekly'), 'weekly');
  assert.equal(aliasFromPath('/r/weekly/'), 'weekly');
  assert.equal(aliasFromPath('/r/a%20b'), 'a b');
  assert.equal(aliasFromPath('/r/%E0%A4%A'), '');
  assert.equal(aliasFromPath('/admin'), '');
  assert.equal(meetingPath('a b'), '/r/a%20b');
});

test('password policy', () => {
  assert.deepEqual(checkPassword('Abcdefghij1!').map((r) => r.ok), [true, true, true, true, true]);
  assert.deepEqual(checkPassword('short').map((r) => [r.id, r.ok]),
    [['length', false], ['lower', true], ['upper', false], ['digit', false], ['special', false]]);
  assert.equal(passwordProblem('Abcdefghij1!', 'Abcdefghij1!'), '');
  assert.match(passwordProblem('Abcdefghij1!', 'Abcdefghij1?'), /differ/);
  assert.match(passwordProblem('abcdefghijk1', 'abcdefghijk1'), /upper-case.*special/);
});

test('video codecs: VP8 first, VP9 next, repair codecs kept, others dropped', () => {
  const caps = ['video/H264', 'video/VP9', 'video/rtx', 'video/AV1', 'video/VP8', 'video/red', 'video/ulpfec', 'video/VP9']
    .map((mimeType, i) => ({ mimeType, clockRate: 90000, n: i }));
  assert.deepEqual(preferVideoCodecs(caps).map((c) => c.mimeType), ['video/VP8', 'video/VP9', 'video/VP9', 'video/rtx', 'video/red', 'video/ulpfec']);
  assert.equal(preferVideoCodecs([{ mimeType: 'video/H264' }]), null);
  assert.equal(preferVideoCodecs([]), null);
});

test('media errors explain what to do', () => {
  assert.match(describeMediaError({ name: 'NotAllowedError' }), /blocked.*address bar.*join without/s);
  assert.match(describeMediaError({ name: 'NotFoundError' }, 'camera'), /No camera was found/);
  assert.match(describeMediaError({ name: 'NotReadableError' }, 'microphone'), /another application/);
  assert.match(describeMediaError({ name: 'Weird' }), /Weird/);
  assert.equal(isUserCancel({ name: 'NotAllowedError' }), true);
  assert.equal(isUserCancel({ name: 'NotReadableError' }), false);
});

test('next after sign-in: only a meeting path of this server (no open redirect)', () => {
  assert.equal(safeNextPath('/r/weekly'), '/r/weekly');
  assert.equal(safeNextPath('/r/Weekly/'), '/r/weekly');
  assert.equal(safeNextPath('/r/team.sync-2'), '/r/team.sync-2');
  for (const bad of [
    null, undefined, '', 'r/weekly', '/admin', '/r/', '/r//evil.example', '//evil.example/r/x', '/\\evil.example/r/x',
    '/r/x\\..\\..\\admin', 'https://evil.example/r/weekly', 'javascript:alert(1)//r/x', '/r/weekly?x=1', '/r/weekly#x',
    '/r/weekly/extra', '/r/../admin', '/r/%2e%2e', '/r/a%2Fb', '/r/a%0d%0a', '/r/has space', '/r/-start', ' /r/weekly',
    '/r/' + 'a'.repeat(65), '/r/%E0%A4%A',
  ]) assert.equal(safeNextPath(bad), '', String(bad));
  assert.equal(signInPath('weekly'), '/admin?next=%2Fr%2Fweekly');
  assert.equal(safeNextPath(new URLSearchParams(signInPath('weekly').split('?')[1]).get('next')), '/r/weekly');
  // On a conference node the link leads to the management node; anything but an https URL is ignored.
  assert.equal(signInLink('weekly', 'https://mgmt.example.org:8443'), 'https://mgmt.example.org:8443/admin?next=%2Fr%2Fweekly');
  assert.equal(signInLink('weekly', 'https://mgmt.example.org/some/path'), 'https://mgmt.example.org/admin?next=%2Fr%2Fweekly');
  for (const bad of [undefined, '', 'javascript:alert(1)', 'http://mgmt', 'https://u:p@mgmt', 42, 'not a url']) {
    assert.equal(signInLink('weekly', bad), '/admin?next=%2Fr%2Fweekly', String(bad));
  }
});
