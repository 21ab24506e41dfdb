// The administration page (/admin): sign-in (with the login banner, a
// required password change, and ?next= back to a meeting; single sign-on
// and certificate buttons when the server offers them), a navigation that
// shows the pages the account's permissions open, the rooms table with
// live participant counts and access summary, room creation, editing
// (roomedit.mjs) and deletion; accounts, roles, sessions and sign-in
// settings are in adminaccounts.mjs.

import { $, h, showOnly } from './dom.mjs';
import { api } from './api.mjs';
import { aliasProblem, meetingPath, safeNextPath } from './links.mjs';
import { accessSummary, roomCreateBody, roomPinProblem } from './roomaccess.mjs';
import { RoomEditor } from './roomedit.mjs';
import { PasswordChange } from './passwordform.mjs';
import { prepareIdentity } from './call.mjs';
import { watchTrust } from './trustwatch.mjs';
import { pagesFor } from './adminforms.mjs';
import { RolesPage, SessionsPage, SigninPage, UsersPage } from './adminaccounts.mjs';
import { AuditPage, SystemPage } from './adminops.mjs';
import { NodesPage } from './adminnodes.mjs';

const REFRESH_MS = 15000;
const STATUS_MS = 5000;

const screens = {
  loading: $('#screen-loading'),
  login: $('#screen-login'),
  password: $('#screen-password'),
  user: $('#screen-user'),
  rooms: $('#screen-rooms'),
  users: $('#screen-users'),
  roles: $('#screen-roles'),
  sessions: $('#screen-sessions'),
  signin: $('#screen-signin'),
  audit: $('#screen-audit'),
  system: $('#screen-system'),
  nodes: $('#screen-nodes'),
};
const ui = {
  status: $('#status'),
  whoami: $('#whoami'),
  logout: $('#logout'),
  banner: $('#banner'),
  loginForm: $('#login-form'),
  username: /** @type {HTMLInputElement} */ ($('#username')),
  password: /** @type {HTMLInputElement} */ ($('#password')),
  loginButton: /** @type {HTMLButtonElement} */ ($('#login')),
  loginError: $('#login-error'),
  loginNext: $('#login-next'),
  userMessage: $('#user-message'),
  userLogout: $('#user-logout'),
  refresh: $('#refresh'),
  rooms: $('#rooms'),
  roomsEmpty: $('#rooms-empty'),
  roomsError: $('#rooms-error'),
  createForm: $('#create-form'),
  alias: /** @type {HTMLInputElement} */ ($('#room-alias')),
  aliasError: $('#room-alias-error'),
  name: /** @type {HTMLInputElement} */ ($('#room-name')),
  nameError: $('#room-name-error'),
  access: /** @type {HTMLSelectElement} */ ($('#room-access')),
  hostPin: /** @type {HTMLInputElement} */ ($('#room-host-pin')),
  guestPin: /** @type {HTMLInputElement} */ ($('#room-guest-pin')),
  createError: $('#create-error'),
  createButton: /** @type {HTMLButtonElement} */ ($('#create')),
  dialog: /** @type {HTMLDialogElement} */ ($('#confirm-dialog')),
  confirmText: $('#confirm-text'),
  confirmYes: $('#confirm-yes'),
  confirmNo: $('#confirm-no'),
  nav: $('#admin-nav'),
  loginOther: $('#login-other'),
  loginSSO: $('#login-sso'),
  loginCert: $('#login-cert'),
  loginCertRequired: $('#login-cert-required'),
  ask: /** @type {HTMLDialogElement} */ ($('#ask-dialog')),
  askText: $('#ask-text'),
  askYes: $('#ask-yes'),
  askNo: $('#ask-no'),
};

/** Where to go after signing in: a meeting path, or '' to stay here. */
// A signed-in user's devices watch the identity log from every page.
watchTrust(prepareIdentity());

const next = safeNextPath(new URLSearchParams(location.search).get('next'));

let csrf = '';
/** @type {{username?: string, displayName?: string, role?: string}} */
let user = {};
/** @type {Set<string>} the signed-in account's permissions */
let permissions = new Set();
let refreshTimer = 0;
let statusTimer = 0;
/** @type {Map<string, object>} the rooms of the last listing, by alias */
let roomsByAlias = new Map();

const editor = new RoomEditor({
  csrf: () => csrf,
  sessionEnded: (res) => sessionEnded(res),
  saved: () => loadRooms(),
  flash: (text) => flash(text),
});
const passwordChange = new PasswordChange({
  csrf: () => csrf,
  sessionEnded: (res) => sessionEnded(res),
  done: () => {
    flash('Your password was changed.');
    proceed();
  },
});

/** Asks a yes/no question in a dialog. */
function ask(text) {
  return new Promise((resolve) => {
    ui.askText.textContent = text;
    ui.ask.returnValue = '';
    ui.ask.addEventListener('close', () => resolve(ui.ask.returnValue === 'yes'), { once: true });
    ui.ask.showModal();
    ui.askNo.focus();
  });
}
ui.askYes.addEventListener('click', () => ui.ask.close('yes'));
ui.askNo.addEventListener('click', () => ui.ask.close('no'));

const pageContext = {
  csrf: () => csrf,
  sessionEnded: (res) => sessionEnded(res),
  flash: (text) => flash(text),
  can: (p) => permissions.has(p),
  me: () => user.username || '',
  confirm: ask,
};
const pages = {
  rooms: { load: (opts) => loadRooms(opts) },
  users: new UsersPage(pageContext),
  roles: new RolesPage(pageContext),
  sessions: new SessionsPage(pageContext),
  signin: new SigninPage(pageContext),
  audit: new AuditPage(pageContext),
  system: new SystemPage(pageContext),
  nodes: new NodesPage(pageContext),
};

function show(name) {
  showOnly(Object.values(screens), screens[name]);
  const signedIn = name in pages || name === 'user' || name === 'password';
  ui.logout.hidden = !signedIn;
  ui.whoami.hidden = !signedIn;
  ui.nav.hidden = !(name in pages);
  clearInterval(refreshTimer);
  if (name === 'rooms' || name === 'users' || name === 'sessions') {
    refreshTimer = setInterval(() => { if (!document.hidden) pages[name].load({ background: true }); }, REFRESH_MS);
  }
}

/** Shows one administration page and loads it. */
function showPage(id) {
  for (const b of ui.nav.querySelectorAll('button')) b.setAttribute('aria-current', b.dataset.page === id ? 'page' : 'false');
  show(id);
  pages[id].load();
  if (location.hash !== '#' + id) history.replaceState(null, '', '#' + id);
}

ui.nav.addEventListener('click', (e) => {
  const b = /** @type {HTMLElement} */ (e.target).closest('button[data-page]');
  if (b) showPage(b.dataset.page);
});

function flash(text) {
  clearTimeout(statusTimer);
  ui.status.textContent = text;
  if (text) statusTimer = setTimeout(() => { ui.status.textContent = ''; }, STATUS_MS);
}

/** Shows or hides the message of one field and marks the field invalid. */
function fieldError(input, el, text) {
  el.textContent = text;
  el.hidden = !text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function formError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

// ---- sign-in -------------------------------------------------------------------

async function start() {
  show('loading');
  const [banner, me, methods] = await Promise.all([api('GET', '/api/banner'), api('GET', '/api/me'), api('GET', '/api/login/methods')]);
  const text = banner.ok ? String(banner.data?.banner ?? '').trim() : '';
  ui.banner.textContent = text;
  ui.banner.hidden = !text;
  const m = methods.ok ? methods.data : {};
  ui.loginSSO.hidden = !m.oidc;
  ui.loginCert.hidden = !m.certificate;
  ui.loginOther.hidden = !m.oidc && !m.certificate;
  ui.loginCertRequired.hidden = !m.certificateRequired;
  if (me.ok) {
    signedIn(me.data);
    return;
  }
  // Back from single sign-on with an error: #sso-error=<sentence>.
  const ssoError = new URLSearchParams(location.hash.slice(1)).get('sso-error');
  if (ssoError) history.replaceState(null, '', location.pathname + location.search);
  showLogin(ssoError || (me.network ? me.error.message : ''));
}

ui.loginSSO.addEventListener('click', () => {
  location.assign('/api/oidc/login?return=' + encodeURIComponent(location.pathname + location.search));
});

ui.loginCert.addEventListener('click', async () => {
  const res = await api('POST', '/api/login/certificate');
  if (res.ok) {
    formError(ui.loginError, '');
    signedIn(res.data);
    return;
  }
  formError(ui.loginError, res.error.message);
});

function showLogin(message) {
  csrf = '';
  user = {};
  permissions = new Set();
  editor.close();
  formError(ui.loginError, message);
  ui.loginNext.textContent = next ? `Sign in to join the meeting ${next} with your account.` : '';
  ui.loginNext.hidden = !next;
  show('login');
  ui.password.value = '';
  (ui.username.value ? ui.password : ui.username).focus();
}

function signedIn(data) {
  csrf = data?.csrf ?? '';
  user = data?.user ?? {};
  permissions = new Set(data?.permissions ?? []);
  ui.whoami.textContent = `${user.displayName || user.username || ''}${user.role ? ` (${user.role})` : ''}`;
  if (data?.mustChangePassword) {
    show('password');
    passwordChange.reset();
    return;
  }
  proceed();
}

/** After signing in (and any required password change): the meeting, or this page. */
function proceed() {
  if (next) {
    location.assign(next);
    return;
  }
  if (user.role !== 'admin') {
    ui.userMessage.textContent = `Signed in as ${user.displayName || user.username || ''} — this page is for administrators.`;
    show('user');
    ui.userLogout.focus();
    return;
  }
  const open = pagesFor([...permissions]);
  if (open.length === 0) {
    ui.userMessage.textContent = `Signed in as ${user.displayName || user.username || ''} — your roles open no page here.`;
    show('user');
    ui.userLogout.focus();
    return;
  }
  ui.nav.replaceChildren(...open.map((p) => h('button', { type: 'button', dataset: { page: p.id } }, p.label)));
  const wanted = location.hash.slice(1);
  showPage(open.some((p) => p.id === wanted) ? wanted : open[0].id);
}

ui.loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = ui.username.value.trim();
  const password = ui.password.value;
  if (!username || !password) {
    formError(ui.loginError, 'Enter your username and password.');
    return;
  }
  ui.loginButton.disabled = true;
  const res = await api('POST', '/api/login', { body: { username, password } });
  ui.loginButton.disabled = false;
  ui.password.value = '';
  if (res.ok) {
    formError(ui.loginError, '');
    signedIn(res.data);
    return;
  }
  // bad-credentials, locked (429: says for how long), session-limit: the server's sentence.
  formError(ui.loginError, res.error.message);
  ui.password.focus();
});

async function logout() {
  await api('POST', '/api/logout', { csrf });
  showLogin('');
  flash('You are signed out.');
}

ui.logout.addEventListener('click', logout);
ui.userLogout.addEventListener('click', logout);

/** Handles an answer that says the session is gone; returns true if it did. */
function sessionEnded(res) {
  if (res.status !== 401) return false;
  showLogin('Your session has ended. Sign in again.');
  return true;
}

// ---- rooms ---------------------------------------------------------------------

/**
 * Lists the rooms. The periodic refresh is marked as background, so that
 * the server does not count it as the administrator's activity: a page
 * left open still signs out after the idle timeout.
 * @param {{background?: boolean}} [opts]
 */
async function loadRooms({ background = false } = {}) {
  const res = await api('GET', '/api/rooms', { background });
  if (sessionEnded(res)) return;
  if (!res.ok) {
    const text = res.status === 403 ? 'Only administrators can manage rooms; your account is not one.' : res.error.message;
    formError(ui.roomsError, text);
    ui.createForm.hidden = res.status === 403;
    return;
  }
  formError(ui.roomsError, '');
  ui.createForm.hidden = false;
  renderRooms(Array.isArray(res.data?.rooms) ? res.data.rooms : []);
}

function safeURL(url, alias) {
  try {
    const u = new URL(url, location.origin);
    if (u.protocol === 'https:' || u.protocol === 'http:') return u.href;
  } catch { /* fall back */ }
  return location.origin + meetingPath(alias);
}

function renderRooms(rooms) {
  roomsByAlias = new Map(rooms.map((r) => [r.alias, r]));
  const rows = rooms.map((r) => {
    const url = safeURL(r.url, r.alias);
    const access = accessSummary(r);
    return h('tr', { dataset: { alias: r.alias, access: access.mode } },
      h('td', {}, r.alias),
      h('td', {}, r.name ?? ''),
      h('td', { class: 'access' }, h('span', { class: 'access-mode' }, access.label),
        access.details.length ? h('span', { class: 'access-details hint' }, access.details.join(' · ')) : null),
      h('td', {}, h('a', { href: url, target: '_blank', rel: 'noopener' }, url)),
      h('td', { class: 'num' }, String(r.participants ?? 0)),
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'edit', dataset: { alias: r.alias }, 'aria-label': `Edit room ${r.alias}` }, 'Edit'),
        h('button', { type: 'button', class: 'delete', dataset: { alias: r.alias }, 'aria-label': `Delete room ${r.alias}` }, 'Delete')));
  });
  ui.rooms.replaceChildren(...rows);
  ui.roomsEmpty.hidden = rooms.length > 0;
  if (editor.alias && !roomsByAlias.has(editor.alias)) editor.close(); // deleted meanwhile
}

ui.refresh.addEventListener('click', () => loadRooms());

ui.rooms.addEventListener('click', (e) => {
  const button = /** @type {HTMLElement} */ (e.target).closest('button.delete, button.edit');
  if (!button) return;
  if (button.classList.contains('delete')) {
    confirmDelete(button.dataset.alias);
    return;
  }
  const room = roomsByAlias.get(button.dataset.alias);
  if (room) editor.open(room);
});

/** Asks for confirmation in a dialog, then deletes the room. */
function confirmDelete(alias) {
  ui.confirmText.textContent = `Delete the room “${alias}”? Its meeting link stops working and anyone in the meeting is disconnected.`;
  ui.dialog.returnValue = '';
  ui.dialog.showModal();
  ui.confirmNo.focus();
  ui.dialog.dataset.alias = alias;
}

ui.confirmNo.addEventListener('click', () => ui.dialog.close('no'));
ui.confirmYes.addEventListener('click', () => ui.dialog.close('yes'));
ui.dialog.addEventListener('close', async () => {
  const alias = ui.dialog.dataset.alias;
  delete ui.dialog.dataset.alias;
  if (ui.dialog.returnValue !== 'yes' || !alias) return;
  const res = await api('DELETE', `/api/rooms/${encodeURIComponent(alias)}`, { csrf });
  if (sessionEnded(res)) return;
  if (!res.ok && res.status !== 404) {
    formError(ui.roomsError, res.error.message);
    return;
  }
  flash(`Room ${alias} deleted.`);
  loadRooms();
});

// ---- creation ------------------------------------------------------------------

function validateCreate() {
  const alias = ui.alias.value.trim().toLowerCase();
  const name = ui.name.value.trim();
  const aliasText = aliasProblem(alias);
  fieldError(ui.alias, ui.aliasError, aliasText);
  const nameText = name ? '' : 'Enter the name people see for this room.';
  fieldError(ui.name, ui.nameError, nameText);
  if (aliasText || nameText) return null;
  const hostPin = ui.hostPin.value.trim();
  const guestPin = ui.guestPin.value.trim();
  const pinText = roomPinProblem(hostPin) ? `Host PIN: ${roomPinProblem(hostPin)}` : roomPinProblem(guestPin) ? `Guest PIN: ${roomPinProblem(guestPin)}` : '';
  formError(ui.createError, pinText);
  if (pinText) return null;
  return roomCreateBody({ alias, name, access: ui.access.value, hostPin, guestPin });
}

ui.alias.addEventListener('input', () => {
  if (!ui.aliasError.hidden) validateCreate();
});
ui.alias.addEventListener('blur', () => {
  if (ui.alias.value.trim()) fieldError(ui.alias, ui.aliasError, aliasProblem(ui.alias.value.trim().toLowerCase()));
});
ui.name.addEventListener('input', () => fieldError(ui.name, ui.nameError, ''));

ui.createForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  formError(ui.createError, '');
  const room = validateCreate();
  if (!room) {
    (ui.alias.getAttribute('aria-invalid') ? ui.alias : ui.name.getAttribute('aria-invalid') ? ui.name : ui.hostPin).focus();
    return;
  }
  ui.createButton.disabled = true;
  const res = await api('POST', '/api/rooms', { body: room, csrf });
  ui.createButton.disabled = false;
  if (sessionEnded(res)) return;
  if (res.ok) {
    ui.createForm.reset();
    flash(`Room ${res.data?.alias ?? room.alias} created.`);
    loadRooms();
    return;
  }
  if (res.status === 409) fieldError(ui.alias, ui.aliasError, res.error.message || 'A room with this alias already exists.');
  else if (res.error.code === 'invalid-alias') fieldError(ui.alias, ui.aliasError, res.error.message);
  else if (res.error.code === 'invalid-name') fieldError(ui.name, ui.nameError, res.error.message);
  else formError(ui.createError, res.error.message);
});

start();
