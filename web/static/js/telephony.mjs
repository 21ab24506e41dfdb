// The telephony page (/telephony, docs/sip.md): one's own SIP devices
// (enrolment tokens, certificates, revocation) for every signed-in user;
// for those whose roles allow it, every device, the registered contacts,
// and the call records with the DTLS fingerprints both ends announced.

import { $, h, showOnly } from './dom.mjs';
import { api } from './api.mjs';

const screens = ['#screen-loading', '#screen-signin', '#screen-off', '#screen-main'].map((s) => $(s));
let csrf = '';
/** @type {Set<string>} */
let perms = new Set();

function show(id) {
  showOnly(screens, $(id));
}

function flash(text) {
  $('#status').textContent = text;
}

function showError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

/** A button that runs fn when clicked. */
function button(text, cls, fn) {
  const b = h('button', { type: 'button', class: cls || null }, text);
  b.addEventListener('click', fn);
  return b;
}

const when = (s) => (s ? new Date(s).toLocaleString() : '');

/** The state cell of a device: revoked, registered now, or issued. */
function state(d) {
  if (d.revoked) return h('span', { class: 'badge' }, `revoked ${when(d.revoked)}`);
  return d.online ? h('span', { class: 'badge' }, 'registered') : 'issued';
}

async function revoke(path, serial, after) {
  if (!confirm(`Revoke the device certificate ${serial}? The device is disconnected at once and can no longer register.`)) return;
  const res = await api('POST', path, { csrf, body: { reason: 0 } });
  if (!res.ok) {
    flash(res.error.message);
    return;
  }
  flash(`Certificate ${serial} revoked.`);
  after();
}

async function loadMine() {
  const res = await api('GET', '/api/me/sip/devices');
  if (!res.ok) {
    showError($('#my-error'), res.error.message);
    return;
  }
  const rows = res.data.devices.map((d) => h('tr', {},
    h('td', {}, h('code', {}, d.serial)), h('td', {}, d.key), h('td', {}, h('code', {}, d.fingerprint)),
    h('td', {}, when(d.issued)), h('td', {}, when(d.notAfter)), h('td', {}, state(d)),
    h('td', {}, d.revoked ? '' : button('Revoke', '', () => revoke(`/api/me/sip/devices/${d.serial}/revoke`, d.serial, loadMine)))));
  $('#my-devices').replaceChildren(...rows);
  $('#my-devices-empty').hidden = rows.length > 0;
}

async function loadAdmin() {
  if (perms.has('devices.view')) {
    const [devs, regs] = await Promise.all([api('GET', '/api/sip/devices'), api('GET', '/api/sip/registrations')]);
    if (devs.ok) {
      $('#devices').replaceChildren(...devs.data.devices.map((d) => h('tr', {},
        h('td', {}, d.user), h('td', {}, d.aor), h('td', {}, h('code', {}, d.serial)), h('td', {}, h('code', {}, d.fingerprint)),
        h('td', {}, when(d.notAfter)), h('td', {}, state(d)),
        h('td', {}, d.revoked || !perms.has('devices.manage') ? ''
          : button('Revoke', 'danger', () => revoke(`/api/sip/devices/${d.serial}/revoke`, d.serial, refresh))))));
    } else showError($('#admin-error'), devs.error.message);
    if (regs.ok) {
      const list = regs.data.registrations || [];
      $('#registrations').replaceChildren(...list.map((r) => h('tr', {},
        h('td', {}, r.aor), h('td', {}, h('code', {}, r.contact)), h('td', {}, r.source), h('td', {}, when(r.expires)))));
      $('#registrations-empty').hidden = list.length > 0;
    }
  }
  if (perms.has('call-records.view')) {
    const calls = await api('GET', '/api/sip/calls');
    if (calls.ok) {
      const list = calls.data.calls || [];
      $('#calls').replaceChildren(...list.map((c) => {
        const secs = c.answered && c.ended ? Math.round((Date.parse(c.ended) - Date.parse(c.answered)) / 1000) : 0;
        const media = c.endToEnd ? h('span', {}, `${c.media} (end-to-end)`)
          : h('span', { class: 'badge' }, `${c.media || 'refused'} — not end-to-end`);
        return h('tr', {}, h('td', {}, when(c.started)), h('td', {}, c.from), h('td', {}, c.to), h('td', {}, String(c.status || '')),
          h('td', {}, media), h('td', {}, h('code', {}, c.callerFingerprint || '')), h('td', {}, h('code', {}, c.calleeFingerprint || '')),
          h('td', { class: 'num' }, secs ? `${secs} s` : ''));
      }));
      $('#calls-empty').hidden = list.length > 0;
    }
  }
}

function refresh() {
  loadMine();
  loadAdmin();
}

function showToken(prefix, data) {
  $(`#${prefix}-aor`).textContent = data.aor;
  $(`#${prefix}-expires`).textContent = when(data.expires);
  $(`#${prefix}-value`).textContent = data.token;
  $(`#${prefix}-box`).hidden = false;
}

$('#my-token').addEventListener('click', async () => {
  const res = await api('POST', '/api/me/sip/tokens', { csrf });
  if (!res.ok) {
    showError($('#my-error'), res.error.message);
    return;
  }
  showError($('#my-error'), '');
  showToken('my-token', res.data);
});

$('#token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = /** @type {HTMLInputElement} */ ($('#token-user')).value.trim();
  if (!username) {
    showError($('#admin-error'), 'Enter the account the device is for.');
    return;
  }
  const res = await api('POST', '/api/sip/tokens', { csrf, body: { username } });
  if (!res.ok) {
    showError($('#admin-error'), res.error.message);
    return;
  }
  showError($('#admin-error'), '');
  showToken('token', res.data);
});

$('#refresh').addEventListener('click', refresh);

async function start() {
  const me = await api('GET', '/api/me');
  if (!me.ok) {
    show('#screen-signin');
    return;
  }
  csrf = me.data.csrf;
  perms = new Set(me.data.permissions || []);
  const info = await api('GET', '/api/sip');
  if (!info.ok) {
    show('#screen-off');
    return;
  }
  $('#whoami').textContent = me.data.user.displayName || me.data.user.username;
  $('#whoami').hidden = false;
  $('#my-aor').textContent = `sip:${me.data.user.username.toLowerCase()}@${info.data.domain}`;
  $('#registrar').textContent = info.data.registrar;
  $('#sdes-note').hidden = !info.data.allowSDES;
  for (const el of document.querySelectorAll('.server-url')) el.textContent = location.origin;
  $('#admin-devices').hidden = !perms.has('devices.view');
  $('#token-form').hidden = !perms.has('devices.manage');
  $('#admin-registrations').hidden = !perms.has('devices.view');
  $('#admin-calls').hidden = !perms.has('call-records.view');
  show('#screen-main');
  refresh();
}

start();
