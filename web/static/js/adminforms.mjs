// DOM-free helpers of the administration pages: which pages a set of
// permissions opens, group-to-role mappings as text, and the text shown
// for an account's state. Tested under Node (adminforms.test.mjs).

/**
 * The administration pages, in the order of the navigation, with the
 * permission that opens each.
 */
export const PAGES = [
  { id: 'rooms', label: 'Rooms', perm: 'rooms.view' },
  { id: 'users', label: 'Accounts', perm: 'users.view' },
  { id: 'roles', label: 'Roles', perm: 'roles.view' },
  { id: 'sessions', label: 'Sessions', perm: 'sessions.view' },
  { id: 'signin', label: 'Sign-in', perm: 'auth-settings.view' },
  { id: 'audit', label: 'Audit log', perm: 'audit.view' },
  { id: 'system', label: 'System', perm: 'system.view' },
  { id: 'nodes', label: 'Nodes', perm: 'system.view' },
];

/**
 * The pages a signed-in account may open.
 * @param {string[]} permissions
 * @returns {{id: string, label: string, perm: string}[]}
 */
export function pagesFor(permissions) {
  const have = new Set(permissions || []);
  return PAGES.filter((p) => have.has(p.perm));
}

/**
 * Formats group-to-role mappings as lines "GROUP = role, role".
 * @param {{group: string, roles: string[]|null}[]|null} groups
 * @returns {string}
 */
export function groupsToText(groups) {
  return (groups || []).map((g) => `${g.group} = ${(g.roles || []).join(', ')}`).join('\n');
}

/**
 * Parses lines "GROUP = role, role" (the last "=" separates, since DNs
 * contain "="). Returns the mappings, or an error sentence naming the
 * first bad line.
 * @param {string} text
 * @returns {{groups: {group: string, roles: string[]}[], error: string}}
 */
export function textToGroups(text) {
  const groups = [];
  const lines = String(text || '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const at = line.lastIndexOf('=');
    const group = at > 0 ? line.slice(0, at).trim() : '';
    const roles = at > 0 ? line.slice(at + 1).split(',').map((r) => r.trim()).filter(Boolean) : [];
    if (!group || roles.length === 0) {
      return { groups: [], error: `Line ${i + 1} is not “GROUP = role, role”.` };
    }
    groups.push({ group, roles });
  }
  return { groups, error: '' };
}

/**
 * A short description of an account's state.
 * @param {{enabled: boolean, lockedUntil?: string, mustChangePassword?: boolean}} a
 * @returns {string}
 */
export function accountState(a) {
  if (!a.enabled) return 'Disabled';
  const parts = ['Enabled'];
  if (a.lockedUntil) parts.push('locked');
  if (a.mustChangePassword) parts.push('must change password');
  return parts.join(', ');
}

/**
 * A date-time for tables, in the browser's time zone, to the minute.
 * @param {string} iso
 * @returns {string}
 */
export function shortTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * The query string of an audit listing from the filter form's values:
 * empty values left out, dates as given (the server reads YYYY-MM-DD).
 * @param {Record<string, string>} f
 * @param {{before?: number, format?: string}} [extra]
 * @returns {string}
 */
export function auditQuery(f, extra = {}) {
  const q = new URLSearchParams();
  for (const k of ['action', 'actor', 'outcome', 'q', 'since', 'until']) {
    const v = String(f?.[k] ?? '').trim();
    if (v) q.set(k, v);
  }
  if (extra.before) q.set('before', String(extra.before));
  if (extra.format) q.set('format', extra.format);
  return q.toString();
}

/**
 * Parses the syslog servers' lines "name, host:port[, server name]".
 * Returns the servers, or an error naming the first bad line.
 * @param {string} text
 * @returns {{servers: {name: string, address: string, serverName?: string}[], error: string}}
 */
export function parseSyslogLines(text) {
  const servers = [];
  const lines = String(text || '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const [name, address, serverName] = line.split(',').map((x) => x.trim());
    if (!name || !address || !/^.+:\d+$/.test(address)) {
      return { servers: [], error: `Line ${i + 1} is not “name, host:port”.` };
    }
    servers.push(serverName ? { name, address, serverName } : { name, address });
  }
  return { servers, error: '' };
}

/**
 * A node's health as the Nodes page shows it (docs/cluster.md).
 * @param {{removedAt?: string, status?: {up: boolean, draining: boolean, spooled: number}}} n
 * @returns {{ok: boolean, text: string}}
 */
export function nodeHealth(n) {
  if (n.removedAt) return { ok: true, text: 'removed' };
  const st = n.status;
  if (!st) return { ok: false, text: 'never heard from' };
  if (!st.up) return { ok: false, text: 'down' };
  const parts = [st.draining ? 'draining' : 'up'];
  if (st.spooled > 0) parts.push(`${st.spooled} audit entries waiting`);
  return { ok: true, text: parts.join(', ') };
}

/**
 * Whole days until a certificate expires (negative once expired).
 * @param {string} expiry RFC 3339
 * @param {number} now milliseconds
 * @returns {number}
 */
export function certDays(expiry, now) {
  return Math.floor((Date.parse(expiry) - now) / 86400000);
}
