// The Nodes page of the administration (docs/cluster.md): the cluster's
// nodes with their health, load, participants, version and certificate
// expiry; enrolment tokens for new nodes; removal and draining. It uses
// only the management API (docs/openapi.yaml, tag "cluster").

import { $, h } from './dom.mjs';
import { api } from './api.mjs';
import { nodeHealth, certDays } from './adminforms.mjs';

/** @typedef {import('./adminaccounts.mjs').PageContext} PageContext */

function formError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

/** The nodes page. */
export class NodesPage {
  /** @param {PageContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    const u = (this.ui = {
      error: $('#nodes-error'), table: $('#nodes'), empty: $('#nodes-empty'), refresh: $('#nodes-refresh'),
      manage: $('#nodes-manage'), form: /** @type {HTMLFormElement} */ ($('#node-add')),
      name: /** @type {HTMLInputElement} */ ($('#node-name')), labels: /** @type {HTMLInputElement} */ ($('#node-labels')),
      mgmt: /** @type {HTMLInputElement} */ ($('#node-management')), addError: $('#node-add-error'),
      command: /** @type {HTMLTextAreaElement} */ ($('#node-command')),
    });
    u.refresh.addEventListener('click', () => this.load());
    u.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.add();
    });
  }

  async load({ background = false } = {}) {
    const res = await api('GET', '/api/nodes', { background });
    if (this.ctx.sessionEnded(res)) return;
    const manage = this.ctx.can('system.manage');
    this.ui.manage.hidden = !manage;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      this.ui.table.replaceChildren();
      return;
    }
    formError(this.ui.error, '');
    const nodes = res.data?.nodes || [];
    this.ui.empty.hidden = nodes.length > 0;
    const now = Date.now();
    this.ui.table.replaceChildren(...nodes.map((n) => {
      const st = n.status;
      const health = nodeHealth(n);
      const actions = h('td', {});
      if (manage && !n.removedAt && st?.up) {
        const drain = h('button', { type: 'button' }, st.draining ? 'End draining' : 'Drain');
        drain.addEventListener('click', () => this.drain(n.name, !st.draining));
        actions.append(drain);
      }
      if (manage && n.role !== 'management' && !n.removedAt) {
        const rm = h('button', { type: 'button', class: 'danger' }, 'Remove');
        rm.addEventListener('click', () => this.remove(n.name));
        actions.append(' ', rm);
      }
      return h('tr', { class: health.ok ? '' : 'failure', dataset: { node: n.name } },
        h('td', {}, n.name), h('td', {}, n.role), h('td', {}, n.labels || ''),
        h('td', { class: 'health' }, health.text),
        h('td', { class: 'num' }, st ? `${Math.round((st.load || 0) * 100)} %` : ''),
        h('td', { class: 'num' }, st ? `${st.participants} in ${st.meetings}` : ''),
        h('td', {}, st?.version || ''),
        h('td', { title: n.certExpiry || '' }, n.certExpiry ? `${certDays(n.certExpiry, now)} days` : ''),
        actions);
    }));
  }

  async add() {
    const u = this.ui;
    const body = { name: u.name.value.trim(), labels: u.labels.value.trim(), management: u.mgmt.value.trim() };
    const res = await api('POST', '/api/nodes', { body, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(u.addError, res.error.message);
      return;
    }
    formError(u.addError, '');
    u.command.value = res.data.command;
    u.command.hidden = false;
    this.ctx.flash(`Run the command shown on node ${res.data.name} within the token's lifetime.`);
    this.load();
  }

  async remove(name) {
    if (!(await this.ctx.confirm(`Remove node ${name} from the cluster? Its certificates are revoked at once; it must be enrolled again to come back.`))) return;
    const res = await api('DELETE', `/api/nodes/${encodeURIComponent(name)}`, { csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      return;
    }
    this.ctx.flash(`Node ${name} removed.`);
    this.load();
  }

  async drain(name, on) {
    const res = await api('POST', `/api/nodes/${encodeURIComponent(name)}/drain`, { body: { on }, csrf: this.ctx.csrf() });
    if (this.ctx.sessionEnded(res)) return;
    if (!res.ok) {
      formError(this.ui.error, res.error.message);
      return;
    }
    this.ctx.flash(on ? `Node ${name} is draining: its participants move to other nodes.` : `Node ${name} takes participants again.`);
    this.load();
  }
}
