// The lobby panel of a host (docs/protocol.md, "Waiting and the lobby"): the
// newcomers knocking at a locked meeting, each with Admit and Deny.

import { h, focusedButton, restoreFocus } from './dom.mjs';
import { initials } from './names.mjs';

/** The list of knocks a host answers. */
export class Lobby {
  /**
   * @param {object} o
   * @param {HTMLElement} o.list the <ul> of knocks (#lobby-list)
   * @param {HTMLElement} o.empty shown when nobody knocks
   * @param {(id: string, admit: boolean) => boolean} o.answer sends admit or deny; false if it could not be sent
   */
  constructor({ list, empty, answer }) {
    this.list = list;
    this.empty = empty;
    this.answer = answer;
    /** @type {Set<string>} knocks answered and not yet ended by the server */
    this.pending = new Set();
    /** @type {object[]} */
    this.knocks = [];
    list.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-target]');
      if (!b || !list.contains(b)) return;
      const id = b.dataset.target;
      if (this.answer(id, b.classList.contains('admit'))) {
        this.pending.add(id);
        this.render(this.knocks);
      }
    });
  }

  /**
   * Shows the knocks.
   * @param {{id: string, name: string, account?: boolean, gateway?: string}[]} knocks
   */
  render(knocks) {
    this.knocks = knocks;
    const ids = new Set(knocks.map((k) => k.id));
    for (const id of this.pending) if (!ids.has(id)) this.pending.delete(id);
    const items = knocks.map((p) => {
      const busy = this.pending.has(p.id);
      // A gateway (docs/protocol.md, "Gateways") breaks end-to-end
      // encryption: the host is told before consenting.
      const kind = p.gateway ? 'telephone, not end-to-end' : p.account ? 'account' : 'guest';
      return h('li', { dataset: { participant: p.id, account: String(!!p.account), ...(p.gateway ? { gateway: p.gateway } : {}) } },
        h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(p.name)),
        h('span', { class: 'name' }, p.name),
        h('span', { class: 'kind' }, kind),
        p.gateway ? h('span', { class: 'name-note', role: 'note' }, 'Admitting it lets the server hear this meeting until it leaves.') : null,
        h('span', { class: 'lobby-actions' },
          h('button', { type: 'button', class: 'admit primary', disabled: busy, dataset: { target: p.id }, 'aria-label': `Admit ${p.name}` }, 'Admit'),
          h('button', { type: 'button', class: 'deny', disabled: busy, dataset: { target: p.id }, 'aria-label': `Deny ${p.name}` }, 'Deny')));
    });
    const focused = focusedButton(this.list);
    this.list.replaceChildren(...items);
    restoreFocus(this.list, focused);
    this.empty.hidden = knocks.length > 0;
  }

  /** Forgets every knock (the meeting was left, or the host role lost). */
  clear() {
    this.pending.clear();
    this.render([]);
  }
}
