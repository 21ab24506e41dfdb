import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  waitingText, leftScreen, roleLabel, roleChange, mayUnmute, mayPresent, noticeEffect, mutedText, knockText, HOST_LEFT_TEXT,
} from './access.mjs';

test('waiting screens', () => {
  assert.equal(waitingText('host'), 'Waiting for the host to start the meeting…');
  assert.equal(waitingText('lobby'), 'This meeting is locked. A host has been asked to let you in…');
});

test('left screens by reason', () => {
  assert.match(leftScreen('no-host').message, /^No host arrived/);
  assert.equal(leftScreen('denied').message, 'A host did not let you in.');
  assert.deepEqual([leftScreen('removed').message, leftScreen('removed').rejoin], ['A host removed you from this meeting.', false]);
  assert.equal(leftScreen('ended').message, 'The meeting has ended.');
  assert.equal(leftScreen('leave').message, 'You left the meeting');
  assert.deepEqual([leftScreen('revoked').message, leftScreen('revoked').rejoin], ['This device was revoked.', false]);
  assert.deepEqual([leftScreen('account-disabled').message, leftScreen('account-disabled').rejoin], ['Your account has been disabled.', false]);
  for (const r of ['leave', 'no-host', 'denied', 'ended', 'replaced', 'server-shutdown', 'whatever']) assert.equal(leftScreen(r).rejoin, true, r);
});

test('roles: badges and the change a host can make', () => {
  assert.deepEqual([roleLabel('host'), roleLabel('guest'), roleLabel('participant'), roleLabel(undefined)], ['Host', 'Guest', '', '']);
  assert.deepEqual(roleChange({ role: 'guest' }), { action: 'promote', role: 'host', label: 'Make host' });
  assert.deepEqual(roleChange({ role: 'participant', account: true }), { action: 'promote', role: 'host', label: 'Make host' });
  assert.equal(roleChange({ role: 'host', account: true }).role, 'participant');
  assert.equal(roleChange({ role: 'host' }).role, 'guest');
  assert.equal(roleChange({ role: 'host' }).action, 'demote');
});

test('what the room rules allow', () => {
  const guest = { role: 'guest', muted: true };
  assert.equal(mayUnmute(guest, { guestsMayUnmute: false }), false);
  assert.equal(mayUnmute(guest, { guestsMayUnmute: true }), true);
  assert.equal(mayUnmute({ role: 'guest', muted: false }, { guestsMayUnmute: false }), true, 'only a host mute binds');
  assert.equal(mayUnmute({ role: 'participant', muted: true }, {}), true);
  assert.equal(mayPresent({ role: 'guest' }, { guestsMayPresent: false }), false);
  assert.equal(mayPresent({ role: 'guest' }, { guestsMayPresent: true }), true);
  assert.equal(mayPresent({ role: 'host' }, {}), true);
  assert.equal(mayPresent(null, {}), true);
});

test('notices, mute and knock sentences', () => {
  assert.deepEqual(noticeEffect({ code: 'host-left', message: 'x' }), { banner: HOST_LEFT_TEXT, toast: '' });
  assert.equal(noticeEffect({ code: 'host-back' }).banner, '');
  assert.deepEqual(noticeEffect({ code: 'other', message: 'Hello.' }), { banner: null, toast: 'Hello.' });
  assert.equal(mutedText('Bob'), 'Bob muted your microphone.');
  assert.equal(mutedText(''), 'A host muted your microphone.');
  assert.equal(knockText({ name: 'Gus' }), 'Gus (guest) is waiting in the lobby.');
  assert.equal(knockText({ name: 'Ann', account: true }), 'Ann (account) is waiting in the lobby.');
});
