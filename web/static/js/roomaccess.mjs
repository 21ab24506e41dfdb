// A room's access settings as the admin page edits them (docs/api.md,
// rooms): the summary shown in the rooms table, checks of what was typed,
// and the PATCH body that changes only what changed. Pure data, no DOM.

/** Access modes of a room, in the order they are offered. */
export const ACCESS_MODES = Object.freeze(['open', 'pin', 'accounts']);

/** Shortest room PIN the server accepts, in digits. */
export const MIN_ROOM_PIN = 6;

/** Longest PIN, in digits (the signaling protocol's limit). */
export const MAX_ROOM_PIN = 32;

/** The boolean settings of a room, as the API names them. */
export const ROOM_FLAGS = Object.freeze(['allowGuests', 'guestsMayUnmute', 'guestsMayPresent', 'membersOnly']);

const MODE_LABEL = { open: 'Open', pin: 'PIN', accounts: 'Accounts' };

/**
 * Why a PIN typed for a room cannot be saved, or '' when it can ('' means
 * no PIN typed).
 * @param {string} pin
 * @returns {string}
 */
export function roomPinProblem(pin) {
  const p = String(pin ?? '');
  if (!p) return '';
  if (!/^[0-9]+$/.test(p)) return 'A PIN is made of digits only.';
  if (p.length < MIN_ROOM_PIN) return `A PIN has at least ${MIN_ROOM_PIN} digits.`;
  if (p.length > MAX_ROOM_PIN) return `A PIN has at most ${MAX_ROOM_PIN} digits.`;
  return '';
}

/**
 * The access column of the rooms table: the mode and what qualifies it.
 * @param {object} r a room from GET /api/rooms
 * @returns {{mode: string, label: string, details: string[]}}
 */
export function accessSummary(r) {
  const mode = ACCESS_MODES.includes(r?.access) ? r.access : 'open';
  const details = [];
  if (mode === 'pin') {
    details.push(r.hasHostPin ? 'host PIN' : 'no host PIN');
    if (r.hasGuestPin) details.push('guest PIN');
    details.push(r.allowGuests ? 'guests allowed' : 'no guests');
  }
  if (mode === 'accounts') details.push(r.membersOnly ? 'members only' : 'any account');
  if (mode === 'pin' && r.allowGuests) {
    if (r.guestsMayUnmute) details.push('guests may unmute');
    if (r.guestsMayPresent) details.push('guests may present');
  }
  if (r?.locked) details.push('locked');
  return { mode, label: MODE_LABEL[mode], details };
}

/**
 * @typedef {object} RoomForm what the edit form holds
 * @property {string} name
 * @property {string} access open, pin or accounts
 * @property {string} hostPin '' keeps the current one
 * @property {string} guestPin '' keeps the current one
 * @property {boolean} clearGuestPin remove the guest PIN
 * @property {boolean} allowGuests
 * @property {boolean} guestsMayUnmute
 * @property {boolean} guestsMayPresent
 * @property {boolean} membersOnly
 */

/**
 * The first problem of the edit form, or null.
 * @param {RoomForm} f
 * @returns {{field: 'name'|'hostPin'|'guestPin', text: string}|null}
 */
export function roomFormProblem(f) {
  if (!String(f.name ?? '').trim()) return { field: 'name', text: 'Enter the name people see for this room.' };
  const host = roomPinProblem(f.hostPin);
  if (host) return { field: 'hostPin', text: `Host PIN: ${host}` };
  const guest = f.clearGuestPin ? '' : roomPinProblem(f.guestPin);
  if (guest) return { field: 'guestPin', text: `Guest PIN: ${guest}` };
  if (f.hostPin && !f.clearGuestPin && f.guestPin && f.hostPin === f.guestPin) {
    return { field: 'guestPin', text: 'The guest PIN must differ from the host PIN: the PIN tells hosts from guests.' };
  }
  return null;
}

/**
 * The body of PATCH /api/rooms/<alias>: only the fields that change (an
 * absent field is left unchanged by the server). PINs are sent only when
 * typed; `guestPin: ""` removes the guest PIN.
 * @param {object} room the room as GET /api/rooms gave it
 * @param {RoomForm} f
 * @returns {object}
 */
export function roomPatch(room, f) {
  const body = {};
  const name = String(f.name ?? '').trim();
  if (name !== (room.name ?? '')) body.name = name;
  const access = ACCESS_MODES.includes(room.access) ? room.access : 'open';
  if (f.access !== access) body.access = f.access;
  if (f.hostPin) body.hostPin = f.hostPin;
  if (f.clearGuestPin) {
    if (room.hasGuestPin) body.guestPin = '';
  } else if (f.guestPin) {
    body.guestPin = f.guestPin;
  }
  for (const k of ROOM_FLAGS) if (!!f[k] !== !!room[k]) body[k] = !!f[k];
  return body;
}

/**
 * The body of POST /api/rooms. Access fields are sent only when they differ
 * from an open room's, so that a plain room is created as before.
 * @param {{alias: string, name: string, access?: string, hostPin?: string, guestPin?: string}} f
 * @returns {object}
 */
export function roomCreateBody(f) {
  const body = { alias: f.alias, name: f.name };
  if (f.access && f.access !== 'open') body.access = f.access;
  if (f.hostPin) body.hostPin = f.hostPin;
  if (f.guestPin) body.guestPin = f.guestPin;
  return body;
}
