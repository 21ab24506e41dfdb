import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderSize, LayoutState, LayoutReporter, LAYOUT_INTERVAL_MS, LAYOUT_BATCH_MS } from './layout.mjs';

test('render size: device pixels, rounded, 0x0 when not visible or empty', () => {
  assert.deepEqual(renderSize({ width: 160, height: 90 }), { width: 160, height: 90 });
  assert.deepEqual(renderSize({ width: 100.4, height: 56.3, dpr: 2 }), { width: 201, height: 113 });
  assert.deepEqual(renderSize({ width: 640, height: 360, visible: false }), { width: 0, height: 0 });
  assert.deepEqual(renderSize({ width: 640, height: 0 }), { width: 0, height: 0 });
  assert.deepEqual(renderSize({ width: 10000, height: 5000, dpr: 3 }), { width: 16384, height: 15000 });
  assert.deepEqual(renderSize({ width: 100, height: 50, dpr: NaN }), { width: 100, height: 50 });
});

test('layout state: only changed entries, all again after resendAll, gone mids forgotten', () => {
  const s = new LayoutState();
  s.set('1', { width: 640, height: 360 });
  s.set('3', { width: 160, height: 90 });
  const first = s.changes();
  assert.deepEqual(first, { 1: { width: 640, height: 360 }, 3: { width: 160, height: 90 } });
  s.commit(first);
  assert.equal(s.changes(), null);
  s.set('3', { width: 160, height: 90 });
  assert.equal(s.changes(), null, 'the same size is no change');
  s.set('3', { width: 0, height: 0 });
  assert.deepEqual(s.changes(), { 3: { width: 0, height: 0 } });
  s.commit(s.changes());
  s.resendAll();
  assert.deepEqual(s.changes(), { 1: { width: 640, height: 360 }, 3: { width: 0, height: 0 } });
  s.retain(['3']);
  assert.deepEqual(s.changes(), { 3: { width: 0, height: 0 } });
});

function clock() {
  const c = { now: 0, timers: [], seq: 0 };
  c.setTimeout = (fn, ms) => { const id = ++c.seq; c.timers.push({ id, at: c.now + ms, fn }); return id; };
  c.clearTimeout = (id) => { c.timers = c.timers.filter((t) => t.id !== id); };
  c.advance = (ms) => {
    const end = c.now + ms;
    for (;;) {
      c.timers.sort((a, b) => a.at - b.at);
      const t = c.timers[0];
      if (!t || t.at > end) break;
      c.timers.shift();
      c.now = t.at;
      t.fn();
    }
    c.now = end;
  };
  return c;
}

test('reporter: a burst becomes one message; then at most one per interval (4/s)', () => {
  const c = clock();
  const sent = [];
  const r = new LayoutReporter({ send: (l) => { sent.push([c.now, l]); return true; }, setTimeout: c.setTimeout, clearTimeout: c.clearTimeout });
  r.update(new Map([['1', { width: 320, height: 180 }]]));
  r.update(new Map([['1', { width: 320, height: 180 }], ['2', { width: 160, height: 90 }]]));
  c.advance(LAYOUT_BATCH_MS);
  assert.deepEqual(sent, [[LAYOUT_BATCH_MS, { 1: { width: 320, height: 180 }, 2: { width: 160, height: 90 } }]]);
  // A tile resizing continuously: 100 changes in 2 s.
  for (let i = 0; i < 100; i++) {
    r.update(new Map([['1', { width: 320 + i, height: 180 }], ['2', { width: 160, height: 90 }]]));
    c.advance(20);
  }
  c.advance(1000);
  const times = sent.map(([t]) => t);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= LAYOUT_INTERVAL_MS, `messages ${times[i - 1]} and ${times[i]} too close`);
  assert.ok(sent.length <= 2 + Math.ceil(2000 / LAYOUT_INTERVAL_MS), `${sent.length} messages`);
  assert.deepEqual(sent.at(-1)[1], { 1: { width: 419, height: 180 } }, 'the last size arrives; unchanged entries are not repeated');
  assert.equal(c.timers.length, 0, 'quiet when nothing changes');
});

test('reporter: a failed send is kept; resendAll sends the full map; reset forgets', () => {
  const c = clock();
  let up = false;
  const sent = [];
  const r = new LayoutReporter({ send: (l) => { if (up) sent.push(l); return up; }, setTimeout: c.setTimeout, clearTimeout: c.clearTimeout });
  r.update(new Map([['1', { width: 320, height: 180 }]]));
  c.advance(1000);
  assert.deepEqual(sent, []);
  up = true;
  r.resendAll();
  c.advance(1000);
  assert.deepEqual(sent, [{ 1: { width: 320, height: 180 } }]);
  r.resendAll();
  c.advance(1000);
  assert.equal(sent.length, 2);
  r.reset();
  r.resendAll();
  c.advance(1000);
  assert.equal(sent.length, 2);
});
