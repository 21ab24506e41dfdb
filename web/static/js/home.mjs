// The home page: a room name or a pasted meeting link leads to /r/<alias>.

import { $ } from './dom.mjs';
import { aliasFromInput, meetingPath } from './links.mjs';
import { prepareIdentity } from './call.mjs';
import { watchTrust } from './trustwatch.mjs';

// A signed-in user's devices watch the identity log from every page.
watchTrust(prepareIdentity());

const form = $('#room-form');
const input = /** @type {HTMLInputElement} */ ($('#room'));
const error = $('#room-error');

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const { alias, error: problem } = aliasFromInput(input.value);
  if (problem) {
    error.textContent = problem;
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  location.assign(meetingPath(alias));
});

input.addEventListener('input', () => {
  error.hidden = true;
  input.removeAttribute('aria-invalid');
});

input.focus();
