// A call: one meeting as this page takes part in it. It wires the protocol
// session (session.mjs: WebSocket, peer connections, reconnection) to the
// meeting's end-to-end encryption (e2ee/meetingcrypto.mjs: announcements,
// pairwise keys, meeting code, chat) and to the encryption of its media
// frames (e2ee/frames.mjs), the way internal/client/secure's Wire plugs a
// secure.Session into the native client; prepareIdentity (below) loads
// the device identity it encrypts with. No DOM: the views render what it
// reports, and call.test.mjs runs it under Node against fake browser
// objects.
//
// Events (CustomEvent):
//   status, waiting, joined, participants, tracks, speaker, room-state,
//   knocks, muted, notice, error, left
//                 the session's events, passed on with the same detail
//                 (session.mjs), after the call has acted on them
//   e2ee-state    the end-to-end state changed; detail = call.e2ee
//   chat          a chat message or file arrived (MeetingCrypto's detail)
//   chat-reset    a new meeting began (not a resume): earlier messages
//                 belong to another meeting

import { Session } from './session.mjs';
import { MeetingCrypto } from './e2ee/meetingcrypto.mjs';
import { uploadFile, downloadFile } from './filetransfer.mjs';
import { api, getJSON } from './api.mjs';
import { openDeviceStore, MemoryStore, loadDeviceKey, pinOrgKey, pinLogKey, deviceCredential } from './e2ee/device.mjs';
import { LogMonitor, httpLog, logVerifier } from './e2ee/log.mjs';
import { fingerprint, fromBase64, parseCredential, provePossession, toBase64 } from './e2ee/index.mjs';

/** How often the identity log is read during a meeting: a revocation shows within 10 s. */
export const MEETING_LOG_INTERVAL_MS = 3000;

/** The session events a Call passes on. */
export const SESSION_EVENTS = Object.freeze([
  'status', 'waiting', 'joined', 'participants', 'tracks', 'speaker', 'room-state',
  'knocks', 'muted', 'notice', 'error', 'left',
]);

/** The warning shown when this browser cannot encrypt media. */
export const NO_FRAME_ENCRYPTION = 'This browser cannot encrypt media end to end: your camera and microphone are not protected.';

/** One meeting: the protocol session, its E2EE and its media encryption. */
export class Call extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.room room alias
   * @param {string} opts.name display name
   * @param {string} [opts.pin] host or guest PIN
   * @param {{microphone?: MediaStreamTrack|null, camera?: MediaStreamTrack|null}} [opts.media] local tracks to publish
   * @param {import('./e2ee/meetingcrypto.mjs').Identity|Promise<import('./e2ee/meetingcrypto.mjs').Identity>} opts.identity
   *   the device identity (e2ee/device.mjs)
   * @param {EventTarget & object} [opts.frames] the page's media encryption
   *   (e2ee/frames.mjs FrameEncryption): transforms for the session, keys from
   *   the meeting's E2EE, 'missing-key' and 'failed' events, `available`
   * @param {'vp8'|'vp9'} [opts.videoCodec]
   * @param {string} [opts.url] WebSocket URL (default: the page's /ws)
   * @param {object} [opts.env] browser globals for the session (tests; session.mjs)
   * @param {object} [opts.cryptoEnv] clock for the E2EE (tests; meetingcrypto.mjs)
   * @param {typeof globalThis.fetch} [opts.fetch] for file transfers (tests)
   * @param {number} [opts.codeDigits] meeting code length (tests of the relay's search only)
   */
  constructor({ room, name, pin = '', media = {}, identity, frames = null, videoCodec = 'vp8', url, env, cryptoEnv, fetch, codeDigits }) {
    super();
    this.room = room;
    this.frames = frames;
    this.fetch = fetch ?? ((...a) => globalThis.fetch(...a));
    this.session = new Session({ room, name, pin, url, media, env, frames, videoCodec });
    this.crypto = new MeetingCrypto({ identity, send: (type, fields) => this.session.sendE2EE(type, fields), frames, env: cryptoEnv, codeDigits });
    this.identityReady = Promise.resolve(identity);
    this.cryptoEnv = { setTimeout: (f, ms) => globalThis.setTimeout(f, ms), clearTimeout: (t) => globalThis.clearTimeout(t), ...cryptoEnv };
    this.logTimer = null;
    /** @type {ReturnType<MeetingCrypto['snapshot']>|null} the E2EE state, null until the first report */
    this.snapshot = null;
    this.ended = false;

    const s = this.session;
    const mc = this.crypto;
    s.addEventListener('joined', (e) => {
      const d = e.detail;
      if (d.resumed) {
        mc.resumed();
        return;
      }
      // Another node of the same meeting (a failover) keeps the chat.
      if (d.meeting !== this.chatMeeting) this.#emit('chat-reset', {});
      this.chatMeeting = d.meeting;
      this.#watchLog();
      mc.start({ meetingId: d.meeting || `room:${room}`, selfId: d.self.id, name: d.self.name || this.session.name, participants: d.participants });
    });
    s.addEventListener('e2ee', (e) => mc.receive(e.detail));
    s.addEventListener('participants', (e) => mc.setServerParticipants(e.detail.participants));
    s.addEventListener('left', () => this.#end());
    for (const type of SESSION_EVENTS) s.addEventListener(type, (e) => this.#emit(type, e.detail));

    for (const type of ['state', 'participants', 'code', 'warnings']) mc.addEventListener(type, () => this.#e2eeChanged());
    mc.addEventListener('chat', (e) => { if (!this.ended) this.#emit('chat', e.detail); });

    this.onMissingKey = (e) => { if (!this.ended) mc.requestKey(e.detail.participant); };
    this.onFramesFailed = () => this.#e2eeChanged();
    // The join's timeline (jointimeline.mjs): keys and frames of others.
    this.onKey = () => { if (!this.ended) this.session.timeline?.mark('first-key'); };
    this.onDecrypted = (e) => { if (!this.ended && e.detail?.kind === 'video') this.session.timeline?.mark('first-decrypt'); };
    frames?.addEventListener?.('missing-key', this.onMissingKey);
    frames?.addEventListener?.('failed', this.onFramesFailed);
    frames?.addEventListener?.('key', this.onKey);
    frames?.addEventListener?.('decrypted', this.onDecrypted);
  }

  /** Joins the meeting (session.mjs join). */
  join() { this.session.join(); }

  /**
   * The phases of the join so far (jointimeline.mjs), in the order they
   * happened; empty before join().
   * @returns {{phase: string, ms: number}[]}
   */
  get joinPhases() { return this.session.timeline?.phases() ?? []; }

  /** Leaves the meeting; 'left' follows. */
  leave() { this.session.leave(); }

  /**
   * The end-to-end state as the page shows it: MeetingCrypto's snapshot,
   * turned into a warning when this browser cannot encrypt media. Null
   * before the first report.
   */
  get e2ee() { return this.snapshot; }

  /**
   * Sends a text chat message to everyone, end-to-end encrypted.
   * @param {string} text
   * @returns {Promise<void>}
   */
  sendText(text) {
    if (this.ended) return Promise.reject(new Error('You are not in the meeting.'));
    return this.crypto.sendText(text);
  }

  /**
   * Encrypts and uploads a file, then announces it in the chat.
   * @param {File|Blob} file
   * @returns {Promise<void>}
   */
  async sendFile(file) {
    if (this.ended) throw new Error('You are not in the meeting.');
    const descriptor = await uploadFile(file, this.session.uploadToken, this.fetch);
    await this.crypto.sendFile(descriptor);
  }

  /**
   * Downloads and decrypts a file announced in the chat.
   * @param {object} descriptor the chat message's file
   * @returns {Promise<Blob>}
   */
  download(descriptor) {
    if (this.ended) return Promise.reject(new Error('Files can only be downloaded during the meeting.'));
    return downloadFile(descriptor, this.session.uploadToken, this.fetch);
  }

  #e2eeChanged() {
    if (this.ended) return;
    const s = this.crypto.snapshot();
    if (this.frames && this.frames.available === false) {
      s.state = 'warning';
      s.warnings = [NO_FRAME_ENCRYPTION, ...s.warnings];
    }
    this.snapshot = s;
    this.#emit('e2ee-state', s);
  }

  // Reads the identity log every MEETING_LOG_INTERVAL_MS while the call
  // lasts: revocations and new devices show within seconds.
  #watchLog() {
    if (this.logTimer) return;
    const tick = async () => {
      this.logTimer = null;
      if (this.ended) return;
      const log = (await this.identityReady)?.log;
      if (!log) return;
      try {
        await log.refresh();
      } catch {
        // the next tick tries again; a split view is reported by the monitor
      }
      if (!this.ended) this.logTimer = this.cryptoEnv.setTimeout(tick, MEETING_LOG_INTERVAL_MS);
    };
    this.logTimer = this.cryptoEnv.setTimeout(tick, MEETING_LOG_INTERVAL_MS);
  }

  /** The session ended: keys forgotten, the page's worker left alone. */
  #end() {
    if (this.ended) return;
    this.ended = true;
    if (this.logTimer) this.cryptoEnv.clearTimeout(this.logTimer);
    this.logTimer = null;
    this.crypto.stop();
    this.snapshot = null;
    this.frames?.removeEventListener?.('missing-key', this.onMissingKey);
    this.frames?.removeEventListener?.('failed', this.onFramesFailed);
    this.frames?.removeEventListener?.('key', this.onKey);
    this.frames?.removeEventListener?.('decrypted', this.onDecrypted);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Loads (or makes) the device key, pins the organisation's and the log's
 * keys, when signed in gets a credential (proving it holds the device key),
 * and opens the transparency log monitor (docs/e2ee.md, section 13). Never
 * fails: without storage the key lives in memory; without the organisation's
 * or the log's key nobody is certified.
 * @returns {Promise<import('./e2ee/meetingcrypto.mjs').Identity>}
 */
export async function prepareIdentity() {
  let store;
  try {
    store = await openDeviceStore();
  } catch {
    store = new MemoryStore();
  }
  const device = await loadDeviceKey(store).catch(() => loadDeviceKey(store = new MemoryStore()));
  const orgRes = await getJSON('/api/e2ee/org');
  const org = await pinOrgKey(store, orgRes.ok ? orgRes.data : null).catch(() => ({ orgId: '', name: '', key: null, changed: false, alarm: '' }));
  const me = await getJSON('/api/me');
  const account = me.ok ? String(me.data?.user?.username ?? '') : '';
  const request = async (devicePublicKey) => {
    const ch = await api('POST', '/api/e2ee/challenge', { body: {}, csrf: me.data?.csrf });
    if (!ch.ok) return null;
    const sig = await provePossession(device.privateKey, org.orgId, account, device.publicKeyRaw, fromBase64(String(ch.data.challenge)));
    const r = await api('POST', '/api/e2ee/credential', { body: { devicePublicKey, challenge: ch.data.challenge, signature: toBase64(sig) }, csrf: me.data?.csrf });
    return r.ok ? r.data : null;
  };
  const credential = await deviceCredential(store, device, org, { account, request }).catch(() => null);
  const alarms = org.alarm ? [org.alarm] : [];
  const log = await openLog(store, org, orgRes.ok ? orgRes.data?.logKey : '', credential, device, alarms).catch(() => null);
  return { device, credential, org, log, alarms };
}

/**
 * Opens the log monitor of this server: the pinned log key, the state kept
 * in the device store, a first refresh. null when no log key can be
 * trusted (none published, or a changed pin); a pinned key withheld or
 * replaced adds its alarm to alarms.
 */
async function openLog(store, org, logKey, credential, device, alarms) {
  if (!org.key) return null;
  const pin = await pinLogKey(store, String(logKey ?? ''));
  if (pin.alarm) alarms.push(pin.alarm);
  if (!pin.vkey) return null;
  const userId = credential ? parseCredential(credential).userId : '';
  const log = new LogMonitor({ api: httpLog(), verifier: await logVerifier(pin.vkey), orgKey: org.key, orgId: org.orgId,
    store, userId, device: device.publicKeyRaw, fingerprint });
  await log.load();
  await log.refresh().catch(() => {});
  return log;
}
