import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accountState, auditQuery, groupsToText, pagesFor, parseSyslogLines, textToGroups, nodeHealth, certDays } from './adminforms.mjs';

test('pages follow permissions', () => {
  assert.deepEqual(pagesFor(['audit.view']).map((p) => p.id), ['audit']); // the auditor
  assert.deepEqual(pagesFor(['rooms.view', 'sessions.view', 'system.view']).map((p) => p.id), ['rooms', 'sessions', 'system', 'nodes']);
  assert.deepEqual(pagesFor(['rooms.view', 'users.view']).map((p) => p.id), ['rooms', 'users']);
  assert.deepEqual(pagesFor(['auth-settings.view', 'roles.view']).map((p) => p.id), ['roles', 'signin']);
});

test('group mappings round-trip, DNs with "=" included', () => {
  const groups = [{ group: 'cn=admins,ou=groups,dc=example,dc=org', roles: ['security-admin', 'auditor'] }, { group: 'staff', roles: ['room-admin'] }];
  const text = groupsToText(groups);
  assert.equal(text, 'cn=admins,ou=groups,dc=example,dc=org = security-admin, auditor\nstaff = room-admin');
  assert.deepEqual(textToGroups(text), { groups, error: '' });
  assert.deepEqual(textToGroups('\n  \n'), { groups: [], error: '' });
});

test('a bad mapping line is named', () => {
  assert.equal(textToGroups('staff = room-admin\nno roles here').error, 'Line 2 is not “GROUP = role, role”.');
  assert.equal(textToGroups('staff =').error, 'Line 1 is not “GROUP = role, role”.');
});

test('account states', () => {
  assert.equal(accountState({ enabled: false, lockedUntil: 'x' }), 'Disabled');
  assert.equal(accountState({ enabled: true }), 'Enabled');
  assert.equal(accountState({ enabled: true, lockedUntil: '2026-01-01T00:00:00Z', mustChangePassword: true }), 'Enabled, locked, must change password');
});

test('audit filters become a query', () => {
  assert.equal(auditQuery({ action: ' login ', actor: '', outcome: 'failure', since: '2026-12-01' }), 'action=login&outcome=failure&since=2026-12-01');
  assert.equal(auditQuery({}, { before: 42, format: 'csv' }), 'before=42&format=csv');
  assert.equal(auditQuery({ q: 'a&b=c' }), 'q=a%26b%3Dc');
});

test('syslog server lines', () => {
  assert.deepEqual(parseSyslogLines('siem, logs.example.org:6514\n\nbackup, 10.0.0.9:6514, logs2.example.org'), {
    servers: [{ name: 'siem', address: 'logs.example.org:6514' }, { name: 'backup', address: '10.0.0.9:6514', serverName: 'logs2.example.org' }], error: '' });
  assert.equal(parseSyslogLines('siem logs:6514').error, 'Line 1 is not “name, host:port”.');
  assert.equal(parseSyslogLines('a, b:1\nc, nohost').error, 'Line 2 is not “name, host:port”.');
});

test('a node\'s health and certificate days', () => {
  assert.deepEqual(nodeHealth({ removedAt: '2026-12-01T00:00:00Z' }), { ok: true, text: 'removed' });
  assert.deepEqual(nodeHealth({}), { ok: false, text: 'never heard from' });
  assert.deepEqual(nodeHealth({ status: { up: false } }), { ok: false, text: 'down' });
  assert.deepEqual(nodeHealth({ status: { up: true, draining: true, spooled: 3 } }), { ok: true, text: 'draining, 3 audit entries waiting' });
  assert.equal(certDays('2026-12-11T00:00:00Z', Date.parse('2026-12-01T12:00:00Z')), 9);
});
