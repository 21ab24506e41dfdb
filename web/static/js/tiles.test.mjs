import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mediaGroups, buildTiles, diffKeys, gridDensity, tileSource, SELF_KEY } from './tiles.mjs';

const tracks = {
  0: { participant: 'p1', source: 'microphone', kind: 'audio', stream: 's1' },
  1: { participant: 'p1', source: 'camera', kind: 'video', stream: 's1' },
  2: { participant: 'p2', source: 'camera', kind: 'video', stream: 's2' },
  10: { participant: 'p1', source: 'screen', kind: 'video', stream: 's3' },
  3: { participant: 'p1', source: 'screen-audio', kind: 'audio', stream: 's3' },
};

test('tracks are grouped by participant and tile', () => {
  const g = mediaGroups(tracks);
  assert.deepEqual([...g.keys()], ['p1/camera', 'p2/camera', 'p1/screen']);
  assert.deepEqual(g.get('p1/camera'), { key: 'p1/camera', participant: 'p1', source: 'camera', audio: '0', video: '1', stream: 's1' });
  assert.deepEqual(g.get('p1/screen'), { key: 'p1/screen', participant: 'p1', source: 'screen', audio: '3', video: '10', stream: 's3' });
  assert.deepEqual(g.get('p2/camera'), { key: 'p2/camera', participant: 'p2', source: 'camera', audio: null, video: '2', stream: 's2' });
});

test('missing kind falls back to the source; entries without participant are ignored', () => {
  const g = mediaGroups({ a: { participant: 'p', source: 'microphone' }, b: { participant: 'p', source: 'camera' }, c: { source: 'camera' } });
  assert.deepEqual([...g.values()].map((x) => [x.key, x.audio, x.video]), [['p/camera', 'a', 'b']]);
  assert.equal(mediaGroups(undefined).size, 0);
});

test('a mid absent from the next map means the track is gone', () => {
  const before = mediaGroups(tracks);
  const next = { ...tracks };
  delete next[10];
  delete next[3];
  const after = mediaGroups(next);
  assert.deepEqual(diffKeys(before.keys(), after.keys()), { added: [], removed: ['p1/screen'], kept: ['p1/camera', 'p2/camera'] });
});

test('tiles: screens first, then self, then one camera tile per participant', () => {
  const self = { id: 'me', name: 'Me Myself', audio: true, video: false, screen: false };
  const participants = [
    { id: 'p1', name: 'Ada', audio: false, video: true, screen: true },
    { id: 'p2', name: 'Bob', audio: true, video: true, screen: false },
    { id: 'p3', name: 'Viewer', audio: false, video: false, screen: false },
  ];
  const groups = [...mediaGroups(tracks).values(), { key: 'ghost/screen', participant: 'ghost', source: 'screen' }];
  const tiles = buildTiles({ self, participants, groups });
  assert.deepEqual(tiles.map((t) => [t.key, t.participant, t.source, t.name, t.audio, t.video, t.self]), [
    ['p1/screen', 'p1', 'screen', 'Ada', true, true, false],
    [SELF_KEY, 'me', 'camera', 'Me Myself', true, false, true],
    ['p1/camera', 'p1', 'camera', 'Ada', false, true, false],
    ['p2/camera', 'p2', 'camera', 'Bob', true, true, false],
    ['p3/camera', 'p3', 'camera', 'Viewer', false, false, false],
  ]);
});

test('tiles without self (before joining) and tile sources', () => {
  assert.deepEqual(buildTiles({ self: null, participants: [], groups: [] }), []);
  assert.equal(tileSource('screen-audio'), 'screen');
  assert.equal(tileSource('microphone'), 'camera');
});

test('tiles carry the role and a host mute', () => {
  const self = { id: 'me', name: 'Me', audio: false, video: false, screen: false, role: 'guest', muted: true };
  const participants = [{ id: 'p1', name: 'Ada', audio: true, video: true, screen: true, role: 'host' }, { id: 'p2', name: 'Old', audio: true, video: true, screen: false }];
  const groups = [{ key: 'p1/screen', participant: 'p1', source: 'screen' }];
  const tiles = buildTiles({ self, participants, groups });
  assert.deepEqual(tiles.map((t) => [t.key, t.role, t.muted]), [
    ['p1/screen', 'host', false],
    [SELF_KEY, 'guest', true],
    ['p1/camera', 'host', false],
    ['p2/camera', '', false],
  ]);
});

test('remote tiles showing video come before audio-only ones', () => {
  const participants = [
    { id: 'a', name: 'A', audio: true, video: false, screen: false },
    { id: 'b', name: 'B', audio: true, video: true, screen: false },
    { id: 'c', name: 'C', audio: true, video: false, screen: false },
    { id: 'd', name: 'D', audio: false, video: true, screen: false },
  ];
  const tiles = buildTiles({ self: { id: 'me', name: 'Me', audio: true, video: true, screen: false }, participants, groups: [] });
  assert.deepEqual(tiles.map((t) => t.participant), ['me', 'b', 'd', 'a', 'c']);
});

test('the grid packs tighter as the meeting grows', () => {
  assert.deepEqual([1, 6, 7, 16, 17, 40].map(gridDensity), ['', '', 'dense', 'dense', 'denser', 'denser']);
});
