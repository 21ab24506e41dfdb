// Messages of the Conclave signaling protocol (docs/protocol.md): builders
// for client messages, a validator that answers as the server would
// (internal/signal), and a parser for server messages. No DOM, no network.
// The limits, the client types and their fields, and the server's answer
// to valid and invalid messages are the contract both implementations
// test against: internal/signal/testdata/messages.json.

/** Protocol version carried by every message. */
export const VERSION = 1;

/** Media sources a participant can publish. */
export const SOURCES = Object.freeze(['microphone', 'camera', 'screen', 'screen-audio']);

/** Limits shared with the server (internal/signal, messages.json). */
export const LIMITS = Object.freeze({
  name: 64, // characters
  room: 64, // characters
  id: 64, // bytes
  sdp: 200 << 10, // bytes
  tracks: 64, // entries
  trackSize: 16384, // device pixels, each dimension of a layout entry
  candidate: 1024, // bytes
  payload: 64 << 10, // bytes
  message: 256 << 10, // bytes
  usernameFragment: 256, // bytes
  pin: 32, // digits
  ticket: 2048, // bytes, an admission ticket (docs/protocol.md, "Nodes")
});

/** Fields each client message type may carry, besides v, type and id. */
export const FIELDS = Object.freeze({
  join: ['room', 'name', 'resume', 'pin', 'redirected', 'ticket'],
  publish: ['sdp', 'tracks'],
  'subscribe-answer': ['sdp'],
  candidate: ['pc', 'candidate'],
  state: ['state'],
  layout: ['layout'],
  'restart-ice': ['pc'],
  announce: ['payload'],
  key: ['to', 'payload'],
  chat: ['payload'],
  verify: ['payload'],
  leave: [],
  ping: [],
  // Host commands (docs/protocol.md, "Host controls").
  mute: ['target'],
  'mute-guests': [],
  remove: ['target'],
  'set-role': ['target', 'role'],
  lock: ['locked'],
  admit: ['target'],
  deny: ['target'],
  'room-settings': ['settings'],
  end: [],
});

/** The server's error codes for a client message (docs/protocol.md). */
export const CODES = Object.freeze({
  badMessage: 'bad-message',
  tooLarge: 'too-large',
  unsupportedVersion: 'unsupported-version',
  unknownType: 'unknown-type',
  invalidField: 'invalid-field',
});

// The JSON shape of a message as the server decodes it (internal/signal's
// Message): a field it does not know, or of another JSON type, makes the
// whole message a bad one. null is an absent field. 'any' is a field only
// the server sends, refused later whatever its shape.
const ROOM_STATE_SHAPE = { obj: { locked: 'bool', guestsMayUnmute: 'bool', guestsMayPresent: 'bool', hostPresent: 'bool' } };
const SHAPE = {
  v: 'int', type: 'string', id: 'string',
  room: 'string', name: 'string', resume: 'string', pin: 'string', redirected: 'bool', ticket: 'string',
  target: 'string', locked: 'bool', role: 'string', settings: ROOM_STATE_SHAPE,
  sdp: 'string', tracks: { map: { obj: { participant: 'string', source: 'string', kind: 'string', stream: 'string' } } },
  pc: 'string', candidate: { obj: { candidate: 'string', sdpMid: 'string', sdpMLineIndex: 'uint16', usernameFragment: 'string' } },
  state: { obj: { audio: 'bool', video: 'bool', screen: 'bool' } },
  layout: { map: { obj: { width: 'int', height: 'int' } } },
  payload: 'string', to: 'string',
  // Sent by the server only.
  mid: 'any', active: 'any', from: 'any', meeting: 'any', uploadToken: 'any', self: 'any', participants: 'any',
  iceServers: 'any', roomInfo: 'any', resumed: 'any', participant: 'any', by: 'any', roomState: 'any', wait: 'any',
  code: 'any', message: 'any', fatal: 'any', reason: 'any', ref: 'any', nodes: 'any', url: 'any',
};
const SERVER_FIELDS = Object.keys(SHAPE).filter((k) => SHAPE[k] === 'any');

/** Roles of participants. */
export const ROLES = Object.freeze(['host', 'participant', 'guest']);

/** The fields of a room's access state (room-state, room-settings). */
export const ROOM_STATE_FIELDS = Object.freeze(['locked', 'guestsMayUnmute', 'guestsMayPresent', 'hostPresent']);

/** Longest PIN the server reads, in digits. */
export const MAX_PIN = 32;

const ID_RE = /^[A-Za-z0-9._-]*$/;
const BASE64_RE = /^[A-Za-z0-9+/=_-]*$/;
const encoder = new TextEncoder();

/**
 * Length of a string in UTF-8 bytes.
 * @param {string} s
 * @returns {number}
 */
export function byteLength(s) {
  return encoder.encode(s).length;
}

/**
 * Why a display name cannot be used, or '' when it can. The name is checked
 * as the server checks it: trimmed, 1 to 64 characters, no control characters.
 * @param {string} name
 * @returns {string}
 */
export function nameProblem(name) {
  const n = String(name ?? '').trim();
  const chars = Array.from(n);
  if (chars.length === 0) return 'Enter the name others will see.';
  if (chars.length > LIMITS.name) return `The name is too long: at most ${LIMITS.name} characters.`;
  if (hasControl(n)) return 'The name contains invisible control characters.';
  return '';
}

function hasControl(s) {
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Why a PIN typed by a person cannot be sent, or '' when it can (an empty
 * PIN is fine: it means none).
 * @param {string} pin
 * @returns {string}
 */
export function pinProblem(pin) {
  const p = String(pin ?? '');
  if (!/^[0-9]*$/.test(p)) return 'A PIN is made of digits only.';
  if (p.length > MAX_PIN) return `A PIN has at most ${MAX_PIN} digits.`;
  return '';
}

/**
 * Builds a `join` message.
 * @param {string} room room alias
 * @param {string} name display name (trimmed here)
 * @param {string} [resume] resume token from an earlier welcome
 * @param {string} [pin] the host or guest PIN, digits
 * @param {boolean} [redirected] the join follows a node's redirect
 * @param {string} [ticket] the admission ticket the redirect carried (a signed-in account)
 * @returns {object}
 */
export function joinMessage(room, name, resume, pin, redirected, ticket) {
  const m = { v: VERSION, type: 'join', room, name: String(name).trim() };
  if (resume) m.resume = resume;
  if (pin) m.pin = String(pin);
  if (redirected) m.redirected = true;
  if (ticket) m.ticket = String(ticket);
  return m;
}

/**
 * Builds a `publish` message.
 * @param {string} sdp the offer
 * @param {Object<string, {source: string}>} tracks mid -> source
 * @param {string} [id] request id, echoed in an error answering it
 * @returns {object}
 */
export function publishMessage(sdp, tracks, id) {
  const m = { v: VERSION, type: 'publish', sdp, tracks };
  if (id) m.id = id;
  return m;
}

/**
 * Builds a `subscribe-answer` message.
 * @param {string} sdp the answer
 * @returns {object}
 */
export function subscribeAnswerMessage(sdp) {
  return { v: VERSION, type: 'subscribe-answer', sdp };
}

/**
 * Builds a `candidate` message from an RTCIceCandidate (or its init
 * dictionary); null means end of candidates. Only the fields the server
 * accepts are copied.
 * @param {'pub'|'sub'} pc
 * @param {RTCIceCandidateInit|null} c
 * @returns {object}
 */
export function candidateMessage(pc, c) {
  const candidate = { candidate: c?.candidate ?? '' };
  if (c?.sdpMid != null) candidate.sdpMid = c.sdpMid;
  if (c?.sdpMLineIndex != null) candidate.sdpMLineIndex = c.sdpMLineIndex;
  if (c?.usernameFragment != null) candidate.usernameFragment = c.usernameFragment;
  return { v: VERSION, type: 'candidate', pc, candidate };
}

/**
 * Builds a `state` message.
 * @param {{audio: boolean, video: boolean, screen: boolean}} s
 * @returns {object}
 */
export function stateMessage(s) {
  return { v: VERSION, type: 'state', state: { audio: !!s.audio, video: !!s.video, screen: !!s.screen } };
}

/**
 * Builds a `layout` message: the size, in device pixels, at which each
 * received video track renders (0x0: hidden).
 * @param {Object<string, {width: number, height: number}>} layout sub mid -> size
 * @returns {object}
 */
export function layoutMessage(layout) {
  const out = {};
  for (const [mid, s] of Object.entries(layout)) out[mid] = { width: s.width, height: s.height };
  return { v: VERSION, type: 'layout', layout: out };
}

/** @returns {object} a `restart-ice` message for the subscribe connection. */
export function restartIceMessage() {
  return { v: VERSION, type: 'restart-ice', pc: 'sub' };
}

/** @returns {object} a `leave` message. */
export function leaveMessage() {
  return { v: VERSION, type: 'leave' };
}

/** @returns {object} a `ping` message. */
export function pingMessage() {
  return { v: VERSION, type: 'ping' };
}

/**
 * Builds a `mute` message (host command).
 * @param {string} target participant id
 * @returns {object}
 */
export function muteMessage(target) {
  return { v: VERSION, type: 'mute', target };
}

/** @returns {object} a `mute-guests` message (host command). */
export function muteGuestsMessage() {
  return { v: VERSION, type: 'mute-guests' };
}

/**
 * Builds a `remove` message (host command).
 * @param {string} target participant id
 * @returns {object}
 */
export function removeMessage(target) {
  return { v: VERSION, type: 'remove', target };
}

/**
 * Builds a `set-role` message (host command).
 * @param {string} target participant id
 * @param {'host'|'participant'|'guest'} role
 * @returns {object}
 */
export function setRoleMessage(target, role) {
  return { v: VERSION, type: 'set-role', target, role };
}

/**
 * Builds a `lock` message (host command).
 * @param {boolean} locked
 * @returns {object}
 */
export function lockMessage(locked) {
  return { v: VERSION, type: 'lock', locked: !!locked };
}

/**
 * Builds an `admit` message: lets a knocking newcomer in (host command).
 * @param {string} target participant id of the knock
 * @returns {object}
 */
export function admitMessage(target) {
  return { v: VERSION, type: 'admit', target };
}

/**
 * Builds a `deny` message: turns a knocking newcomer away (host command).
 * @param {string} target participant id of the knock
 * @returns {object}
 */
export function denyMessage(target) {
  return { v: VERSION, type: 'deny', target };
}

/**
 * Builds a `room-settings` message (host command). Every field of the room
 * state is sent; the server only uses guestsMayUnmute and guestsMayPresent.
 * @param {{locked?: boolean, guestsMayUnmute?: boolean, guestsMayPresent?: boolean, hostPresent?: boolean}} s
 * @returns {object}
 */
export function roomSettingsMessage(s) {
  const settings = {};
  for (const k of ROOM_STATE_FIELDS) settings[k] = !!s?.[k];
  return { v: VERSION, type: 'room-settings', settings };
}

/**
 * An end-to-end encryption message: `announce {payload}`, `key {to,
 * payload}`, `chat {payload}` or `verify {payload}` (a commit or reveal of
 * the meeting code's round); payloads are base64 (docs/e2ee.md).
 * @param {'announce'|'key'|'chat'|'verify'} type
 * @param {{payload: string, to?: string}} fields
 * @returns {object}
 */
export function e2eeMessage(type, fields) {
  const m = { v: VERSION, type, payload: fields.payload };
  if (type === 'key') m.to = fields.to;
  return m;
}

/** @returns {object} an `end` message: ends the meeting for everyone (host command). */
export function endMessage() {
  return { v: VERSION, type: 'end' };
}

/**
 * Checks a client message as the server would, so that a mistake shows up
 * in the client's console instead of as an error from the server.
 * @param {object} m
 * @returns {string} what is wrong, or '' when the message is valid
 */
export function clientMessageProblem(m) {
  return checkClientMessage(m).problem;
}

/**
 * Checks a client message as the server would, in the server's order:
 * size, JSON shape, version, then the fields of its type.
 * @param {any} m
 * @returns {{code: string, problem: string}} the error code the server
 *   would answer (CODES) and what is wrong; both '' when the message is valid
 */
export function checkClientMessage(m) {
  const fail = (code, problem) => ({ code, problem });
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return fail(CODES.badMessage, 'message is not an object');
  let text;
  try {
    text = JSON.stringify(m);
  } catch {
    return fail(CODES.badMessage, 'message is not JSON');
  }
  if (byteLength(text) > LIMITS.message) return fail(CODES.tooLarge, `message is larger than ${LIMITS.message} bytes`);
  const shape = shapeProblem(m, { obj: SHAPE }, 'message');
  if (shape) return fail(CODES.badMessage, shape);
  if (m.v !== VERSION) return fail(CODES.unsupportedVersion, `v must be ${VERSION}`);
  if (set(m.id) && !isID(m.id, false)) return fail(CODES.invalidField, 'id is malformed');
  if (SERVER_FIELDS.some((k) => set(m[k]))) return fail(CODES.invalidField, 'message carries fields only the server may send');
  if (!set(m.type)) return fail(CODES.invalidField, 'type is required');
  const allowed = FIELDS[m.type];
  if (!allowed) return fail(CODES.unknownType, `unknown type ${JSON.stringify(m.type)}`);
  const p = typeProblem(m);
  if (p) return fail(CODES.invalidField, p);
  for (const k of Object.keys(m)) {
    if (k !== 'v' && k !== 'type' && k !== 'id' && set(m[k]) && !allowed.includes(k)) return fail(CODES.invalidField, `field ${k} is not allowed in ${m.type}`);
  }
  return { code: '', problem: '' };
}

/** Whether a field counts as present: the server reads an empty string, false or null as absent. */
function set(v) {
  return v !== undefined && v !== null && v !== '' && v !== false && v !== 0;
}

/**
 * Why a value does not have the shape the server decodes, or ''.
 * @param {any} v
 * @param {any} shape a type name, {obj: {field: shape}} or {map: shape}
 * @param {string} path
 * @returns {string}
 */
function shapeProblem(v, shape, path) {
  if (v === null || v === undefined || shape === 'any') return '';
  switch (shape) {
    case 'string': return typeof v === 'string' ? '' : `${path} must be a string`;
    case 'bool': return typeof v === 'boolean' ? '' : `${path} must be a boolean`;
    case 'int': return Number.isInteger(v) ? '' : `${path} must be an integer`;
    case 'uint16': return Number.isInteger(v) && v >= 0 && v < 65536 ? '' : `${path} must be an integer from 0 to 65535`;
  }
  if (typeof v !== 'object' || Array.isArray(v)) return `${path} must be an object`;
  if (shape.map) {
    for (const [k, x] of Object.entries(v)) {
      const p = shapeProblem(x, shape.map, `${path}.${k}`);
      if (p) return p;
    }
    return '';
  }
  for (const [k, x] of Object.entries(v)) {
    if (!(k in shape.obj)) return `${path} has an unknown field ${k}`;
    const p = shapeProblem(x, shape.obj[k], `${path}.${k}`);
    if (p) return p;
  }
  return '';
}

/** What is wrong with the fields of a message of a known type, or ''. */
function typeProblem(m) {
  switch (m.type) {
    case 'join': {
      const roomLen = typeof m.room === 'string' ? Array.from(m.room).length : 0;
      if (roomLen < 1 || roomLen > LIMITS.room || hasControl(m.room)) return 'room is malformed';
      if (typeof m.name !== 'string' || nameProblem(m.name)) return 'name is malformed';
      if (set(m.resume) && !isID(m.resume, false)) return 'resume is malformed';
      if (set(m.pin)) {
        if (m.pin.length > MAX_PIN) return `pin is longer than ${MAX_PIN} characters`;
        if (!/^[0-9]*$/.test(m.pin)) return 'pin is made of digits only';
      }
      if (set(m.ticket) && byteLength(m.ticket) > LIMITS.ticket) return `ticket is longer than ${LIMITS.ticket} bytes`;
      return '';
    }
    case 'publish': {
      const p = sdpProblem(m.sdp);
      if (p) return p;
      if (!set(m.tracks)) return '';
      const mids = Object.keys(m.tracks);
      if (mids.length > LIMITS.tracks) return `tracks has more than ${LIMITS.tracks} entries`;
      for (const mid of mids) {
        if (!isID(mid, true)) return `track mid ${JSON.stringify(mid)} is malformed`;
        const t = m.tracks[mid] ?? {};
        if (!SOURCES.includes(t.source)) return `track ${mid} has an unknown source`;
        if (set(t.participant) || set(t.kind) || set(t.stream)) return `track ${mid} may only carry a source`;
      }
      return '';
    }
    case 'subscribe-answer':
      return sdpProblem(m.sdp);
    case 'candidate': {
      if (m.pc !== 'pub' && m.pc !== 'sub') return 'pc must be "pub" or "sub"';
      const c = m.candidate;
      if (!set(c)) return 'candidate is required';
      if (byteLength(c.candidate ?? '') > LIMITS.candidate) return 'candidate is too long';
      if (typeof c.sdpMid === 'string' && byteLength(c.sdpMid) > LIMITS.id) return 'sdpMid is malformed';
      if (typeof c.usernameFragment === 'string' && byteLength(c.usernameFragment) > LIMITS.usernameFragment) return 'usernameFragment is malformed';
      return '';
    }
    case 'state':
      return set(m.state) ? '' : 'state is required';
    case 'layout': {
      if (!set(m.layout)) return 'layout is required';
      const mids = Object.keys(m.layout);
      if (mids.length > LIMITS.tracks) return `layout has more than ${LIMITS.tracks} entries`;
      for (const mid of mids) {
        if (!isID(mid, true)) return `layout key ${JSON.stringify(mid)} is malformed`;
        const sz = m.layout[mid] ?? {};
        for (const d of [sz.width ?? 0, sz.height ?? 0]) {
          if (d < 0 || d > LIMITS.trackSize) return `layout ${mid} has a size outside 0..${LIMITS.trackSize}`;
        }
      }
      return '';
    }
    case 'restart-ice':
      return m.pc === 'sub' ? '' : 'pc must be "sub"';
    case 'announce':
    case 'chat':
    case 'verify':
      return payloadProblem(m.payload);
    case 'key':
      if (!isID(m.to, true)) return 'to is malformed';
      return payloadProblem(m.payload);
    case 'mute':
    case 'remove':
    case 'admit':
    case 'deny':
      return isID(m.target, true) ? '' : 'target is malformed';
    case 'set-role':
      if (!isID(m.target, true)) return 'target is malformed';
      return ROLES.includes(m.role) ? '' : 'role must be "host", "participant" or "guest"';
    case 'lock':
      return typeof m.locked === 'boolean' ? '' : 'locked is required (a boolean)';
    case 'room-settings':
      return m.settings !== undefined && m.settings !== null ? '' : 'settings is required';
    default:
      return '';
  }
}

function isID(s, required) {
  if (s === undefined || s === null || s === '') return !required;
  if (typeof s !== 'string') return false;
  return s.length <= LIMITS.id && ID_RE.test(s);
}

function sdpProblem(sdp) {
  if (typeof sdp !== 'string' || sdp === '') return 'sdp is required';
  if (byteLength(sdp) > LIMITS.sdp) return 'sdp is too long';
  if (!sdp.startsWith('v=0')) return 'sdp is not a session description';
  return '';
}

function payloadProblem(p) {
  if (typeof p !== 'string' || p === '') return 'payload is required';
  if (byteLength(p) > LIMITS.payload) return 'payload is too long';
  if (!BASE64_RE.test(p)) return 'payload must be base64 text';
  return '';
}

/**
 * Parses one server message. Throws an Error when the text is not a JSON
 * object of this protocol version with a string type.
 * @param {string} text
 * @returns {object}
 */
export function parseServerMessage(text) {
  const m = JSON.parse(text);
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new Error('server message is not a JSON object');
  if (m.v !== VERSION) throw new Error(`server speaks protocol version ${m.v}, this client speaks ${VERSION}`);
  if (typeof m.type !== 'string' || m.type === '') throw new Error('server message has no type');
  return m;
}
