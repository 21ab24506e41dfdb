import { test } from 'node:test';
import assert from 'node:assert/strict';
import { roomPinProblem, accessSummary, roomFormProblem, roomPatch, roomCreateBody } from './roomaccess.mjs';

const form = (over = {}) => ({
  name: 'Weekly', access: 'pin', hostPin: '', guestPin: '', clearGuestPin: false,
  allowGuests: true, guestsMayUnmute: false, guestsMayPresent: false, membersOnly: false, ...over,
});
const room = {
  alias: 'weekly', name: 'Weekly', access: 'pin', hasHostPin: true, hasGuestPin: true,
  allowGuests: true, guestsMayUnmute: false, guestsMayPresent: false, membersOnly: false,
};

test('room PINs: digits, 6 to 32', () => {
  assert.equal(roomPinProblem(''), '');
  assert.equal(roomPinProblem('123456'), '');
  assert.match(roomPinProblem('12345'), /at least 6/);
  assert.match(roomPinProblem('12345a'), /digits only/);
  assert.match(roomPinProblem('1'.repeat(33)), /at most 32/);
});

test('access summary for the rooms table', () => {
  assert.deepEqual(accessSummary({ alias: 'a' }), { mode: 'open', label: 'Open', details: [] });
  assert.deepEqual(accessSummary(room), { mode: 'pin', label: 'PIN', details: ['host PIN', 'guest PIN', 'guests allowed'] });
  assert.deepEqual(accessSummary({ access: 'pin', allowGuests: false }).details, ['no host PIN', 'no guests']);
  assert.deepEqual(accessSummary({ ...room, guestsMayUnmute: true, guestsMayPresent: true, locked: true }).details,
    ['host PIN', 'guest PIN', 'guests allowed', 'guests may unmute', 'guests may present', 'locked']);
  assert.deepEqual(accessSummary({ access: 'accounts', membersOnly: true }), { mode: 'accounts', label: 'Accounts', details: ['members only'] });
  assert.equal(accessSummary({ access: 'bogus' }).mode, 'open');
});

test('edit form problems', () => {
  assert.equal(roomFormProblem(form()), null);
  assert.deepEqual(roomFormProblem(form({ name: ' ' })).field, 'name');
  assert.deepEqual(roomFormProblem(form({ hostPin: '123' })).field, 'hostPin');
  assert.deepEqual(roomFormProblem(form({ guestPin: 'abcdef' })).field, 'guestPin');
  assert.equal(roomFormProblem(form({ guestPin: 'abcdef', clearGuestPin: true })), null);
  assert.match(roomFormProblem(form({ hostPin: '123456', guestPin: '123456' })).text, /differ/);
});

test('PATCH carries only what changes', () => {
  assert.deepEqual(roomPatch(room, form()), {});
  assert.deepEqual(roomPatch(room, form({ name: ' Weekly sync ', access: 'accounts', membersOnly: true })),
    { name: 'Weekly sync', access: 'accounts', membersOnly: true });
  assert.deepEqual(roomPatch(room, form({ hostPin: '111111', guestPin: '222222' })), { hostPin: '111111', guestPin: '222222' });
  assert.deepEqual(roomPatch(room, form({ clearGuestPin: true, guestPin: '333333' })), { guestPin: '' }, 'clearing wins');
  assert.deepEqual(roomPatch({ ...room, hasGuestPin: false }, form({ clearGuestPin: true })), {}, 'nothing to clear');
  assert.deepEqual(roomPatch(room, form({ allowGuests: false, guestsMayUnmute: true, guestsMayPresent: true })),
    { allowGuests: false, guestsMayUnmute: true, guestsMayPresent: true });
  assert.deepEqual(roomPatch({ alias: 'old', name: 'Old' }, form({ name: 'Old', access: 'open', allowGuests: false })), {}, 'a room listed without access fields is open');
});

test('POST /api/rooms body stays plain for an open room', () => {
  assert.deepEqual(roomCreateBody({ alias: 'a', name: 'A', access: 'open', hostPin: '', guestPin: '' }), { alias: 'a', name: 'A' });
  assert.deepEqual(roomCreateBody({ alias: 'a', name: 'A', access: 'pin', hostPin: '123456', guestPin: '654321' }),
    { alias: 'a', name: 'A', access: 'pin', hostPin: '123456', guestPin: '654321' });
});
