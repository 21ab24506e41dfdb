// The administration pages for accounts, roles, sessions and sign-in
// settings. They use only the management API (docs/openapi.yaml) and
// show what the signed-in account's permissions allow.

import { $, h } from './dom.mjs';
import { api } from './api.mjs';
import { accountState, groupsToText, shortTime, textToGroups } from './adminforms.mjs';

/**
 * @typedef {object} PageContext
 * @property {() => string} csrf the session's CSRF token
 * @property {(res: any) => boolean} sessionEnded handles a 401; true if it did
 * @property {(text: string) => void} flash shows a passing status message
 * @property {(perm: string) => boolean} can whether the account holds a permission
 * @property {() => string} me the signed-in username
 * @property {(text: string) => Promise<boolean>} confirm asks a yes/no question
 */

function formError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

const enc = encodeURIComponent;

/** The accounts page: list, detail (state, roles, password, sessions), creation. */
export class UsersPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.users = new Map();
    this.roleNames = [];
    this.open = '';
    this.ui = {
      table: $('#users'), error: $('#users-error'), refresh: $('#users-refresh'),
      detail: $('#user-detail'), username: $('#detail-username'), summary: $('#detail-summary'),
      disable: $('#detail-disable'), enable: $('#detail-enable'), unlock: $('#detail-unlock'),
      del: $('#detail-delete'), close: $('#detail-close'),
      rolesField: $('#detail-roles-field'), roles: $('#detail-roles'), saveRoles: $('#detail-save-roles'),
      resetField: $('#detail-reset-field'), password: /** @type {HTMLInputElement} */ ($('#detail-password')), reset: $('#detail-reset'),
      sessions: $('#detail-sessions'), sessionsEmpty: $('#detail-sessions-empty'), endSessions: $('#detail-end-sessions'),
      devices: $('#detail-devices'), devicesEmpty: $('#detail-devices-empty'),
      detailError: $('#detail-error'),
      create: /** @type {HTMLFormElement} */ ($('#user-create')), newUsername: /** @type {HTMLInputElement} */ ($('#new-username')),
      newName: /** @type {HTMLInputElement} */ ($('#new-display-name')), newPassword: /** @type {HTMLInputElement} */ ($('#new-user-password')),
      newRolesField: $('#new-roles-field'), newRoles: $('#new-roles'), createError: $('#user-create-error'),
      enrol: $('#enrol-link'), enrolOutput: $('#enrol-output'),
    };
    const u = this.ui;
    u.refresh.addEventListener('click', () => this.load());
    u.table.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-username]');
      if (!b) return;
      const name = b.dataset.username;
      if (b.classList.contains('disable')) this.setEnabled(name, false);
      else if (b.classList.contains('enable')) this.setEnabled(name, true);
      else this.show(name);
    });
    u.close.addEventListener('click', () => this.hide());
    u.disable.addEventListener('click', () => this.setEnabled(this.open, false));
    u.enable.addEventListener('click', () => this.setEnabled(this.open, true));
    u.unlock.addEventListener('click', () => this.act('POST', 'unlock', 'unlocked'));
    u.del.addEventListener('click', () => this.remove());
    u.saveRoles.addEventListener('click', () => this.saveRoles());
    u.reset.addEventListener('click', () => this.resetPassword());
    u.endSessions.addEventListener('click', () => this.endSessions());
    u.sessions.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-session]');
      if (b) this.endSession(b.dataset.session);
    });
    u.devices.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-fingerprint]');
      if (b) this.revokeDevice(b.dataset.fingerprint);
    });
    u.create.addEventListener('submit', (e) => { e.preventDefault(); this.createUser(); });
    u.enrol.addEventListener('click', () => this.enrolLink());
  }

  async load({ background = false } = {}) {
    const c = this.ctx;
    const canManage = c.can('users.manage');
    this.ui.create.hidden = !canManage;
    if (c.can('roles.view') && this.roleNames.length === 0) {
      const r = await api('GET', '/api/roles', { background });
      if (r.ok) this.roleNames = (r.data?.roles || []).map((x) => x.name);
    }
    const canRoles = c.can('users.assign-roles') && this.roleNames.length > 0;
    this.ui.newRolesField.hidden = !canRoles;
    this.ui.newRoles.replaceChildren(...this.roleChecks('new-role', []));
    const res = await api('GET', '/api/users', { background });
    if (c.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      return;
    }
    formError(this.ui.error, '');
    const users = res.data?.users || [];
    this.users = new Map(users.map((a) => [a.username, a]));
    this.ui.table.replaceChildren(...users.map((a) => h('tr', { dataset: { username: a.username, enabled: String(a.enabled) } },
      h('td', {}, a.username),
      h('td', {}, a.displayName || ''),
      h('td', {}, (a.roles || []).join(', ') || h('span', { class: 'hint' }, 'meeting user')),
      h('td', {}, a.source),
      h('td', { class: 'state' }, accountState(a)),
      h('td', { class: 'num' }, String(a.sessions ?? 0)),
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'manage', dataset: { username: a.username }, 'aria-label': `Manage ${a.username}` }, 'Manage'),
        canManage && a.username !== c.me() ? (a.enabled
          ? h('button', { type: 'button', class: 'disable danger', dataset: { username: a.username }, 'aria-label': `Disable ${a.username}` }, 'Disable')
          : h('button', { type: 'button', class: 'enable', dataset: { username: a.username }, 'aria-label': `Enable ${a.username}` }, 'Enable')) : null))));
    if (this.open) {
      if (this.users.has(this.open)) this.show(this.open);
      else this.hide();
    }
  }

  roleChecks(prefix, held) {
    return this.roleNames.map((name) => h('div', { class: 'check' },
      h('input', { id: `${prefix}-${name}`, type: 'checkbox', value: name, checked: held.includes(name) }),
      h('label', { for: `${prefix}-${name}` }, name)));
  }

  async show(name) {
    const a = this.users.get(name);
    if (!a) return;
    const c = this.ctx;
    const u = this.ui;
    this.open = name;
    u.username.textContent = name;
    u.summary.textContent = `${a.displayName} · ${a.source} account · ${accountState(a)} · created ${shortTime(a.createdAt)}`;
    const manage = c.can('users.manage');
    const self = name === c.me();
    u.disable.hidden = !manage || !a.enabled || self;
    u.enable.hidden = !manage || a.enabled;
    u.unlock.hidden = !manage || !a.lockedUntil;
    u.del.hidden = !manage || self;
    u.endSessions.hidden = !manage;
    u.resetField.hidden = !manage || a.source !== 'local';
    u.rolesField.hidden = !c.can('users.assign-roles') || this.roleNames.length === 0;
    u.roles.replaceChildren(...this.roleChecks('detail-role', a.roles || []));
    formError(u.detailError, '');
    u.detail.hidden = false;
    this.loadDevices(name);
    const res = await api('GET', `/api/users/${enc(name)}/sessions`);
    if (c.sessionEnded(res)) return;
    const list = res.ok ? res.data?.sessions || [] : [];
    u.sessions.replaceChildren(...list.map((s) => h('li', {},
      h('span', {}, `${shortTime(s.createdAt)} from ${s.remote} (${s.method || 'password'}${s.plane ? `, ${s.plane}` : ''})${s.current ? ' — this session' : ''}`),
      manage && c.can('sessions.end') ? h('button', { type: 'button', dataset: { session: s.id } }, 'End') : null)));
    u.sessionsEmpty.hidden = list.length > 0;
  }

  hide() {
    this.open = '';
    this.ui.detail.hidden = true;
  }

  async act(method, path, done, body) {
    const name = this.open;
    const res = await api(method, `/api/users/${enc(name)}/${path}`, { csrf: this.ctx.csrf(), body });
    if (this.ctx.sessionEnded(res)) return false;
    if (!res.ok) {
      formError(this.ui.detailError, res.error.message);
      return false;
    }
    this.ctx.flash(`Account ${name} ${done}.`);
    await this.load();
    return true;
  }

  async setEnabled(name, enabled) {
    const res = await api('POST', `/api/users/${enc(name)}/${enabled ? 'enable' : 'disable'}`, { csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.open ? this.ui.detailError : this.ui.error, res.error.message);
      return;
    }
    this.ctx.flash(enabled ? `Account ${name} enabled.` : `Account ${name} disabled; its sessions and meetings have ended.`);
    await this.load();
  }

  async remove() {
    const name = this.open;
    if (!await this.ctx.confirm(`Delete the account “${name}”? Its sessions and meetings end and it cannot be restored.`)) return;
    const res = await api('DELETE', `/api/users/${enc(name)}`, { csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.detailError, res.error.message);
      return;
    }
    this.hide();
    this.ctx.flash(`Account ${name} deleted.`);
    await this.load();
  }

  checked(container) {
    return [...container.querySelectorAll('input[type=checkbox]:checked')].map((i) => /** @type {HTMLInputElement} */ (i).value);
  }

  async saveRoles() {
    await this.act('PUT', 'roles', 'has new roles', { roles: this.checked(this.ui.roles) });
  }

  async resetPassword() {
    const password = this.ui.password.value;
    if (!password) {
      formError(this.ui.detailError, 'Enter the new password.');
      return;
    }
    if (await this.act('POST', 'password', 'has a new password, to be changed at the next sign-in', { password })) this.ui.password.value = '';
  }

  /** Lists the account's E2EE devices (docs/e2ee.md, section 13). */
  async loadDevices(name) {
    const u = this.ui;
    const manage = this.ctx.can('users.manage');
    const res = await api('GET', `/api/users/${enc(name)}/devices`);
    if (this.ctx.sessionEnded(res) || this.open !== name) return;
    const list = res.ok ? res.data?.devices || [] : [];
    u.devices.replaceChildren(...list.map((d) => h('li', { dataset: { fingerprint: d.fingerprint, revoked: String(!!d.revoked) } },
      h('code', { class: 'fingerprint' }, d.fingerprint),
      h('span', {}, d.revoked ? ` revoked ${shortTime(d.revokedAt)}` : ` certified ${shortTime(d.firstCertified)}, valid until ${shortTime(d.lastNotAfter)}`),
      manage && !d.revoked ? h('button', { type: 'button', class: 'danger', dataset: { fingerprint: d.fingerprint }, 'aria-label': `Revoke device ${d.fingerprint}` }, 'Revoke') : null)));
    u.devicesEmpty.hidden = list.length > 0;
  }

  async revokeDevice(fingerprint) {
    const name = this.open;
    if (!name || !globalThis.confirm?.(`Revoke the device ${fingerprint} of ${name}? It can never be certified for this account again.`)) return;
    const res = await api('POST', `/api/users/${enc(name)}/devices/revoke`, { body: { fingerprint, reason: 'revoked by an administrator' }, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.detailError, res.error.message);
      return;
    }
    this.ctx.flash(`Device ${fingerprint} of ${name} revoked.`);
    await this.loadDevices(name);
  }

  async endSessions() {
    await this.act('DELETE', 'sessions', 'was signed out everywhere');
  }

  async endSession(id) {
    const res = await api('DELETE', `/api/sessions/${enc(id)}`, { csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) formError(this.ui.detailError, res.error.message);
    await this.load();
  }

  async createUser() {
    const u = this.ui;
    const body = { username: u.newUsername.value.trim(), displayName: u.newName.value.trim(), password: u.newPassword.value };
    if (!body.username || !body.password) {
      formError(u.createError, 'Enter a username and a first password.');
      return;
    }
    const roles = this.checked(u.newRoles);
    if (roles.length) body.roles = roles;
    const res = await api('POST', '/api/users', { body, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(u.createError, res.error.message);
      return;
    }
    formError(u.createError, '');
    u.create.reset();
    this.ctx.flash(`Account ${res.data.username} created; its first password must be changed at sign-in.`);
    await this.load();
  }

  async enrolLink() {
    const res = await api('POST', '/api/enrolments', { body: {}, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.createError, res.error.message);
      return;
    }
    this.ui.enrolOutput.textContent = `Send this one-time link (valid until ${shortTime(res.data.expiresAt)}): ${res.data.link}`;
    this.ui.enrolOutput.hidden = false;
  }
}

/** The roles page: built-in and custom roles, and the custom role form. */
export class RolesPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.editing = '';
    this.roles = new Map();
    this.ui = {
      table: $('#roles'), error: $('#roles-error'), form: /** @type {HTMLFormElement} */ ($('#role-form')),
      heading: $('#role-form-heading'), name: /** @type {HTMLInputElement} */ ($('#role-name')),
      description: /** @type {HTMLInputElement} */ ($('#role-description')), perms: $('#role-permissions'),
      formError: $('#role-error'), cancel: $('#role-cancel'),
    };
    this.ui.form.addEventListener('submit', (e) => { e.preventDefault(); this.save(); });
    this.ui.cancel.addEventListener('click', () => this.edit(''));
    this.ui.table.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-role]');
      if (!b) return;
      if (b.classList.contains('delete')) this.remove(b.dataset.role);
      else this.edit(b.dataset.role);
    });
  }

  async load() {
    const c = this.ctx;
    const [roles, perms] = await Promise.all([api('GET', '/api/roles'), api('GET', '/api/permissions')]);
    if (c.sessionEnded(roles)) return;
    if (!roles.ok || !perms.ok) {
      formError(this.ui.error, (roles.ok ? perms : roles).error.message);
      return;
    }
    formError(this.ui.error, '');
    const manage = c.can('roles.manage');
    this.ui.form.hidden = !manage;
    this.perms = perms.data?.permissions || [];
    const list = roles.data?.roles || [];
    this.roles = new Map(list.map((r) => [r.name, r]));
    this.ui.table.replaceChildren(...list.map((r) => h('tr', { dataset: { role: r.name } },
      h('td', {}, r.name, h('div', { class: 'hint' }, r.builtIn ? `Built-in. ${r.description}` : r.description)),
      h('td', {}, (r.permissions || []).join(', ')),
      h('td', { class: 'num' }, String(r.holders ?? 0)),
      h('td', { class: 'row-actions' }, ...(manage && !r.builtIn ? [
        h('button', { type: 'button', class: 'edit', dataset: { role: r.name } }, 'Edit'),
        h('button', { type: 'button', class: 'delete', dataset: { role: r.name } }, 'Delete')] : [])))));
    this.edit(this.editing);
  }

  edit(name) {
    const r = this.roles.get(name);
    this.editing = r ? name : '';
    const u = this.ui;
    u.heading.textContent = r ? `Edit the role ${name}` : 'Create a custom role';
    u.name.value = r ? r.name : '';
    u.name.disabled = !!r;
    u.description.value = r ? r.description : '';
    const held = new Set(r ? r.permissions : []);
    u.perms.replaceChildren(...(this.perms || []).map((p) => h('div', { class: 'check' },
      h('input', { id: `perm-${p.name}`, type: 'checkbox', value: p.name, checked: held.has(p.name) }),
      h('label', { for: `perm-${p.name}` }, h('code', {}, p.name), ' — ', p.description))));
    formError(u.formError, '');
  }

  async save() {
    const u = this.ui;
    const permissions = [...u.perms.querySelectorAll('input:checked')].map((i) => /** @type {HTMLInputElement} */ (i).value);
    const body = { name: u.name.value.trim(), description: u.description.value.trim(), permissions };
    const res = this.editing
      ? await api('PUT', `/api/roles/${enc(this.editing)}`, { body, csrf: this.ctx.csrf() })
      : await api('POST', '/api/roles', { body, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(u.formError, res.error.message);
      return;
    }
    this.ctx.flash(`Role ${res.data.name} saved.`);
    this.editing = '';
    await this.load();
  }

  async remove(name) {
    if (!await this.ctx.confirm(`Delete the role “${name}”?`)) return;
    const res = await api('DELETE', `/api/roles/${enc(name)}`, { csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      return;
    }
    this.ctx.flash(`Role ${name} deleted.`);
    await this.load();
  }
}

/** The sessions page: every live session, with an End button. */
export class SessionsPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.ui = { table: $('#sessions'), error: $('#sessions-error'), refresh: $('#sessions-refresh') };
    this.ui.refresh.addEventListener('click', () => this.load());
    this.ui.table.addEventListener('click', async (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-session]');
      if (!b) return;
      const res = await api('DELETE', `/api/sessions/${enc(b.dataset.session)}`, { csrf: ctx.csrf() });
      if (ctx.sessionEnded(res)) return;
      if (!res.ok) formError(this.ui.error, res.error.message);
      else ctx.flash('Session ended.');
      this.load();
    });
  }

  async load({ background = false } = {}) {
    const res = await api('GET', '/api/sessions', { background });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      return;
    }
    formError(this.ui.error, '');
    const end = this.ctx.can('sessions.end');
    this.ui.table.replaceChildren(...(res.data?.sessions || []).map((s) => h('tr', {},
      h('td', {}, s.username, s.current ? h('span', { class: 'hint' }, ' (you)') : null),
      h('td', {}, shortTime(s.createdAt)), h('td', {}, shortTime(s.lastSeen)), h('td', {}, s.remote),
      h('td', {}, s.method || 'password'), h('td', {}, s.plane || 'all'),
      h('td', { class: 'row-actions' }, end && !s.current ? h('button', { type: 'button', dataset: { session: s.id } }, 'End') : null))));
  }
}

/** Reads the named fields of a settings form into an object. */
function readForm(form) {
  const out = {};
  for (const el of form.querySelectorAll('[name]')) {
    const i = /** @type {HTMLInputElement} */ (el);
    if (i.type === 'checkbox') out[i.name] = i.checked;
    else out[i.name] = i.value.trim();
  }
  return out;
}

/** The sign-in settings page: directory, single sign-on, certificate login. */
export class SigninPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.error = $('#signin-error');
    this.forms = [$('#ldap-form'), $('#oidc-form'), $('#cert-form')].map((f) => /** @type {HTMLFormElement} */ (f));
    for (const f of this.forms) f.addEventListener('submit', (e) => { e.preventDefault(); this.save(f); });
    $('#ldap-test').addEventListener('click', () => this.testLDAP());
  }

  async load() {
    const c = this.ctx;
    const manage = c.can('auth-settings.manage');
    for (const f of this.forms) {
      const res = await api('GET', `/api/settings/${f.dataset.kind}`);
      if (c.sessionEnded(res)) return;
      if (!res.ok) {
        formError(this.error, res.error.message);
        return;
      }
      const s = res.data.settings || {};
      for (const el of f.querySelectorAll('[name]')) {
        const i = /** @type {HTMLInputElement} */ (el);
        const v = s[i.name];
        if (i.type === 'checkbox') i.checked = !!v;
        else if (i.name === 'groups') i.value = groupsToText(v);
        else if (i.name === 'scopes') i.value = (v || []).join(', ');
        else i.value = v ?? '';
        i.disabled = res.data.fixed || !manage;
      }
      for (const n of f.querySelectorAll('.secret-note')) n.textContent = res.data.hasSecret ? '(set; leave empty to keep it)' : '(not set)';
      f.querySelector('.fixed-note').hidden = !res.data.fixed;
      for (const b of f.querySelectorAll('button')) /** @type {HTMLButtonElement} */ (b).disabled = res.data.fixed || !manage;
      if (f.dataset.kind === 'oidc') $('#oidc-redirect').textContent = res.data.redirectUrl || '';
    }
    formError(this.error, '');
  }

  async save(form) {
    const errEl = /** @type {HTMLElement} */ (form.querySelector('.settings-error'));
    const body = readForm(form);
    if ('groups' in body) {
      const g = textToGroups(body.groups);
      if (g.error) {
        formError(errEl, g.error);
        return;
      }
      body.groups = g.groups;
    }
    if ('scopes' in body) body.scopes = body.scopes.split(',').map((x) => x.trim()).filter(Boolean);
    if ('timeoutSeconds' in body) body.timeoutSeconds = Number(body.timeoutSeconds) || 0;
    const res = await api('PUT', `/api/settings/${form.dataset.kind}`, { body, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(errEl, res.error.message);
      return;
    }
    formError(errEl, '');
    this.ctx.flash('Settings saved.');
    await this.load();
  }

  async testLDAP() {
    const out = $('#ldap-test-result');
    out.textContent = 'Connecting…';
    const res = await api('POST', '/api/settings/ldap/test', { csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    out.textContent = !res.ok ? res.error.message : res.data.ok ? 'The directory answers over TLS and the service account binds.' : res.data.error;
  }
}
