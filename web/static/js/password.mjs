// The password policy shown on the enrolment page. The server enforces the
// policy; this copy only guides the user while typing.

/** Minimum password length, in characters. */
export const MIN_PASSWORD = 12;

/** The rules, in the order they are shown. */
export const PASSWORD_RULES = Object.freeze([
  { id: 'length', text: `At least ${MIN_PASSWORD} characters`, test: (pw) => Array.from(pw).length >= MIN_PASSWORD },
  { id: 'lower', text: 'A lower-case letter', test: (pw) => /\p{Ll}/u.test(pw) },
  { id: 'upper', text: 'An upper-case letter', test: (pw) => /\p{Lu}/u.test(pw) },
  { id: 'digit', text: 'A digit', test: (pw) => /\p{Nd}/u.test(pw) },
  { id: 'special', text: 'A special character (not a letter or digit)', test: (pw) => /[^\p{L}\p{N}]/u.test(pw) },
]);

/**
 * Evaluates every rule on a password.
 * @param {string} pw
 * @returns {{id: string, text: string, ok: boolean}[]}
 */
export function checkPassword(pw) {
  const s = String(pw ?? '');
  return PASSWORD_RULES.map((r) => ({ id: r.id, text: r.text, ok: r.test(s) }));
}

/**
 * The first reason why the password and its confirmation cannot be
 * submitted, or '' when they can.
 * @param {string} pw
 * @param {string} confirm
 * @returns {string}
 */
export function passwordProblem(pw, confirm) {
  const failed = checkPassword(pw).filter((r) => !r.ok);
  if (failed.length) return `The password needs: ${failed.map((r) => r.text.toLowerCase()).join(', ')}.`;
  if (pw !== confirm) return 'The two passwords differ.';
  return '';
}
