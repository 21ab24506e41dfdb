// The management REST API: JSON in and out, errors as
// {"error": {"code", "message"}}, CSRF token on state-changing requests.

/**
 * @typedef {object} ApiResult
 * @property {boolean} ok true for a 2xx status
 * @property {number} status HTTP status, 0 when the server was not reached
 * @property {any} data the decoded JSON body (null when there is none)
 * @property {{code: string, message: string}|null} error the API error, for non-2xx answers
 * @property {boolean} network true when the request did not reach the server
 */

/** Marks a request the page made by itself (docs/api.md, Sessions). */
export const BACKGROUND_HEADER = 'X-Conclave-Background';

/**
 * Sends one API request. Never throws: network failures and API errors are
 * described in the result.
 * @param {string} method
 * @param {string} path
 * @param {{body?: any, csrf?: string, background?: boolean}} [opts] background:
 *   a request the page makes by itself (a periodic refresh), which must not
 *   count as the user's activity for the session's idle timeout
 * @returns {Promise<ApiResult>}
 */
export async function api(method, path, { body, csrf, background = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (csrf) headers['X-CSRF-Token'] = csrf;
  if (background) headers[BACKGROUND_HEADER] = '1';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    return { ok: false, status: 0, data: null, error: { code: 'network', message: 'Cannot reach the Conclave server.' }, network: true };
  }
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) return { ok: true, status: res.status, data, error: null, network: false };
  return { ok: false, status: res.status, data, error: apiError(res.status, data), network: false };
}

/**
 * The error of a failed API answer, with a generic sentence when the body
 * does not carry one.
 * @param {number} status
 * @param {any} body
 * @returns {{code: string, message: string}}
 */
export function apiError(status, body) {
  const e = body?.error;
  if (e && typeof e.code === 'string') return { code: e.code, message: typeof e.message === 'string' && e.message ? e.message : `The server refused the request (${e.code}).` };
  if (status === 401) return { code: 'unauthenticated', message: 'Please sign in.' };
  if (status === 403) return { code: 'forbidden', message: 'You are not allowed to do this.' };
  return { code: 'http-' + status, message: `The server failed to answer (HTTP ${status}).` };
}

/**
 * GET a JSON resource.
 * @param {string} path
 * @returns {Promise<ApiResult>}
 */
export function getJSON(path) {
  return api('GET', path);
}
