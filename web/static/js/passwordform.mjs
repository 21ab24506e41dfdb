// The password change the server requires after some sign-ins
// (mustChangePassword): POST /api/password with the current and the new
// password. The server enforces the policy; the list only guides.

import { $, h } from './dom.mjs';
import { api } from './api.mjs';
import { checkPassword } from './password.mjs';

/** The #password-form of the admin page. */
export class PasswordChange {
  /**
   * @param {object} hooks
   * @param {() => string} hooks.csrf the session's CSRF token
   * @param {(res: import('./api.mjs').ApiResult) => boolean} hooks.sessionEnded true when it handled a lost session
   * @param {() => void} hooks.done after the password was changed
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.ui = {
      form: $('#password-form'),
      old: /** @type {HTMLInputElement} */ ($('#old-password')),
      password: /** @type {HTMLInputElement} */ ($('#new-password')),
      confirm: /** @type {HTMLInputElement} */ ($('#new-password-confirm')),
      policy: $('#password-policy'),
      error: $('#password-error'),
      submit: /** @type {HTMLButtonElement} */ ($('#change-password')),
    };
    const ui = this.ui;
    ui.password.addEventListener('input', () => this.#renderPolicy());
    ui.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#submit();
    });
  }

  /** Empties the form and puts focus in it; the page shows its screen. */
  reset() {
    const ui = this.ui;
    ui.old.value = '';
    ui.password.value = '';
    ui.confirm.value = '';
    this.#error('');
    this.#renderPolicy();
    ui.old.focus();
  }

  #renderPolicy() {
    const items = checkPassword(this.ui.password.value).map((r) =>
      h('li', { class: r.ok ? 'met' : null, dataset: { rule: r.id } }, r.text,
        h('span', { class: 'visually-hidden' }, r.ok ? ' (met)' : ' (not met yet)')));
    this.ui.policy.replaceChildren(...items);
  }

  #error(text) {
    this.ui.error.textContent = text;
    this.ui.error.hidden = !text;
  }

  async #submit() {
    const ui = this.ui;
    const oldPassword = ui.old.value;
    const newPassword = ui.password.value;
    if (!oldPassword || !newPassword) {
      this.#error('Enter your current password and a new one.');
      (oldPassword ? ui.password : ui.old).focus();
      return;
    }
    if (newPassword !== ui.confirm.value) {
      this.#error('The two new passwords differ.');
      ui.confirm.focus();
      return;
    }
    ui.submit.disabled = true;
    const res = await api('POST', '/api/password', { body: { oldPassword, newPassword }, csrf: this.hooks.csrf() });
    ui.submit.disabled = false;
    if (this.hooks.sessionEnded(res)) return;
    if (!res.ok) {
      // password-policy, password-reused, password-too-recent, bad-credentials: the server says which.
      this.#error(res.error.message);
      (res.error.code === 'bad-credentials' ? ui.old : ui.password).focus();
      return;
    }
    ui.old.value = '';
    ui.password.value = '';
    ui.confirm.value = '';
    this.#error('');
    this.hooks.done();
  }
}
