// The E2EE state of one meeting for one participant (docs/e2ee.md,
// sections 6 to 10, the [wiring] notes): its ephemeral ECDH key and sender
// key, its signed announcement, the verified announcements of the others
// (the only source of the participant list it encrypts to), the pairwise
// channels and key messages, the meeting code, and the encrypted chat.
// No DOM, no WebSocket, no WebRTC: messages go out through `send`, keys to
// the media worker through `frames`, and the page listens to events.
//
// The meeting code is the verification round's (docs/e2ee.md, section 14):
// each change of the verified set starts an epoch; once the set has been
// quiet a moment (ROUND_QUIET_MS, at most ROUND_MAX_WAIT_MS), a round with
// a fresh nonce, a signed commit and, once every member committed to the
// same view and log checkpoint, a reveal; `verify` messages carry both.
// Until the round completes the code is '' ("verifying"). Credentials count only once the
// transparency log holds them (identity.log, a LogMonitor), revoked devices
// leave the view, and names are shown as the credential gives them, with
// look-alikes flagged (section 15).
//
// Events (CustomEvent, detail = this.snapshot() unless said otherwise):
//   state         the E2EE status changed (snapshot.state)
//   participants  a participant's verification changed
//   code          the meeting code changed
//   warnings      the warnings changed
//   chat          {from, name, self, ok, kind, text?, file?, timestampMs, error?}
//
// Key request (an addition to docs/e2ee.md, see KEY_REQUEST): a `key`
// message whose payload is the 5 bytes "CKRQ" || 0x01 asks its recipient to
// send its current sender key again over the pairwise channel. A client
// sends it when a participant's frames keep arriving under a key it lacks
// (a key message lost while reconnecting, for instance). It carries no
// secret and is not authenticated: the answer goes only to a verified
// participant, over the channel of its verified announcement, and is rate
// limited.

import { concat, equal, fromBase64, toBase64, utf8 } from './bytes.mjs';
import { signAnnouncement, verifyAnnouncement } from './announce.mjs';
import { RoundState, isCommit, isReveal, RevealMismatchError } from './round.mjs';
import { SplitViewError, NEW_DEVICE_AGE_MS } from './log.mjs';
import { claimsAccount, cleanName, looksLike, skeleton } from './names.mjs';
import { ExpiredError, SignatureError, parseCredential } from './identity.mjs';
import { Channel, generateEphemeral } from './pairwise.mjs';
import { Receiver, Sender } from './media.mjs';
import { UnknownKeyError } from './keys.mjs';
import { CHAT_FILE, CHAT_TEXT } from './chat.mjs';

/** Debounce of leaves before the sender key is rotated. */
export const LEAVE_DEBOUNCE_MS = 100;
/** Delay between sending a rotated key and encrypting with it. */
export const SWITCH_DELAY_MS = 50;
/** How long a participant the server lists may go without a verified announcement before it counts as "not end-to-end". */
export const ANNOUNCE_GRACE_MS = 10000;
/** Minimum interval between two key requests to, or answers for, one participant. */
export const KEY_REQUEST_INTERVAL_MS = 2000;
/** How long a chat message waits for the key it was sealed under. */
export const CHAT_WAIT_MS = 10000;
/** How long a member may commit to another list of participants before a warning says so. */
export const VIEW_GRACE_MS = 5000;
/** Verify messages kept per participant until its announcement is verified. */
const MAX_VERIFY_QUEUE = 8;
/** Payload of a key request (before base64). */
export const KEY_REQUEST = concat(utf8('CKRQ'), Uint8Array.of(1));

/**
 * What the page says while a gateway is in the meeting.
 * @param {{name: string, gateway: string}} p
 * @returns {string}
 */
export function gatewayWarning(p) {
  const what = p.gateway === 'sip' ? 'a telephone connected through the server' : `a ${p.gateway} gateway`;
  return `${p.name} is ${what}: the server hears everything said in this meeting while it is present.`;
}

/** The warning shown when the organisation's key no longer matches the pinned one. */
export const ORG_CHANGED_WARNING = "The organisation's encryption key changed — verification may be compromised";

/**
 * @typedef {object} Identity
 * @property {{privateKey: CryptoKey, publicKeyRaw: Uint8Array}} device the long-term device key
 * @property {Uint8Array|null} credential the device's credential (null for guests)
 * @property {{orgId: string, name: string, key: CryptoKey|null, changed: boolean}} org pinned organisation
 * @property {import('./log.mjs').LogMonitor|null} [log] the transparency log monitor; without it nobody is certified
 * @property {string[]} [alarms] pinned keys the server withheld or replaced (device.mjs), shown as warnings
 */

/**
 * @typedef {object} ParticipantView
 * @property {string} id participant id
 * @property {string} name the name to show: the credential's display name when certified, else the free text (cleaned)
 * @property {string} freeName the free-text name (the server's, else the announcement's), cleaned
 * @property {boolean} nameDiffers certified, and the free-text name looks different from the credential's
 * @property {string} account the credential's account when certified (or revoked), else ''
 * @property {boolean} revoked the log revoked this device
 * @property {boolean} pending a credential the log does not (yet) hold: not certified
 * @property {boolean} newDevice certified less than 24 hours ago for the first time
 * @property {string} lookalike the name of another participant this one's name looks like, '' if none
 * @property {boolean} self
 * @property {string} fingerprint of the device key, '' when unverified
 * @property {boolean} certified
 * @property {string} orgName who certified it, '' when not certified
 * @property {string} userId the certified user id, '' for guests
 * @property {'verified'|'connecting'|'unverified'|'gateway'} e2ee
 * @property {boolean} listed the server lists it (false: only its announcement says it is here)
 * @property {string} gateway the server marks it as a gateway that breaks end-to-end encryption ('sip'), '' otherwise
 */

/** One participant's end-to-end encryption state in a meeting. */
export class MeetingCrypto extends EventTarget {
  /**
   * @param {object} opts
   * @param {Identity|Promise<Identity>} opts.identity
   * @param {(type: string, fields: object) => boolean} opts.send sends a signaling message (announce, key, chat)
   * @param {object} [opts.frames] the media worker: setSendKey, setReceiver, addKey, removeParticipant, reset
   * @param {object} [opts.env] now, setTimeout, clearTimeout (tests)
   * @param {number} [opts.retentionMs] how long superseded keys stay usable for chat
   */
  constructor({ identity, send, frames = null, env = {}, retentionMs, codeDigits }) {
    super();
    this.identityReady = Promise.resolve(identity);
    this.send = send;
    this.frames = frames;
    this.env = {
      now: () => Date.now(),
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (t) => globalThis.clearTimeout(t),
      ...env,
    };
    this.retentionMs = retentionMs;
    this.codeDigits = codeDigits;
    this.rounds = null;
    this.verifyQueue = new Map(); // from -> payloads that came before the announcement
    /** @type {Map<string, object>} participants whose device the log revoked, by id: their last view */
    this.revoked = new Map();
    this.departed = new Map(); // id -> peer, to report a revocation that comes after the leave
    this.ownTrust = { logged: false, revoked: false, firstCertifiedMs: 0 };
    this.logListeners = null;
    this.tail = Promise.resolve();
    this.generation = 0; // bumps on every start, so stale tasks stop
    this.identity = null;
    this.meetingId = '';
    this.selfId = '';
    this.name = '';
    this.own = null; // our verified-form announcement {participantId, body, ...}
    this.ownPayload = '';
    this.sender = null;
    this.ecdh = null;
    /** @type {Map<string, object>} verified peers by participant id */
    this.peers = new Map();
    /** @type {Map<string, {id: string, name: string, since: number}>} the server's list (others only) */
    this.listed = new Map();
    /** ids present when we were welcomed: not newcomers */
    this.before = new Set();
    /** @type {Map<string, {participant: string, text: string}>} */
    this.warnings = new Map();
    this.pendingKeys = new Map(); // from -> payloads that came before the announcement
    this.pendingChat = new Map(); // from -> [{payload, at}] waiting for a key
    this.timers = { leave: null, switch: null, grace: null, round: null, view: new Map() };
    this.leavers = false; // someone holding our key left since the last rotation
    this.code = '';
    this.codeOf = []; // the announcements this.code was computed from
    this.last = { state: '', participants: '', code: '', warnings: '' };
    this.started = false;
  }

  // ---- lifecycle ------------------------------------------------------------

  /**
   * Starts (or starts over) for a meeting after a fresh welcome: new
   * ephemeral key, new sender key, a signed announcement sent at once.
   * @param {object} w
   * @param {string} w.meetingId welcome.meeting
   * @param {string} w.selfId welcome.self.id
   * @param {string} w.name the display name
   * @param {{id: string, name?: string}[]} [w.participants] welcome.participants
   * @returns {Promise<void>}
   */
  start({ meetingId, selfId, name, participants = [] }) {
    const gen = ++this.generation;
    this.#clearTimers();
    this.started = true;
    this.meetingId = meetingId;
    this.selfId = selfId;
    this.name = name;
    this.peers = new Map();
    this.own = null;
    this.ownPayload = '';
    this.sender = null;
    this.code = '';
    this.codeOf = [];
    this.pendingKeys = new Map();
    this.pendingChat = new Map();
    this.verifyQueue = new Map();
    this.revoked = new Map();
    this.departed = new Map();
    this.rounds = null;
    this.leavers = false;
    for (const [k, w] of this.warnings) if (w.participant) this.warnings.delete(k);
    this.before = new Set(participants.map((p) => p.id));
    this.listed = new Map();
    this.#list(participants);
    this.frames?.reset();
    return this.#queue(gen, async () => {
      const id = await this.identityReady;
      this.identity = id;
      this.#listenLog(id.log ?? null);
      if (id.org.changed) this.warnings.set('org', { participant: '', text: ORG_CHANGED_WARNING });
      // A pinned org or log key the server withheld or replaced: the checks
      // of certification and of the log are off, which must show.
      (id.alarms ?? []).forEach((text, i) => this.warnings.set(`pin:${i}`, { participant: '', text }));
      if (id.log?.split()) this.#warn('split', '', splitWarning(id.log.split()));
      this.ecdh = await generateEphemeral();
      const index = 1 + Math.floor(Math.random() * 65535);
      this.sender = await Sender.create(index);
      this.frames?.setSendKey(this.sender.key);
      // A contradicted org pin: we cannot vouch for our own credential either.
      const credential = id.org.changed ? null : id.credential;
      const userId = credential ? parseCredential(credential).userId : '';
      const payload = await signAnnouncement(id.device.privateKey, {
        meetingId, participantId: selfId, userId, displayName: name,
        ecdhPublicKey: this.ecdh.publicKey, devicePublicKey: id.device.publicKeyRaw,
        credential, senderIndex: index, timestampMs: this.env.now(),
      });
      this.own = await verifyAnnouncement(payload, { meetingId, orgKey: id.org.key, nowSeconds: this.env.now() / 1000 });
      this.ownTrust = await this.#trustOf(this.own);
      this.rounds = new RoundState({ meetingId, selfId, device: id.device.privateKey, verifier: id.log?.verifier ?? null, digits: this.codeDigits, now: this.env.now });
      this.ownPayload = toBase64(payload);
      this.send('announce', { payload: this.ownPayload });
      await this.#changed();
    });
  }

  /** After a resumed welcome: the state stays; the announcement is sent again in case it was lost. */
  resumed() {
    const gen = this.generation;
    this.#queue(gen, async () => {
      if (this.ownPayload) this.send('announce', { payload: this.ownPayload });
      const own = this.rounds?.own();
      if (own?.commit) this.send('verify', { payload: toBase64(own.commit) });
      if (own?.reveal) this.send('verify', { payload: toBase64(own.reveal) });
    });
  }

  /** Stops: timers off, keys forgotten. */
  stop() {
    this.generation++;
    this.started = false;
    this.#clearTimers();
    this.peers = new Map();
    this.sender = null;
    this.rounds = null;
    this.#listenLog(null);
    this.frames?.reset();
  }

  // ---- inputs -----------------------------------------------------------------

  /**
   * Takes the server's participant list (the others). A participant that
   * disappears from it has left.
   * @param {{id: string, name?: string}[]} participants
   */
  setServerParticipants(participants) {
    if (!this.started) return;
    const now = new Set(participants.map((p) => p.id));
    for (const id of [...this.listed.keys()]) if (!now.has(id)) this.participantLeft(id);
    this.#list(participants);
    this.#queue(this.generation, async () => {
      for (const [id, peer] of this.peers) {
        if (peer.awaitingListing && this.listed.has(id)) {
          const { newcomer } = peer.awaitingListing;
          peer.awaitingListing = null;
          await this.#keyPeer(id, newcomer);
        }
      }
      return this.#changed();
    });
  }

  /**
   * A participant left (participant-left): forgets it, and rotates our
   * sender key after a debounce if it held it.
   * @param {string} id
   */
  participantLeft(id) {
    if (!this.started) return;
    this.listed.delete(id);
    const gen = this.generation;
    this.#queue(gen, async () => {
      const peer = this.peers.get(id);
      this.peers.delete(id);
      this.pendingKeys.delete(id);
      this.pendingChat.delete(id);
      this.verifyQueue.delete(id);
      if (peer) {
        if (this.departed.size >= 64) this.departed.clear();
        this.departed.set(id, peer);
      }
      for (const [k, w] of this.warnings) if (w.participant === id) this.warnings.delete(k);
      if (peer) {
        this.frames?.removeParticipant(id);
        if (peer.sentKey) this.#scheduleRotation();
      }
      await this.#changed();
    });
  }

  /**
   * Handles an E2EE signaling message from the server: announce, key or chat.
   * @param {{type: string, from: string, payload: string}} m
   */
  receive(m) {
    if (!this.started || typeof m?.from !== 'string' || typeof m.payload !== 'string') return;
    const gen = this.generation;
    if (m.type === 'announce') this.#queue(gen, () => this.#onAnnounce(m.from, m.payload));
    else if (m.type === 'key') this.#queue(gen, () => this.#onKey(m.from, m.payload));
    else if (m.type === 'chat') this.#queue(gen, () => this.#onChat(m.from, m.payload));
    else if (m.type === 'verify') this.#queue(gen, () => this.#onVerify(m.from, m.payload));
  }

  /**
   * Asks a verified participant for its current key again (its frames
   * arrive under a key we lack). Rate limited.
   * @param {string} id
   */
  requestKey(id) {
    const peer = this.peers.get(id);
    const now = this.env.now();
    if (!peer || now - peer.requested < KEY_REQUEST_INTERVAL_MS) return;
    peer.requested = now;
    this.send('key', { to: id, payload: toBase64(KEY_REQUEST) });
  }

  /**
   * Sends a text chat message to everyone (sealed under our sender key,
   * signed by the device key).
   * @param {string} text
   * @returns {Promise<void>}
   */
  sendText(text) {
    return this.#sendChat({ kind: CHAT_TEXT, text: String(text) });
  }

  /**
   * Sends a file message (the descriptor of an uploaded, encrypted file).
   * @param {{id: Uint8Array, name: string, size: number, mimeType: string, key: Uint8Array, sha256: Uint8Array}} file
   * @returns {Promise<void>}
   */
  sendFile(file) {
    return this.#sendChat({ kind: CHAT_FILE, file });
  }

  // ---- outputs ------------------------------------------------------------------

  /**
   * The E2EE status: 'warning' (a verification failed), 'not-e2ee' (someone
   * the server lists has no verified announcement, a gateway is present,
   * or media cannot be encrypted), 'connecting' (announcements or keys
   * still awaited), 'e2ee'.
   * @returns {{state: string, code: string, participants: ParticipantView[], warnings: string[], senderKeyGeneration: number, senderKeyStep: number}}
   */
  snapshot() {
    const participants = this.#views();
    let state = 'e2ee';
    if (!this.own) state = 'connecting';
    else if (participants.some((p) => p.e2ee === 'connecting')) state = 'connecting';
    if (participants.some((p) => p.e2ee === 'unverified')) state = 'not-e2ee';
    // A participant's new device, and a revoked device the meeting already
    // rotated away from, are notes to read, not failed checks.
    // A gateway in the meeting (docs/protocol.md, "Gateways"): the
    // server hears the meeting while it is present.
    const gateways = participants.filter((p) => p.gateway);
    if (gateways.length) state = 'not-e2ee';
    if ([...this.warnings.keys()].some((k) => !k.startsWith('newdevice:') && !k.startsWith('revoked:'))) state = 'warning';
    return {
      state,
      code: this.code,
      participants,
      gateways: gateways.map((p) => p.id),
      warnings: [...this.warnings.values()].map((w) => w.text).concat(gateways.map(gatewayWarning)),
      senderKeyGeneration: this.sender?.key.generation ?? 0,
      senderKeyStep: this.sender?.key.step ?? 0,
    };
  }

  /**
   * A verified participant's device key (for chat), or null.
   * @param {string} id
   * @returns {object|null} the verified announcement
   */
  announcementOf(id) {
    return id === this.selfId ? this.own : this.peers.get(id)?.ann ?? null;
  }

  // ---- internals ----------------------------------------------------------------

  #queue(gen, task) {
    const run = this.tail.then(() => (gen === this.generation ? task() : undefined));
    this.tail = run.catch(() => {});
    return run;
  }

  #list(participants) {
    const now = this.env.now();
    for (const p of participants) {
      const had = this.listed.get(p.id);
      this.listed.set(p.id, { id: p.id, name: String(p.name ?? ''), since: had?.since ?? now, gateway: String(p.gateway ?? '') });
    }
  }

  #nameOf(id) {
    return this.listed.get(id)?.name || this.peers.get(id)?.ann.displayName || id;
  }

  #warn(key, participant, text) {
    this.warnings.set(key, { participant, text });
  }

  async #onAnnounce(from, payload) {
    if (from === this.selfId || this.revoked.has(from)) return;
    let bytes;
    try {
      bytes = fromBase64(payload);
    } catch {
      this.#warn(`announce:${from}`, from, `The announcement of ${this.#nameOf(from)} is not readable; it was ignored.`);
      return this.#changed();
    }
    const peer = this.peers.get(from);
    if (peer && equal(peer.ann.raw, bytes)) return undefined; // the same again (resumed welcome)
    let ann;
    try {
      ann = await verifyAnnouncement(bytes, { meetingId: this.meetingId, orgKey: this.identity.org.key, nowSeconds: this.env.now() / 1000 });
    } catch (err) {
      this.#warn(`announce:${from}`, from, announceProblem(this.#nameOf(from), err));
      return this.#changed();
    }
    if (ann.participantId !== from) {
      this.#warn(`announce:${from}`, from, `An announcement made for participant ${ann.participantId} was relayed as coming from ${this.#nameOf(from)}; it was ignored.`);
      return this.#changed();
    }
    if (peer && !equal(peer.ann.devicePublicKey, ann.devicePublicKey)) {
      this.#warn(`device:${from}`, from, `The device key of ${this.#nameOf(from)} changed during the meeting.`);
    }
    let channel;
    try {
      channel = await Channel.create(this.meetingId, this.selfId, this.ecdh.privateKey, this.ecdh.publicKey, from, ann.ecdhPublicKey);
    } catch {
      this.#warn(`announce:${from}`, from, `The announcement of ${this.#nameOf(from)} carries our own key; it was ignored.`);
      return this.#changed();
    }
    this.warnings.delete(`announce:${from}`);
    const opts = this.retentionMs === undefined ? {} : { retentionMs: this.retentionMs };
    const receiver = new Receiver(ann.senderIndex, { now: this.env.now, ...opts });
    const trust = await this.#trustOf(ann);
    if (trust.revoked) {
      this.#warn(`revoked:${from}`, from, `The device of ${this.#nameOf(from)} was revoked by the organisation; it gets no keys.`);
      return this.#changed();
    }
    this.peers.set(from, { id: from, ann, channel, receiver, trust, keyed: false, sentKey: false, requested: 0, answered: 0 });
    if (trust.logged && this.env.now() - trust.firstCertifiedMs < NEW_DEVICE_AGE_MS) {
      const c = ann.credentialInfo;
      this.#warn(`newdevice:${from}`, from, `${cleanName(c.displayName) || c.account} (@${c.account}) uses a new device, first certified ${ago(this.env.now() - trust.firstCertifiedMs)} ago: if they did not add a device, it may be an impostor.`);
    }
    this.frames?.setReceiver(from, ann.senderIndex);
    // A newcomer (or a participant whose keys changed) must not read what
    // was sent before it arrived: ratchet first, and give it the result.
    const newcomer = !this.before.has(from) || !!peer;
    if (this.listed.has(from)) {
      await this.#keyPeer(from, newcomer);
    } else {
      // An announcement the server does not (yet) list: a ghost injected by
      // a relay gets no key. It is keyed once the server lists it.
      this.peers.get(from).awaitingListing = { newcomer };
    }
    for (const p of this.pendingKeys.get(from) ?? []) await this.#onKey(from, p);
    this.pendingKeys.delete(from);
    await this.#changed();
    const queued = this.verifyQueue.get(from) ?? [];
    this.verifyQueue.delete(from);
    for (const p of queued) await this.#onVerify(from, p);
    return undefined;
  }

  // ---- the verification round (docs/e2ee.md, section 14) ---------------------

  /** What the log says of a verified announcement's credential. */
  async #trustOf(ann) {
    const log = this.identity?.log;
    if (!ann?.certified || !log) return { logged: false, revoked: false, firstCertifiedMs: 0 };
    return log.status(ann.credential);
  }

  #certified(ann, trust) {
    return !!ann?.certified && !!trust?.logged && !trust?.revoked;
  }

  /** A new epoch: the verified set changed. Its commit waits for a quiet moment (#commitDue). */
  async #beginRound(view) {
    if (!this.rounds) return;
    await this.rounds.change(view, this.identity?.log?.checkpoint() ?? null);
    this.code = '';
    await this.#commitDue();
    await this.#progress();
  }

  // Makes the commit the round owes if it is due, and otherwise sets a
  // timer for when it is (docs/e2ee.md, section 14, rule 1).
  async #commitDue() {
    if (this.timers.round) this.env.clearTimeout(this.timers.round);
    this.timers.round = null;
    if (!this.rounds) return;
    const commit = await this.rounds.commitDue();
    if (commit) this.send('verify', { payload: toBase64(commit) });
    const at = this.rounds.due();
    if (at === null) return;
    const gen = this.generation;
    this.timers.round = this.env.setTimeout(() => {
      this.timers.round = null;
      this.#queue(gen, async () => {
        await this.#commitDue();
        await this.#progress();
        return this.#changed();
      });
    }, Math.max(at - this.env.now(), 0));
  }

  /** Reveals once everyone committed to the same view and checkpoint; takes the code once every reveal is in. */
  async #progress() {
    if (!this.rounds) return;
    const reveal = this.rounds.reveal();
    if (reveal) this.send('verify', { payload: toBase64(reveal) });
    this.code = await this.rounds.currentCode();
  }

  async #onVerify(from, payload) {
    if (!this.rounds || from === this.selfId) return undefined;
    let bytes;
    try {
      bytes = fromBase64(payload);
    } catch {
      return undefined;
    }
    const peer = this.peers.get(from);
    if (!peer) {
      const list = this.verifyQueue.get(from) ?? [];
      if (list.length < MAX_VERIFY_QUEUE && this.verifyQueue.size < 16) list.push(payload);
      this.verifyQueue.set(from, list);
      return undefined;
    }
    if (isCommit(bytes)) {
      let cp;
      try {
        cp = await this.rounds.onCommit(from, bytes);
      } catch (err) {
        this.#warn(`round:${from}`, from, `The verification commitment of ${this.#nameOf(from)} does not verify; the meeting code cannot be trusted.`);
        return this.#changed();
      }
      // A round ahead of ours: we moved to it with a fresh nonce, or will
      // once the pace of commits allows.
      const moved = this.rounds.pending();
      if (moved) this.send('verify', { payload: toBase64(moved) });
      if (cp && this.identity?.log && cp.note) this.#adoptLater(cp.note);
      else if (cp && !this.identity?.log) {
        // Without a log key this member cannot check checkpoints: it takes
        // the largest its peers hold, so that the round can agree.
        const commit = await this.rounds.adopt(cp);
        if (commit) this.send('verify', { payload: toBase64(commit) });
      }
      await this.#commitDue();
      const round = this.rounds.disagreeingRound(from);
      if (round !== undefined) this.#checkViewLater(from, round);
      else this.warnings.delete(`view:${from}`);
    } else if (isReveal(bytes)) {
      try {
        await this.rounds.onReveal(from, bytes);
      } catch (err) {
        if (err instanceof RevealMismatchError) {
          this.#warn(`round:${from}`, from, `${this.#nameOf(from)} revealed a value that does not match its commitment: the meeting code cannot be trusted.`);
        }
      }
    }
    await this.#progress();
    return this.#changed();
  }

  // A member committed to another list of participants: warn if it still
  // does after VIEW_GRACE_MS (views differ for a moment while a join travels).
  #checkViewLater(from, round) {
    const gen = this.generation;
    const old = this.timers.view.get(from);
    if (old) this.env.clearTimeout(old);
    this.timers.view.set(from, this.env.setTimeout(() => {
      this.timers.view.delete(from);
      this.#queue(gen, async () => {
        if (this.rounds?.disagreeingRound(from) === round) {
          this.#warn(`view:${from}`, from, `${this.#nameOf(from)} sees a different list of participants than you: no meeting code can be agreed. Compare the participant lists aloud; someone may be in the middle.`);
          return this.#changed();
        }
        return undefined;
      });
    }, VIEW_GRACE_MS));
  }

  // Checks a peer's checkpoint against ours (a consistency proof from the
  // server) off the queue, then adopts it in the round.
  #adoptLater(note) {
    const gen = this.generation;
    const log = this.identity.log;
    log.adopt(note).then((cp) => this.#queue(gen, async () => {
      const commit = await this.rounds?.adopt(cp);
      if (commit) this.send('verify', { payload: toBase64(commit) });
      await this.#commitDue();
      await this.#progress();
      return this.#changed();
    }), (err) => this.#queue(gen, async () => {
      if (!(err instanceof SplitViewError)) {
        this.#warn('log', '', `The identity log of a participant cannot be checked against yours (${err.message}); the meeting code stays unverified.`);
      }
      return this.#changed();
    }));
  }

  #listenLog(log) {
    const old = this.logListeners;
    if (old) for (const [type, f] of Object.entries(old.fns)) old.log.removeEventListener(type, f);
    this.logListeners = null;
    if (!log) return;
    const gen = this.generation;
    const fns = {
      split: (e) => this.#queue(gen, () => { this.#warn('split', '', splitWarning(e.detail.text)); return this.#changed(); }),
      'new-device': (e) => this.#queue(gen, () => {
        const when = new Date(e.detail.at).toLocaleString();
        this.#warn(`mydevice:${e.detail.fingerprint}`, '', `A new device was certified for your account: ${e.detail.fingerprint}, on ${when}. If it is not one of yours, tell your administrator at once: it can be revoked.`);
        return this.#changed();
      }),
      advanced: () => this.#queue(gen, () => this.#onLogAdvanced()),
    };
    for (const [type, f] of Object.entries(fns)) log.addEventListener(type, f);
    this.logListeners = { log, fns };
  }

  // The log moved on: credentials may now be logged, devices revoked.
  async #onLogAdvanced() {
    if (this.own) this.ownTrust = await this.#trustOf(this.own);
    for (const [id, peer] of this.departed) {
      if ((await this.#trustOf(peer.ann)).revoked) {
        this.departed.delete(id);
        this.revoked.set(id, { id, name: this.#displayName(peer.ann, id) });
        this.#warn(`revoked:${id}`, '', `The organisation revoked the device of ${this.#displayName(peer.ann, id)}; it was sent away and got no keys after it left.`);
      }
    }
    for (const [id, peer] of [...this.peers]) {
      peer.trust = await this.#trustOf(peer.ann);
      if (!peer.trust.revoked) continue;
      this.peers.delete(id);
      this.revoked.set(id, { id, name: this.#displayName(peer.ann, id) });
      this.frames?.removeParticipant(id);
      if (peer.sentKey) this.#scheduleRotation();
      this.#warn(`revoked:${id}`, '', `The organisation revoked the device of ${this.#displayName(peer.ann, id)}: it gets no more keys.`);
    }
    return this.#changed();
  }

  #displayName(ann, id) {
    const c = ann?.certified ? ann.credentialInfo : null;
    if (c) return `${cleanName(c.displayName) || c.account} (@${c.account})`;
    return cleanName(this.#nameOf(id));
  }

  /**
   * Gives a verified and listed participant our key: a newcomer gets the
   * next ratchet step (others derive it), anyone else our current key.
   * @param {string} from
   * @param {boolean} newcomer
   */
  async #keyPeer(from, newcomer) {
    if (newcomer) {
      const { key, fresh } = await this.sender.ratchet();
      if (fresh) {
        await this.#sendKeyToAll();
        this.#switchLater(key);
      } else {
        this.#cancelSwitch();
        this.frames?.setSendKey(key);
        await this.#sendKey(from);
      }
    } else {
      await this.#sendKey(from);
    }
  }

  async #sendKey(id) {
    const peer = this.peers.get(id);
    if (!peer || !this.sender || peer.awaitingListing || !this.listed.has(id)) return;
    const sealed = await peer.channel.seal(this.sender.key);
    peer.sentKey = true;
    this.send('key', { to: id, payload: toBase64(sealed) });
  }

  // Seals for everyone at once: one after the other, each seal waits for
  // its turn on a busy page, and the switch (SWITCH_DELAY_MS after the
  // last message) with it.
  async #sendKeyToAll() {
    await Promise.all([...this.peers.keys()].map((id) => this.#sendKey(id)));
  }

  async #onKey(from, payload) {
    let bytes;
    try {
      bytes = fromBase64(payload);
    } catch {
      bytes = new Uint8Array(0);
    }
    const peer = this.peers.get(from);
    if (equal(bytes, KEY_REQUEST)) {
      const now = this.env.now();
      if (peer && now - peer.answered >= KEY_REQUEST_INTERVAL_MS) {
        peer.answered = now;
        await this.#sendKey(from);
      }
      return undefined;
    }
    if (!peer) {
      const list = this.pendingKeys.get(from) ?? [];
      if (list.length < 4) list.push(payload);
      this.pendingKeys.set(from, list);
      return undefined;
    }
    let k;
    try {
      k = await peer.channel.open(bytes);
      if (k.index !== peer.ann.senderIndex) throw new Error('sender index');
    } catch {
      this.#warn(`key:${from}`, from, `A key message from ${this.#nameOf(from)} could not be opened: their media and chat cannot be decrypted.`);
      return this.#changed();
    }
    this.warnings.delete(`key:${from}`);
    await peer.receiver.addKey(k);
    this.frames?.addKey(from, k);
    peer.keyed = true;
    await this.#retryChat(from);
    return this.#changed();
  }

  #scheduleRotation() {
    this.leavers = true;
    if (this.timers.leave) this.env.clearTimeout(this.timers.leave);
    const gen = this.generation;
    this.timers.leave = this.env.setTimeout(() => {
      this.timers.leave = null;
      this.#queue(gen, () => this.#rotate());
    }, LEAVE_DEBOUNCE_MS);
  }

  async #rotate() {
    if (!this.leavers || !this.sender) return;
    this.leavers = false;
    const key = await this.sender.rotate();
    await this.#sendKeyToAll();
    this.#switchLater(key);
    await this.#changed();
  }

  // Encrypts with `key` once the key messages had time to arrive.
  #switchLater(key) {
    this.#cancelSwitch();
    const gen = this.generation;
    this.timers.switch = this.env.setTimeout(() => {
      this.timers.switch = null;
      if (gen === this.generation) this.frames?.setSendKey(key);
    }, SWITCH_DELAY_MS);
  }

  #cancelSwitch() {
    if (this.timers.switch) this.env.clearTimeout(this.timers.switch);
    this.timers.switch = null;
  }

  async #sendChat(msg) {
    const gen = this.generation;
    return this.#queue(gen, async () => {
      if (!this.sender || !this.own) throw new Error('End-to-end encryption is not ready yet; try again in a moment.');
      const timestampMs = this.env.now();
      const sealed = await this.sender.sealChat(this.meetingId, this.selfId, this.identity.device.privateKey, { ...msg, timestampMs });
      if (!this.send('chat', { payload: toBase64(sealed) })) throw new Error('The message could not be sent: the connection is down.');
      this.#emit('chat', { from: this.selfId, name: this.name, self: true, ok: true, kind: msg.kind, text: msg.text, file: msg.file, timestampMs });
    });
  }

  async #onChat(from, payload, firstSeen = this.env.now()) {
    const peer = this.peers.get(from);
    const fail = (error) => this.#emit('chat', { from, name: this.#nameOf(from), self: false, ok: false, error, timestampMs: firstSeen });
    if (!peer) return fail('not-verified');
    let m;
    try {
      m = await peer.receiver.openChat(this.meetingId, from, peer.ann.deviceKey, fromBase64(payload));
    } catch (err) {
      if (err instanceof UnknownKeyError && this.env.now() - firstSeen < CHAT_WAIT_MS) {
        const list = this.pendingChat.get(from) ?? [];
        if (list.length < 32) list.push({ payload, at: firstSeen });
        this.pendingChat.set(from, list);
        this.requestKey(from);
        return undefined;
      }
      return fail(err instanceof SignatureError ? 'signature' : 'decrypt');
    }
    this.#emit('chat', { from, name: this.#nameOf(from), self: false, ok: true, kind: m.kind, text: m.text, file: m.file, timestampMs: m.timestampMs });
    return undefined;
  }

  async #retryChat(from) {
    const list = this.pendingChat.get(from);
    if (!list) return;
    this.pendingChat.delete(from);
    for (const c of list) await this.#onChat(from, c.payload, c.at);
  }

  #views() {
    const out = [];
    const now = this.env.now();
    const orgName = (ann) => {
      if (!ann?.certified) return '';
      const org = this.identity?.org;
      return org && ann.credentialInfo.orgId === org.orgId && org.name ? org.name : ann.credentialInfo.orgId;
    };
    // Names: the credential's when certified, the free text (cleaned) otherwise.
    const named = (a, trust, free) => {
      const certified = this.#certified(a, trust);
      const c = a?.certified ? a.credentialInfo : null;
      const freeName = cleanName(free);
      const certName = c ? cleanName(c.displayName) || c.account : '';
      return {
        name: certified ? certName : freeName,
        freeName,
        nameDiffers: certified && !!freeName && skeleton(freeName) !== skeleton(certName),
        account: c && (certified || trust?.revoked) ? c.account : '',
        certified,
        pending: !!a?.certified && !!this.identity?.log && !trust?.logged && !trust?.revoked,
        revoked: !!trust?.revoked,
        newDevice: certified && this.env.now() - (trust?.firstCertifiedMs ?? 0) < NEW_DEVICE_AGE_MS,
        orgName: certified ? orgName(a) : '',
        userId: certified ? a.userId : '',
      };
    };
    if (this.selfId) {
      const a = this.own;
      const n = named(a, this.ownTrust, this.name);
      out.push({ id: this.selfId, self: true, fingerprint: a?.fingerprint ?? '', ...n, newDevice: false,
        e2ee: a ? 'verified' : 'connecting', listed: true, lookalike: '' });
    }
    let nextGrace = Infinity;
    const ids = new Set([...this.listed.keys(), ...this.peers.keys()]);
    for (const id of ids) {
      if (id === this.selfId) continue;
      const peer = this.peers.get(id);
      const listed = this.listed.get(id);
      let e2ee;
      if (peer) {
        e2ee = peer.keyed ? 'verified' : 'connecting';
      } else if ([...this.warnings.values()].some((w) => w.participant === id)) {
        e2ee = 'unverified';
      } else {
        const left = listed.since + ANNOUNCE_GRACE_MS - now;
        e2ee = left > 0 ? 'connecting' : 'unverified';
        if (left > 0) nextGrace = Math.min(nextGrace, left);
      }
      const a = peer?.ann;
      const n = named(a, peer?.trust, listed?.name || a?.displayName || id);
      // A gateway (a telephone through the server) holds the keys on the
      // server: whatever its announcement, it is not end-to-end.
      const gateway = listed?.gateway ?? '';
      if (gateway) e2ee = 'gateway';
      out.push({ id, self: false, fingerprint: a?.fingerprint ?? '', ...n, e2ee, listed: !!listed, lookalike: '', gateway });
    }
    this.#graceTimer(nextGrace);
    // Look-alike names (docs/e2ee.md, section 15; Go's lookalikeOf): the
    // name someone chose (the free text of a guest, or of a certified
    // participant when it differs from its credential) against another
    // participant's name, and, against a certified one, also with a title
    // or decoration added ("Alice Martin (CEO)") or its account written out
    // ("(@alice)"); and a certified participant's credential name against
    // another certified user's name or account (an account the server made
    // with someone else's name: both are flagged).
    for (const p of out) {
      if (p.self) continue;
      const chosen = p.certified ? (p.nameDiffers ? p.freeName : '') : p.name;
      // Certified participants first: the name imitated is usually theirs.
      for (const q of [...out].sort((x, y) => Number(y.certified) - Number(x.certified))) {
        if (q === p || (p.certified && q.certified && p.userId === q.userId)) continue;
        const hit = q.certified
          ? (chosen && (looksLike(chosen, q.name, true) || looksLike(chosen, q.account, false) || claimsAccount(chosen, q.account)))
            || (p.certified && (looksLike(p.name, q.name, false) || looksLike(p.name, q.account, false)))
          : chosen && looksLike(chosen, q.name, false);
        if (hit) {
          p.lookalike = q.certified ? `${q.name} (@${q.account})` : q.name;
          break;
        }
      }
    }
    return out;
  }

  // Re-evaluates when the first announcement grace period ends.
  #graceTimer(ms) {
    if (this.timers.grace || ms === Infinity) return;
    const gen = this.generation;
    this.timers.grace = this.env.setTimeout(() => {
      this.timers.grace = null;
      this.#queue(gen, () => this.#changed());
    }, ms + 10);
  }

  async #changed() {
    if (this.own) {
      // Hashed again only when the announcements changed: a rotation
      // brings a key message from everyone, each ending here.
      const anns = [this.own, ...[...this.peers.values()].map((p) => p.ann)];
      if (anns.length !== this.codeOf.length || anns.some((a, i) => a !== this.codeOf[i])) {
        this.codeOf = anns;
        await this.#beginRound(anns);
      }
    }
    const snap = this.snapshot();
    const keys = {
      state: snap.state,
      participants: JSON.stringify(snap.participants),
      code: snap.code,
      warnings: JSON.stringify(snap.warnings),
    };
    for (const k of Object.keys(keys)) {
      if (this.last[k] === keys[k]) continue;
      this.last[k] = keys[k];
      this.#emit(k, snap);
    }
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #clearTimers() {
    for (const k of Object.keys(this.timers)) {
      if (k === 'view') continue;
      if (this.timers[k]) this.env.clearTimeout(this.timers[k]);
      this.timers[k] = null;
    }
    for (const t of this.timers.view.values()) this.env.clearTimeout(t);
    this.timers.view.clear();
  }
}

/**
 * The warning for an announcement that failed verification.
 * @param {string} name
 * @param {Error} err
 * @returns {string}
 */
export function announceProblem(name, err) {
  const msg = String(err?.message ?? '');
  if (err instanceof SignatureError && msg.includes('credential')) return `The certificate of ${name} does not verify: it was not issued by your organisation.`;
  if (err instanceof SignatureError) return `The announcement of ${name} has an invalid signature: their keys may have been substituted.`;
  if (err instanceof ExpiredError) return `The certificate of ${name} has expired or is not yet valid.`;
  if (msg.includes('for meeting')) return `The announcement of ${name} is for another meeting; it was ignored.`;
  if (msg.includes('certifies another')) return `The certificate of ${name} belongs to another device or user.`;
  if (msg.includes('user id without a credential')) return `${name} claims an account without a certificate.`;
  return `The announcement of ${name} is malformed; it was ignored.`;
}

/** The warning for a split view of the identity log. */
export function splitWarning(text) {
  return `The server showed you and another participant different versions of the identity log (${text}): identities in this meeting cannot be trusted, and no meeting code will be agreed.`;
}

/** A duration as people say it: "5 minutes", "3 hours". */
function ago(ms) {
  const m = Math.max(1, Math.round(ms / 60000));
  return m < 120 ? `${m} minute${m === 1 ? '' : 's'}` : `${Math.round(m / 60)} hours`;
}
