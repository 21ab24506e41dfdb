// The room edit form of the admin page (#room-edit): name, access mode,
// PINs, guest rules (saved together with PATCH), and the room's members
// (each change saved at once with PUT or DELETE).

import { $, h } from './dom.mjs';
import { api } from './api.mjs';
import { roomFormProblem, roomPatch } from './roomaccess.mjs';

/**
 * @typedef {object} EditorHooks
 * @property {() => string} csrf the session's CSRF token
 * @property {(res: import('./api.mjs').ApiResult) => boolean} sessionEnded true when it handled a lost session
 * @property {(alias: string) => void} saved after a successful save
 * @property {(text: string) => void} flash a short status message
 */

/** The form that edits one room. */
export class RoomEditor {
  /** @param {EditorHooks} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    /** @type {object|null} the room being edited, as GET /api/rooms gave it */
    this.room = null;
    this.ui = {
      form: /** @type {HTMLFormElement} */ ($('#room-edit')),
      alias: $('#edit-alias'),
      name: /** @type {HTMLInputElement} */ ($('#edit-name')),
      hostPin: /** @type {HTMLInputElement} */ ($('#edit-host-pin')),
      guestPin: /** @type {HTMLInputElement} */ ($('#edit-guest-pin')),
      clearGuestPin: /** @type {HTMLInputElement} */ ($('#edit-clear-guest-pin')),
      clearGuestPinField: $('#edit-clear-guest-pin-field'),
      allowGuests: /** @type {HTMLInputElement} */ ($('#edit-allow-guests')),
      guestsMayUnmute: /** @type {HTMLInputElement} */ ($('#edit-guests-may-unmute')),
      guestsMayPresent: /** @type {HTMLInputElement} */ ($('#edit-guests-may-present')),
      membersOnly: /** @type {HTMLInputElement} */ ($('#edit-members-only')),
      members: $('#edit-members'),
      membersEmpty: $('#edit-members-empty'),
      memberUsername: /** @type {HTMLInputElement} */ ($('#member-username')),
      memberRole: /** @type {HTMLSelectElement} */ ($('#member-role')),
      addMember: /** @type {HTMLButtonElement} */ ($('#add-member')),
      error: $('#edit-error'),
      save: /** @type {HTMLButtonElement} */ ($('#edit-save')),
      cancel: $('#edit-cancel'),
    };
    const ui = this.ui;
    ui.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#save();
    });
    ui.cancel.addEventListener('click', () => this.close());
    ui.form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.close();
    });
    ui.clearGuestPin.addEventListener('change', () => {
      ui.guestPin.disabled = ui.clearGuestPin.checked;
      if (ui.clearGuestPin.checked) ui.guestPin.value = '';
    });
    for (const input of [ui.hostPin, ui.guestPin]) {
      input.addEventListener('input', () => {
        const cleaned = input.value.replace(/[\s-]/g, '');
        if (cleaned !== input.value) input.value = cleaned;
        input.removeAttribute('aria-invalid');
      });
    }
    ui.addMember.addEventListener('click', () => this.#addMember());
    ui.memberUsername.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault(); // adds the member instead of saving the form
      this.#addMember();
    });
    ui.members.addEventListener('click', (e) => {
      const b = /** @type {HTMLElement} */ (e.target).closest('button.remove-member');
      if (b) this.#removeMember(b.dataset.username);
    });
  }

  /** The alias of the room being edited, or ''. */
  get alias() {
    return this.room?.alias ?? '';
  }

  /**
   * Opens the form for a room.
   * @param {object} room a room from GET /api/rooms
   */
  open(room) {
    const ui = this.ui;
    this.room = room;
    ui.alias.textContent = room.alias;
    ui.name.value = room.name ?? '';
    const access = ['open', 'pin', 'accounts'].includes(room.access) ? room.access : 'open';
    for (const r of ui.form.querySelectorAll('input[name="access"]')) /** @type {HTMLInputElement} */ (r).checked = r.getAttribute('value') === access;
    ui.hostPin.value = '';
    ui.hostPin.placeholder = room.hasHostPin ? 'unchanged' : '';
    ui.guestPin.value = '';
    ui.guestPin.disabled = false;
    ui.guestPin.placeholder = room.hasGuestPin ? 'unchanged' : '';
    ui.clearGuestPin.checked = false;
    ui.clearGuestPinField.hidden = !room.hasGuestPin;
    ui.allowGuests.checked = !!room.allowGuests;
    ui.guestsMayUnmute.checked = !!room.guestsMayUnmute;
    ui.guestsMayPresent.checked = !!room.guestsMayPresent;
    ui.membersOnly.checked = !!room.membersOnly;
    ui.memberUsername.value = '';
    ui.memberRole.value = 'member';
    for (const input of [ui.name, ui.hostPin, ui.guestPin]) input.removeAttribute('aria-invalid');
    this.#error('');
    this.#renderMembers([]);
    ui.form.hidden = false;
    ui.form.scrollIntoView?.({ block: 'nearest' });
    ui.name.focus();
    this.#loadMembers();
  }

  /** Closes the form without saving. */
  close() {
    this.room = null;
    this.ui.form.hidden = true;
  }

  /** @returns {import('./roomaccess.mjs').RoomForm} */
  #read() {
    const ui = this.ui;
    const checked = /** @type {HTMLInputElement|null} */ (ui.form.querySelector('input[name="access"]:checked'));
    return {
      name: ui.name.value.trim(),
      access: checked?.value ?? 'open',
      hostPin: ui.hostPin.value.trim(),
      guestPin: ui.guestPin.value.trim(),
      clearGuestPin: ui.clearGuestPin.checked,
      allowGuests: ui.allowGuests.checked,
      guestsMayUnmute: ui.guestsMayUnmute.checked,
      guestsMayPresent: ui.guestsMayPresent.checked,
      membersOnly: ui.membersOnly.checked,
    };
  }

  #error(text) {
    this.ui.error.textContent = text;
    this.ui.error.hidden = !text;
  }

  async #save() {
    const room = this.room;
    if (!room) return;
    const ui = this.ui;
    const values = this.#read();
    const problem = roomFormProblem(values);
    if (problem) {
      const input = ui[problem.field];
      input.setAttribute('aria-invalid', 'true');
      this.#error(problem.text);
      input.focus();
      return;
    }
    const body = roomPatch(room, values);
    if (Object.keys(body).length === 0) {
      this.hooks.flash('Nothing to save: no setting changed.');
      this.close();
      return;
    }
    ui.save.disabled = true;
    const res = await api('PATCH', `/api/rooms/${encodeURIComponent(room.alias)}`, { body, csrf: this.hooks.csrf() });
    ui.save.disabled = false;
    if (this.hooks.sessionEnded(res)) return;
    if (!res.ok) {
      this.#error(res.error.message);
      return;
    }
    this.hooks.flash(`Room ${room.alias} saved.`);
    this.close();
    this.hooks.saved(room.alias);
  }

  // ---- members -------------------------------------------------------------

  #membersPath(username) {
    const base = `/api/rooms/${encodeURIComponent(this.alias)}/members`;
    return username === undefined ? base : `${base}/${encodeURIComponent(username)}`;
  }

  async #loadMembers() {
    const alias = this.alias;
    const res = await api('GET', this.#membersPath());
    if (alias !== this.alias) return; // another room was opened meanwhile
    if (this.hooks.sessionEnded(res)) return;
    if (!res.ok) {
      this.#error(res.error.message);
      return;
    }
    this.#renderMembers(Array.isArray(res.data?.members) ? res.data.members : []);
  }

  #renderMembers(members) {
    const items = members.map((m) => h('li', { dataset: { username: m.username, role: m.role } },
      h('span', { class: 'name' }, m.displayName && m.displayName !== m.username ? `${m.displayName} (${m.username})` : m.username),
      h('span', { class: 'member-role' }, m.role === 'host' ? 'host' : 'member'),
      h('button', { type: 'button', class: 'remove-member', dataset: { username: m.username }, 'aria-label': `Remove member ${m.username}` }, 'Remove')));
    this.ui.members.replaceChildren(...items);
    this.ui.membersEmpty.hidden = members.length > 0;
  }

  async #addMember() {
    const ui = this.ui;
    const username = ui.memberUsername.value.trim();
    if (!this.room) return;
    if (!username) {
      this.#error('Enter the username of the account to add.');
      ui.memberUsername.focus();
      return;
    }
    const role = ui.memberRole.value === 'host' ? 'host' : 'member';
    ui.addMember.disabled = true;
    const res = await api('PUT', this.#membersPath(username), { body: { role }, csrf: this.hooks.csrf() });
    ui.addMember.disabled = false;
    if (this.hooks.sessionEnded(res)) return;
    if (!res.ok) {
      this.#error(res.error.message);
      ui.memberUsername.focus();
      return;
    }
    this.#error('');
    ui.memberUsername.value = '';
    this.hooks.flash(`${username} is now a ${role} of ${this.alias}.`);
    this.#loadMembers();
  }

  async #removeMember(username) {
    if (!this.room || !username) return;
    const res = await api('DELETE', this.#membersPath(username), { csrf: this.hooks.csrf() });
    if (this.hooks.sessionEnded(res)) return;
    if (!res.ok && res.status !== 404) {
      this.#error(res.error.message);
      return;
    }
    this.#error('');
    this.hooks.flash(`${username} is no longer a member of ${this.alias}.`);
    this.#loadMembers();
  }
}
