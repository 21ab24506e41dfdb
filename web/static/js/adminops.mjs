// The operator's administration pages: the audit log viewer (filters,
// older records, CSV and JSON export, chain verification; the auditor's
// page) and the system page (version and build, clock, self-check,
// alarms, certificates with request, import and trusted CAs, backups with
// creation, download and restore, settings). They use only the management
// API (docs/openapi.yaml, tag "operations").

import { $, h } from './dom.mjs';
import { api } from './api.mjs';
import { auditQuery, parseSyslogLines, shortTime } from './adminforms.mjs';

/** @typedef {import('./adminaccounts.mjs').PageContext} PageContext */

function formError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

/** Reads the audit filter form. */
function filterValues(form) {
  const out = {};
  for (const el of form.querySelectorAll('[name]')) out[el.name] = /** @type {HTMLInputElement} */ (el).value;
  return out;
}

/** The audit log page. */
export class AuditPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.oldest = 0;
    this.ui = {
      form: /** @type {HTMLFormElement} */ ($('#audit-filter')), table: $('#audit-records'), empty: $('#audit-empty'),
      more: $('#audit-more'), error: $('#audit-error'), csv: /** @type {HTMLAnchorElement} */ ($('#audit-csv')),
      json: /** @type {HTMLAnchorElement} */ ($('#audit-json')), verify: $('#audit-verify'), verified: $('#audit-verified'),
    };
    this.ui.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.load();
    });
    this.ui.more.addEventListener('click', () => this.load({ more: true }));
    this.ui.verify.addEventListener('click', () => this.verify());
  }

  async load({ background = false, more = false } = {}) {
    const f = filterValues(this.ui.form);
    this.ui.csv.href = '/api/audit?' + auditQuery(f, { format: 'csv' });
    this.ui.json.href = '/api/audit?' + auditQuery(f, { format: 'json' });
    const res = await api('GET', '/api/audit?' + auditQuery(f, { before: more ? this.oldest : 0 }), { background });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      return;
    }
    formError(this.ui.error, '');
    const recs = res.data?.records || [];
    const rows = recs.map((r) => h('tr', { class: r.outcome === 'failure' ? 'failure' : '' },
      h('td', { class: 'num' }, String(r.seq)), h('td', { title: r.time }, shortTime(r.time)), h('td', {}, r.actor),
      h('td', {}, r.source), h('td', {}, r.action), h('td', {}, r.target), h('td', {}, r.outcome),
      h('td', { class: 'details' }, r.details ? Object.entries(r.details).map(([k, v]) => `${k}=${v}`).join(' ') : '')));
    if (more) this.ui.table.append(...rows);
    else this.ui.table.replaceChildren(...rows);
    if (recs.length) this.oldest = recs[recs.length - 1].seq;
    this.ui.empty.hidden = this.ui.table.children.length > 0;
    this.ui.more.hidden = recs.length < 200;
  }

  async verify() {
    this.ui.verified.textContent = 'Checking…';
    const res = await api('GET', '/api/audit/verify');
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      this.ui.verified.textContent = res.error.message;
      return;
    }
    const d = res.data;
    this.ui.verified.textContent = d.ok
      ? `Intact: ${d.records} records in the database (${d.firstSeq} to ${d.lastSeq}) and ${d.fileRecords} in the audit files, chained and sealed.`
      : d.error;
  }
}

const enc = encodeURIComponent;

function humanSize(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + ' GiB';
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
  return Math.ceil(n / 1024) + ' KiB';
}

/** Sets a dotted path ("backup.sftp.address", "certAlarmDays.0") of obj. */
function setPath(obj, path, value) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] ??= {};
  o[keys[keys.length - 1]] = value;
}

function getPath(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

/** The system page. */
export class SystemPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.settings = null;
    const u = (this.ui = {
      error: $('#system-error'), status: $('#system-status'), alarms: $('#system-alarms'), alarmsEmpty: $('#system-alarms-empty'),
      certs: $('#system-certs'), backups: $('#system-backups'), backupState: $('#system-backup-state'), syslog: $('#system-syslog'),
      refresh: $('#system-refresh'), manage: $('#system-manage'),
      create: /** @type {HTMLFormElement} */ ($('#backup-create')), passphrase: /** @type {HTMLInputElement} */ ($('#backup-passphrase')),
      createError: $('#backup-create-error'),
      restore: /** @type {HTMLFormElement} */ ($('#backup-restore')), restoreFile: /** @type {HTMLInputElement} */ ($('#restore-file')),
      restorePass: /** @type {HTMLInputElement} */ ($('#restore-passphrase')), restoreError: $('#backup-restore-error'),
      settings: /** @type {HTMLFormElement} */ ($('#settings-form')), syslogText: /** @type {HTMLTextAreaElement} */ ($('#set-syslog')),
      settingsError: $('#settings-error'),
      csr: /** @type {HTMLFormElement} */ ($('#csr-form')), csrType: /** @type {HTMLSelectElement} */ ($('#csr-type')),
      csrNames: /** @type {HTMLInputElement} */ ($('#csr-names')), csrOrg: /** @type {HTMLInputElement} */ ($('#csr-org')),
      csrError: $('#csr-error'), csrOut: /** @type {HTMLTextAreaElement} */ ($('#csr-output')),
      imp: /** @type {HTMLFormElement} */ ($('#import-form')), chain: /** @type {HTMLTextAreaElement} */ ($('#import-chain')), impError: $('#import-error'),
      trust: /** @type {HTMLFormElement} */ ($('#trust-form')), trustName: /** @type {HTMLInputElement} */ ($('#trust-name')),
      trustPEM: /** @type {HTMLTextAreaElement} */ ($('#trust-pem')), trustError: $('#trust-error'),
    });
    u.refresh.addEventListener('click', () => this.load());
    u.create.addEventListener('submit', (e) => {
      e.preventDefault();
      this.createBackup();
    });
    u.restore.addEventListener('submit', (e) => {
      e.preventDefault();
      this.restoreBackup();
    });
    u.settings.addEventListener('submit', (e) => {
      e.preventDefault();
      this.saveSettings();
    });
    u.csr.addEventListener('submit', (e) => {
      e.preventDefault();
      this.makeCSR();
    });
    u.imp.addEventListener('submit', (e) => {
      e.preventDefault();
      this.post('/api/certificates/import', { chain: u.chain.value }, u.impError, 'The certificate is installed and served to new connections.');
    });
    u.trust.addEventListener('submit', (e) => {
      e.preventDefault();
      this.post('/api/certificates/trusted', { name: u.trustName.value.trim(), pem: u.trustPEM.value }, u.trustError, 'The CA certificates are trusted.');
    });
  }

  async load({ background = false } = {}) {
    const [sys, backups] = await Promise.all([api('GET', '/api/system', { background }), api('GET', '/api/backups', { background })]);
    if (this.ctx.sessionEnded(sys)) return;
    if (!sys.ok) {
      formError(this.ui.error, sys.error.message);
      return;
    }
    formError(this.ui.error, '');
    const s = sys.data;
    const v = s.version || {};
    const fact = (k, val) => [h('dt', {}, k), h('dd', {}, val)];
    this.ui.status.replaceChildren(
      ...fact('Version', `${v.version}${v.revision ? ` (${v.revision.slice(0, 12)}${v.modified ? ', modified' : ''})` : ''}`),
      ...fact('Build', `${v.goVersion} ${v.platform}${v.time ? `, ${v.time}` : ''}${v.fips140 ? ', FIPS 140-3 mode' : ''}`),
      ...fact('Node', `${s.node}, started ${shortTime(s.started)}`),
      ...fact('Clock', s.clockText || ''),
      ...fact('Self-check', s.selfCheck?.refusing ? `REFUSING TO SERVE: ${s.selfCheck.refusing}` :
        `${(s.selfCheck?.files || []).length} protected files, manifest signed ${shortTime(s.selfCheck?.signed)}`),
      ...fact('Audit files', `${humanSize(s.audit?.bytes || 0)} of ${humanSize(s.audit?.maxBytes || 0)}`),
      ...fact('Keys at rest', s.masterKey ? 'encrypted under the master key' : 'not encrypted (no master key configured)'),
    );
    const alarms = s.alarms || [];
    this.ui.alarms.replaceChildren(...alarms.map((a) => h('tr', { class: `alarm-${a.severity}` },
      h('td', {}, a.severity), h('td', {}, a.kind), h('td', {}, a.subject), h('td', {}, shortTime(a.raised)), h('td', {}, a.message))));
    this.ui.alarmsEmpty.hidden = alarms.length > 0;
    this.ui.certs.replaceChildren(...(s.certificates || []).map((c) => h('tr', {},
      h('td', {}, c.role), h('td', {}, c.subject), h('td', {}, c.keyType), h('td', {}, shortTime(c.notAfter)),
      h('td', { class: 'fingerprint' }, c.fingerprint))));
    this.ui.syslog.replaceChildren(...(s.syslog || []).map((x) => h('tr', {},
      h('td', {}, x.name), h('td', {}, x.address), h('td', {}, x.up ? 'connected' : x.lastError ? `down: ${x.lastError}` : 'waiting'),
      h('td', { class: 'num' }, String(x.sent)))));
    const last = s.backup?.last;
    this.ui.backupState.textContent = [s.backup?.next ? `Next daily backup: ${shortTime(s.backup.next)}.` : 'No daily backup.',
      last?.time ? `Last scheduled: ${shortTime(last.time)}${last.error ? `, failed: ${last.error}` : last.uploaded ? ', uploaded' : ''}.` : ''].join(' ');
    const manage = this.ctx.can('system.manage');
    this.ui.backups.replaceChildren(...(backups.data?.backups || []).map((b) => h('tr', {},
      h('td', {}, b.name), h('td', { class: 'num' }, humanSize(b.size)),
      h('td', {}, manage ? h('a', { href: `/api/backups/${enc(b.name)}`, download: b.name }, 'Download') : ''))));
    this.ui.manage.hidden = !manage;
    if (manage && !background) await this.loadSettings();
  }

  async loadSettings() {
    const res = await api('GET', '/api/system/settings');
    if (!res.ok) return;
    this.settings = res.data;
    for (const el of this.ui.settings.querySelectorAll('[name]')) {
      const i = /** @type {HTMLInputElement} */ (el);
      const v = getPath(this.settings, i.name);
      if (i.type === 'checkbox') i.checked = !!v;
      else i.value = v ?? '';
    }
    this.ui.syslogText.value = (this.settings.syslog?.servers || [])
      .map((x) => [x.name, x.address, x.serverName].filter(Boolean).join(', ')).join('\n');
  }

  async saveSettings() {
    const body = { audit: {}, backup: { sftp: {} }, certAlarmDays: [...(this.settings?.certAlarmDays || [30, 7])] };
    for (const el of this.ui.settings.querySelectorAll('[name]')) {
      const i = /** @type {HTMLInputElement} */ (el);
      let v = i.type === 'checkbox' ? i.checked : i.type === 'number' ? Number(i.value) : i.value.trim();
      setPath(body, i.name, v);
    }
    const sys = parseSyslogLines(this.ui.syslogText.value);
    if (sys.error) {
      formError(this.ui.settingsError, sys.error);
      return;
    }
    // Servers keep their CA and client certificate (set through the API).
    const old = new Map((this.settings?.syslog?.servers || []).map((x) => [x.name, x]));
    body.syslog = { servers: sys.servers.map((x) => ({ ...(old.get(x.name) || {}), ...x })) };
    const res = await api('PATCH', '/api/system/settings', { body, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.settingsError, res.error.message);
      return;
    }
    formError(this.ui.settingsError, '');
    this.ctx.flash('Settings saved.');
    this.load();
  }

  async createBackup() {
    const res = await api('POST', '/api/backups', { body: { passphrase: this.ui.passphrase.value }, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.createError, res.error.message);
      return;
    }
    formError(this.ui.createError, '');
    this.ui.passphrase.value = '';
    this.ctx.flash(`Backup ${res.data.name} created.`);
    this.load();
  }

  async restoreBackup() {
    const file = this.ui.restoreFile.files?.[0];
    if (!file) {
      formError(this.ui.restoreError, 'Choose a backup file.');
      return;
    }
    let res;
    try {
      res = await fetch('/api/backups/restore', {
        method: 'POST', body: file, credentials: 'same-origin',
        headers: { 'X-CSRF-Token': this.ctx.csrf(), 'X-Backup-Passphrase': this.ui.restorePass.value, 'Content-Type': 'application/octet-stream' },
      });
    } catch {
      formError(this.ui.restoreError, 'Cannot reach the Conclave server.');
      return;
    }
    const data = await res.json().catch(() => null);
    if (res.status === 401) {
      this.ctx.sessionEnded({ status: 401 });
      return;
    }
    if (!res.ok) {
      formError(this.ui.restoreError, data?.error?.message || 'The backup could not be checked.');
      return;
    }
    formError(this.ui.restoreError, '');
    this.ui.restorePass.value = '';
    this.ctx.flash(data.message);
  }

  async makeCSR() {
    const names = this.ui.csrNames.value.split(',').map((x) => x.trim()).filter(Boolean);
    const res = await api('POST', '/api/certificates/csr', {
      body: { keyType: this.ui.csrType.value, names, organization: this.ui.csrOrg.value.trim() }, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.csrError, res.error.message);
      return;
    }
    formError(this.ui.csrError, '');
    this.ui.csrOut.value = res.data.csr;
    this.ui.csrOut.hidden = false;
    this.ui.csrOut.select();
  }

  async post(path, body, errEl, done) {
    const res = await api('POST', path, { body, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(errEl, res.error.message);
      return;
    }
    formError(errEl, '');
    this.ctx.flash(done);
    this.load();
  }
}
