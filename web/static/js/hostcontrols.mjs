// Host controls on the meeting page (docs/protocol.md, "Host controls"): the
// host part of the toolbar (mute guests, lock, lobby, settings, end), the
// buttons next to each participant, the confirmation dialogs and the
// meeting settings panel. Rendered only while the local participant is a
// host; the server refuses the commands of anyone else (forbidden).

import { h } from './dom.mjs';
import { icon } from './icons.mjs';
import { roleChange } from './access.mjs';

/**
 * @typedef {object} HostElements
 * @property {HTMLElement} toolbar the meeting's toolbar
 * @property {HTMLElement} before the toolbar button the host controls go before
 * @property {HTMLElement} list the participant list (#participants)
 * @property {import('./panels.mjs').Panels} panels
 * @property {HTMLElement} lobbyPanel #lobby
 * @property {HTMLElement} settingsPanel #room-settings
 * @property {HTMLInputElement} guestsMayUnmute
 * @property {HTMLInputElement} guestsMayPresent
 * @property {HTMLDialogElement} confirmRemove
 * @property {HTMLElement} confirmRemoveText
 * @property {HTMLElement} confirmRemoveYes
 * @property {HTMLElement} confirmRemoveNo
 * @property {HTMLDialogElement} confirmEnd
 * @property {HTMLElement} confirmEndYes
 * @property {HTMLElement} confirmEndNo
 */

/** The host's controls, attached to the page while the local participant is a host. */
export class HostControls {
  /**
   * @param {HostElements} el
   * @param {() => import('./session.mjs').Session|null} session the current session
   */
  constructor(el, session) {
    this.el = el;
    this.session = session;
    this.roomState = { locked: false, guestsMayUnmute: false, guestsMayPresent: false, hostPresent: false };

    const button = (id, iconName, label, cls = '') => h('button', { id, type: 'button', class: `control ${cls}`.trim() }, icon(iconName), h('span', { class: 'label' }, label));
    this.muteGuests = button('mute-guests', 'mute-all', 'Mute guests');
    this.muteGuests.title = 'Mute every guest';
    this.lock = button('toggle-lock', 'lock', 'Lock');
    this.lock.setAttribute('aria-pressed', 'false');
    this.lobbyCount = h('span', { id: 'lobby-count', class: 'count badge-count' });
    this.lobby = button('toggle-lobby', 'lobby', 'Lobby');
    this.lobby.append(' ', this.lobbyCount);
    this.settings = button('toggle-settings', 'settings', 'Settings');
    this.end = button('end-meeting', 'end', 'End meeting', 'danger');
    this.end.title = 'End the meeting for everyone';
    this.group = h('div', { class: 'host-toolbar', role: 'group', 'aria-label': 'Host controls' },
      this.muteGuests, this.lock, this.lobby, this.settings, this.end);
    el.panels.add('lobby', el.lobbyPanel, this.lobby);
    el.panels.add('settings', el.settingsPanel, this.settings);

    this.muteGuests.addEventListener('click', () => this.session()?.muteGuests());
    this.lock.addEventListener('click', () => this.session()?.lock(!this.roomState.locked));
    this.end.addEventListener('click', () => openDialog(el.confirmEnd, el.confirmEndNo));
    el.confirmEndYes.addEventListener('click', () => el.confirmEnd.close('yes'));
    el.confirmEndNo.addEventListener('click', () => el.confirmEnd.close('no'));
    el.confirmEnd.addEventListener('close', () => {
      if (el.confirmEnd.returnValue === 'yes') this.session()?.end();
    });

    el.confirmRemoveYes.addEventListener('click', () => el.confirmRemove.close('yes'));
    el.confirmRemoveNo.addEventListener('click', () => el.confirmRemove.close('no'));
    el.confirmRemove.addEventListener('close', () => {
      const target = el.confirmRemove.dataset.target;
      delete el.confirmRemove.dataset.target;
      if (el.confirmRemove.returnValue === 'yes' && target) this.session()?.remove(target);
    });

    const settingsChanged = () => this.session()?.setRoomSettings({
      guestsMayUnmute: el.guestsMayUnmute.checked,
      guestsMayPresent: el.guestsMayPresent.checked,
    });
    el.guestsMayUnmute.addEventListener('change', settingsChanged);
    el.guestsMayPresent.addEventListener('change', settingsChanged);

    el.list.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button[data-target]');
      if (!b || !el.list.contains(b)) return;
      const s = this.session();
      const p = s?.participants.get(b.dataset.target);
      if (!s || !p) return;
      if (b.classList.contains('mute')) s.mute(p.id);
      else if (b.classList.contains('remove')) this.#confirmRemove(p);
      else if (b.classList.contains('promote') || b.classList.contains('demote')) s.setRole(p.id, roleChange(p).role);
    });
  }

  /**
   * Shows the controls when `self` is a host, removes them otherwise, and
   * reflects the room state.
   * @param {{role?: string}|null} self
   * @param {{locked: boolean, guestsMayUnmute: boolean, guestsMayPresent: boolean, hostPresent: boolean}} roomState
   */
  update(self, roomState) {
    const el = this.el;
    this.roomState = { ...roomState };
    const host = self?.role === 'host';
    if (host && !this.group.isConnected) el.toolbar.insertBefore(this.group, el.before);
    if (!host) this.detach();
    this.lock.setAttribute('aria-pressed', String(!!roomState.locked));
    this.lock.title = roomState.locked ? 'Unlock the meeting: newcomers enter without knocking' : 'Lock the meeting: newcomers wait in the lobby';
    el.guestsMayUnmute.checked = !!roomState.guestsMayUnmute;
    el.guestsMayPresent.checked = !!roomState.guestsMayPresent;
  }

  /** Removes every host control from the page (role lost, meeting left). */
  detach() {
    const el = this.el;
    if (this.group.isConnected) this.group.remove();
    el.panels.close('lobby');
    el.panels.close('settings');
    if (el.confirmRemove.open) el.confirmRemove.close('no');
    if (el.confirmEnd.open) el.confirmEnd.close('no');
  }

  /**
   * Shows how many newcomers wait in the lobby.
   * @param {number} n
   */
  setLobbyCount(n) {
    this.lobbyCount.textContent = n ? String(n) : '';
    this.lobby.title = n === 1 ? 'One person is waiting in the lobby' : n ? `${n} people are waiting in the lobby` : 'Nobody is waiting in the lobby';
  }

  /**
   * The host's buttons for one participant of the list.
   * @param {{id: string, name: string, role?: string, account?: boolean, muted?: boolean}} p
   * @returns {HTMLElement}
   */
  actionsFor(p) {
    const rc = roleChange(p);
    return h('span', { class: 'host-actions' },
      h('button', { type: 'button', class: 'mute', dataset: { target: p.id }, disabled: !!p.muted, 'aria-label': `Mute ${p.name}`, title: p.muted ? 'Muted by a host' : 'Mute' }, 'Mute'),
      h('button', { type: 'button', class: rc.action, dataset: { target: p.id }, 'aria-label': `${rc.label}: ${p.name}` }, rc.label),
      h('button', { type: 'button', class: 'remove', dataset: { target: p.id }, 'aria-label': `Remove ${p.name}` }, 'Remove'));
  }

  #confirmRemove(p) {
    const el = this.el;
    el.confirmRemoveText.textContent = `Remove ${p.name} from the meeting? They cannot join it again until it ends.`;
    el.confirmRemove.dataset.target = p.id;
    openDialog(el.confirmRemove, el.confirmRemoveNo);
  }
}

function openDialog(dialog, focus) {
  if (dialog.open) return;
  dialog.returnValue = '';
  dialog.showModal();
  focus.focus();
}
