// The participants panel of the meeting screen: everyone the server lists,
// with their role, microphone, camera and screen, their end-to-end
// verification (e2eeview.mjs) and, for a host, the host's actions on them
// (hostcontrols.mjs); and the participants whose announcement verified but
// whom the server does not list.

import { $, h, focusedButton, restoreFocus } from './dom.mjs';
import { icon } from './icons.mjs';
import { initials } from './names.mjs';
import { roleLabel } from './access.mjs';
import { participantE2EE } from './e2eeview.mjs';

/** The list of participants. */
export class ParticipantsView {
  /**
   * @param {object} o
   * @param {import('./hostcontrols.mjs').HostControls} o.host the host's actions on a participant
   */
  constructor({ host }) {
    this.host = host;
    this.list = $('#participants');
    this.count = $('#participant-count');
  }

  /**
   * Shows the participants.
   * @param {object} self the local participant (selfView)
   * @param {object[]} others the server's participants
   * @param {object|null} e2ee the call's E2EE state
   */
  render(self, others, e2ee) {
    const people = [{ ...self, self: true }, ...others.map((p) => ({ ...p, self: false }))];
    const views = new Map((e2ee?.participants ?? []).map((v) => [v.self ? '\u0000self' : v.id, v]));
    const isHost = self.role === 'host';
    const items = people.map((p) => {
      const badge = roleLabel(p.role);
      const li = h('li', { dataset: { participant: p.id, audio: String(!!p.audio), video: String(!!p.video) } },
        h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(p.name)),
        h('span', { class: 'name' }, p.self ? `${p.name} (you)` : p.name),
        badge ? h('span', { class: 'role' }, badge) : null,
        h('span', { class: 'state' },
          p.muted
            ? h('span', { role: 'img', 'aria-label': 'muted by a host', title: 'Muted by a host', class: 'off muted-by-host' }, icon('mic-off'))
            : h('span', { role: 'img', 'aria-label': p.audio ? 'microphone on' : 'microphone off', class: p.audio ? 'on' : 'off' }, icon(p.audio ? 'mic' : 'mic-off')),
          h('span', { role: 'img', 'aria-label': p.video ? 'camera on' : 'camera off', class: p.video ? 'on' : 'off' }, icon(p.video ? 'camera' : 'camera-off')),
          p.screen ? h('span', { role: 'img', 'aria-label': 'sharing screen', class: 'on' }, icon('screen')) : null),
        isHost && !p.self ? this.host.actionsFor(p) : null);
      if (p.role) li.dataset.role = p.role;
      if (p.muted) li.dataset.muted = 'true';
      if (p.self) li.dataset.self = 'true';
      li.append(participantE2EE(li, views.get(p.self ? '\u0000self' : p.id)));
      return li;
    });
    // Verified announcements of participants the server does not list: the
    // server may be hiding them from its list, or injecting them.
    for (const v of views.values()) {
      if (v.self || v.listed) continue;
      const li = h('li', { dataset: { participant: v.id, ghost: 'true' }, title: 'The server does not list this participant, but its announcement verified' },
        h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(v.name)),
        h('span', { class: 'name' }, `${v.name} (not listed by the server)`));
      li.append(participantE2EE(li, v));
      items.push(li);
    }
    const focused = focusedButton(this.list);
    this.list.replaceChildren(...items);
    restoreFocus(this.list, focused);
    this.count.textContent = String(people.length);
  }

  /** Empties the list (the meeting is over). */
  clear() { this.list.replaceChildren(); }
}
