// Room aliases and meeting links.

/** Longest room alias, as the server's store allows. */
export const MAX_ALIAS = 64;

/**
 * Why a room alias is not valid, or '' when it is. Aliases are 1 to 64
 * characters among lower-case letters a-z, digits, '-', '_' and '.',
 * starting with a letter or digit (the server's store.ValidAlias).
 * @param {string} alias
 * @returns {string}
 */
export function aliasProblem(alias) {
  if (!alias) return 'Enter a room alias.';
  if (alias.length > MAX_ALIAS) return `The alias is too long: at most ${MAX_ALIAS} characters.`;
  if (!/^[a-z0-9]/.test(alias)) return 'The alias must start with a lower-case letter or a digit.';
  const bad = alias.match(/[^a-z0-9._-]/);
  if (bad) return `The alias cannot contain "${bad[0]}": use lower-case letters a-z, digits, "-", "_" and ".".`;
  return '';
}

/**
 * Turns what a user typed on the home page - a room alias, a room name such
 * as "Weekly Sync", or a pasted meeting link such as
 * https://host/r/weekly-sync - into a room alias.
 * @param {string} input
 * @returns {{alias: string, error: string}} error is '' on success
 */
export function aliasFromInput(input) {
  const text = String(input ?? '').trim();
  if (!text) return { alias: '', error: 'Type a room name or paste a meeting link.' };
  let alias;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text) || text.startsWith('/') || /\/r\//.test(text)) {
    let url;
    try {
      // A link pasted without its scheme ("host/r/alias") is read as https.
      const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) || text.startsWith('/') ? text : `https://${text}`;
      url = new URL(absolute, 'https://conclave.invalid/');
    } catch {
      return { alias: '', error: 'This link is not a valid address.' };
    }
    const m = url.pathname.match(/^\/r\/([^/]+)\/?$/);
    if (!m) return { alias: '', error: 'This link is not a Conclave meeting link (they look like https://…/r/room-name).' };
    try {
      alias = decodeURIComponent(m[1]);
    } catch {
      return { alias: '', error: 'This link is not a valid address.' };
    }
  } else {
    alias = text.replace(/\s+/gu, '-');
  }
  alias = alias.toLowerCase();
  return { alias, error: aliasProblem(alias) };
}

/**
 * The path of a room's meeting page.
 * @param {string} alias
 * @returns {string}
 */
export function meetingPath(alias) {
  return `/r/${encodeURIComponent(alias)}`;
}

/**
 * The room alias in a meeting page path ("/r/<alias>"), or '' if the path is
 * not one.
 * @param {string} pathname
 * @returns {string}
 */
export function aliasFromPath(pathname) {
  const m = String(pathname).match(/^\/r\/([^/]+)\/?$/);
  if (!m) return '';
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return '';
  }
}

/**
 * The meeting path a sign-in may continue to (the `next` query parameter),
 * or '' when `next` is not one. Only a same-origin path of a meeting page,
 * "/r/<alias>", is accepted: anything else (another origin, "//host",
 * "/\\host", another page of this server) is refused, so that a crafted link
 * cannot send a person who just signed in somewhere else (open redirect).
 * The result is rebuilt from the alias, not copied.
 * @param {string|null|undefined} next
 * @returns {string}
 */
export function safeNextPath(next) {
  if (typeof next !== 'string' || !next.startsWith('/r/') || next.length > 512) return '';
  if (/[\\\u0000-\u001f\u007f]/.test(next)) return '';
  let url;
  try {
    url = new URL(next, 'https://conclave.invalid/');
  } catch {
    return '';
  }
  if (url.origin !== 'https://conclave.invalid' || url.search || url.hash) return '';
  const alias = aliasFromPath(url.pathname);
  if (!alias || aliasProblem(alias.toLowerCase())) return '';
  return meetingPath(alias.toLowerCase());
}

/**
 * The admin page's sign-in link that comes back to a meeting.
 * @param {string} alias
 * @returns {string}
 */
export function signInPath(alias) {
  return `/admin?next=${encodeURIComponent(meetingPath(alias))}`;
}

/**
 * The sign-in link of a meeting page: the admin page of this server, or,
 * on a conference node (whose GET /api/me names the management node in
 * signIn), the management node's, which sends the account on to a node
 * with an admission ticket (docs/cluster.md).
 * @param {string} alias
 * @param {unknown} [signIn] the management node's base URL, https only
 * @returns {string}
 */
export function signInLink(alias, signIn) {
  if (typeof signIn === 'string' && signIn) {
    try {
      const u = new URL(signIn);
      if (u.protocol === 'https:' && !u.username && !u.password) return u.origin + signInPath(alias);
    } catch {
      // not a URL: this server's own sign-in
    }
  }
  return signInPath(alias);
}
