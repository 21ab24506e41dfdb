// The enrolment page (/enrol#<token>): the one-time token travels in the
// URL fragment, so it never reaches the server's logs; the page takes it out
// of the address bar and keeps it for this tab only.

import { $, h } from './dom.mjs';
import { api } from './api.mjs';
import { checkPassword, passwordProblem } from './password.mjs';

const TOKEN_KEY = 'conclave.enrolToken';

const ui = {
  invalid: $('#enrol-invalid'),
  form: $('#enrol-form'),
  username: /** @type {HTMLInputElement} */ ($('#username')),
  displayName: /** @type {HTMLInputElement} */ ($('#display-name')),
  password: /** @type {HTMLInputElement} */ ($('#password')),
  confirm: /** @type {HTMLInputElement} */ ($('#password-confirm')),
  policy: $('#policy'),
  error: $('#enrol-error'),
  submit: /** @type {HTMLButtonElement} */ ($('#enrol')),
  done: $('#enrol-done'),
  doneText: $('#enrol-done-text'),
};

/** Reads the token from the fragment (or from this tab after a reload). */
function takeToken() {
  let token = '';
  try {
    token = decodeURIComponent(location.hash.replace(/^#/, '')).trim();
  } catch {
    token = '';
  }
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else token = sessionStorage.getItem(TOKEN_KEY) || '';
  } catch { /* storage disabled: keep it in memory */ }
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return token;
}

function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* nothing kept */ }
}

function renderPolicy() {
  const items = checkPassword(ui.password.value).map((r) =>
    h('li', { class: r.ok ? 'met' : null, dataset: { rule: r.id } }, r.text,
      h('span', { class: 'visually-hidden' }, r.ok ? ' (met)' : ' (not met yet)')));
  ui.policy.replaceChildren(...items);
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

const token = takeToken();
if (!token) {
  ui.invalid.hidden = false;
} else {
  ui.form.hidden = false;
  renderPolicy();
  ui.username.focus();
}

ui.password.addEventListener('input', renderPolicy);
for (const el of [ui.username, ui.displayName, ui.password, ui.confirm]) el.addEventListener('input', () => showError(''));

ui.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = ui.username.value.trim();
  const displayName = ui.displayName.value.trim();
  const password = ui.password.value;
  if (!username) return fail('Choose a username.', ui.username);
  if (!displayName) return fail('Enter your display name.', ui.displayName);
  const problem = passwordProblem(password, ui.confirm.value);
  if (problem) return fail(problem, password === ui.confirm.value ? ui.password : ui.confirm);
  ui.submit.disabled = true;
  const res = await api('POST', '/api/enrol', { body: { token, username, displayName, password } });
  ui.submit.disabled = false;
  if (res.ok) {
    forgetToken();
    ui.password.value = '';
    ui.confirm.value = '';
    ui.form.hidden = true;
    const user = res.data?.user ?? {};
    ui.doneText.textContent = `You can now sign in as ${user.username || username}.`;
    ui.done.hidden = false;
    return undefined;
  }
  return fail(res.error.message, null);
});

function fail(text, field) {
  showError(text);
  field?.focus();
}
