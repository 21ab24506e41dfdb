import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JoinTimeline, JOIN_PHASES } from './jointimeline.mjs';

test('a join timeline records each phase once, in the order it happened', () => {
  let t = 1000;
  const tl = new JoinTimeline(() => t);
  t = 1012.34;
  tl.mark('ws-open');
  t = 1050;
  tl.mark('welcome');
  t = 1100;
  tl.mark('first-key'); // keys may come before ICE
  t = 1200;
  tl.mark('sub-ice');
  t = 1300;
  tl.mark('welcome'); // again: ignored
  tl.mark('no-such-phase');
  assert.deepEqual(tl.phases(), [
    { phase: 'ws-open', ms: 12.3 },
    { phase: 'welcome', ms: 50 },
    { phase: 'first-key', ms: 100 },
    { phase: 'sub-ice', ms: 200 },
  ]);
  assert.equal(tl.has('welcome'), true);
  assert.equal(tl.has('first-frame'), false);
  assert.ok(JOIN_PHASES.includes('first-frame'));
});
