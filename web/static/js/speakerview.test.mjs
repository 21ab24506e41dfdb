import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arrange, remoteSpeaker } from './speakerview.mjs';

const tiles = [
  { key: 'p2/screen', participant: 'p2', source: 'screen', self: false },
  { key: 'self/camera', participant: 'me', source: 'camera', self: true },
  { key: 'p1/camera', participant: 'p1', source: 'camera', self: false },
  { key: 'p2/camera', participant: 'p2', source: 'camera', self: false },
];

test('speaker layout: pinned, else screen share, else the active speaker, else the first remote camera', () => {
  const grid = arrange(tiles);
  assert.deepEqual(grid.order, tiles.map((t) => t.key));
  assert.deepEqual([...grid.slots.values()], ['grid', 'grid', 'grid', 'grid']);
  assert.equal(grid.main, '');

  const withScreen = arrange(tiles, { layout: 'speaker', speaker: 'p2' });
  assert.equal(withScreen.main, 'p2/screen');
  assert.deepEqual(withScreen.order, ['p2/screen', 'self/camera', 'p1/camera', 'p2/camera']);
  assert.equal(withScreen.slots.get('p1/camera'), 'strip');

  const cams = tiles.slice(1);
  assert.equal(arrange(cams, { layout: 'speaker', speaker: 'p2' }).main, 'p2/camera');
  assert.deepEqual(arrange(cams, { layout: 'speaker', speaker: 'p2' }).order, ['p2/camera', 'self/camera', 'p1/camera']);
  assert.equal(arrange(cams, { layout: 'speaker', speaker: 'gone' }).main, 'p1/camera');
  assert.equal(arrange(cams, { layout: 'speaker', speaker: 'me' }).main, 'p1/camera', 'never the self view for speaking');
  assert.equal(arrange(cams, { layout: 'speaker', speaker: 'p2', pinned: 'self/camera' }).main, 'self/camera');
  assert.equal(arrange(tiles, { layout: 'speaker', pinned: 'p1/camera' }).main, 'p1/camera', 'a pin beats a screen share');
  assert.equal(arrange([tiles[1]], { layout: 'speaker' }).main, 'self/camera', 'alone');
  assert.deepEqual(arrange([], { layout: 'speaker' }).order, []);
});

test('full screen names an existing tile; the layout underneath stays', () => {
  assert.equal(arrange(tiles, { fullscreen: 'p1/camera' }).fullscreen, 'p1/camera');
  assert.equal(arrange(tiles, { fullscreen: 'gone/camera' }).fullscreen, '');
  const a = arrange(tiles, { layout: 'speaker', fullscreen: 'p1/camera' });
  assert.equal(a.fullscreen, 'p1/camera');
  assert.equal(a.main, 'p2/screen');
});

test('the large slot follows remote speakers only', () => {
  assert.equal(remoteSpeaker('', 'p1', 'me'), 'p1');
  assert.equal(remoteSpeaker('p1', 'me', 'me'), 'p1');
  assert.equal(remoteSpeaker('p1', 'p2', 'me'), 'p2');
  assert.equal(remoteSpeaker('p1', '', 'me'), 'p1');
});
