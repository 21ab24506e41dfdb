// The protocol client of a meeting (docs/protocol.md): one WebSocket, a
// publish peer connection ("pub", offered by the client) and a subscribe
// peer connection ("sub", offered by the server), reconnection and ICE
// recovery. No DOM: the page listens to the events and renders them.
//
// Events (all CustomEvent, details below):
//   status        {state, text}  state: connecting | waiting | connected | reconnecting | closed
//   waiting       {wait, roomInfo}  not admitted yet: wait is "host" or "lobby"
//   participants  {self, participants}  the local and the remote participants changed
//   tracks        {}             remote media changed: read streamFor()
//   joined        {self, roomInfo, resumed, meeting, uploadToken, participants}
//   e2ee          {type, from, payload}  an announce, key or chat message (docs/e2ee.md)
//   speaker       {participant}  the active speaker changed (may be the local participant)
//   room-state    {roomState}    the room's access state (also right after joined)
//   knocks        {knocks, added}  the lobby changed (hosts only); added: the new knock or null
//   muted         {by, name}     a host muted the local microphone (name: the host's, or '')
//   notice        {code, message}  host-left, host-back, ...
//   error         {code, message, fatal}
//   left          {reason, message}  leave, bye reason (ended, removed, denied, no-host,
//                 server-shutdown, replaced, ...) or fatal error code (room-unavailable,
//                 removed, room-full, ...); message: the server's sentence for an error

import {
  joinMessage, publishMessage, subscribeAnswerMessage, candidateMessage, stateMessage,
  restartIceMessage, leaveMessage, clientMessageProblem, parseServerMessage,
  muteMessage, muteGuestsMessage, removeMessage, setRoleMessage, lockMessage,
  admitMessage, denyMessage, roomSettingsMessage, endMessage, e2eeMessage, layoutMessage,
} from './protocol.mjs';
import { reconnectDelay } from './backoff.mjs';
import { SerialQueue } from './queue.mjs';
import { mediaGroups, tileKey } from './tiles.mjs';
import { preferVideoCodecs } from './codecs.mjs';
import { sendEncodings, applyActive, isLayersMessage, SCREEN_DEGRADATION, CAMERA_SVC } from './simulcast.mjs';
import { mungeOpus } from './opus.mjs';
import { LayoutReporter } from './layout.mjs';
import { JoinTimeline } from './jointimeline.mjs';

/** How long a failed peer connection may take to recover before a full rejoin. */
export const ICE_RECOVERY_MS = 10000;
/** How many times a refused publish offer is retried. */
export const PUBLISH_RETRIES = 3;
/** The n-th retry of a refused publish offer waits n times this, in milliseconds. */
export const PUBLISH_RETRY_MS = 1000;
/** How often, and for how long after a join, the first decoded remote frame is looked for. */
const FIRST_FRAME_POLL_MS = 20;
const FIRST_FRAME_WATCH_MS = 60000;

const PUBLISH_ORDER = ['microphone', 'camera', 'screen', 'screen-audio'];
const KIND = { microphone: 'audio', camera: 'video', screen: 'video', 'screen-audio': 'audio' };
const OPEN = 1;

/** The delay before trying another node of the cluster, in milliseconds. */
export const FAILOVER_DELAY_MS = 250;

/**
 * The signaling WebSocket URL of a node, from its base URL (a welcome's
 * nodes, a redirect's url); '' when it is not an https URL.
 * @param {string} base
 * @returns {string}
 */
export function nodeSocketURL(base) {
  try {
    const u = new URL(String(base));
    if (u.protocol !== 'https:' || u.username || u.password) return '';
    return `wss://${u.host}/ws`;
  } catch {
    return '';
  }
}

/** The room state assumed until the server sends one (absent booleans are false). */
export const DEFAULT_ROOM_STATE = Object.freeze({ locked: false, guestsMayUnmute: false, guestsMayPresent: false, hostPresent: false });

/** Why a pending operation was abandoned. */
class Abandoned extends Error {}

/** A meeting session: join it, publish local media, receive the others'. */
export class Session extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.room room alias
   * @param {string} opts.name display name
   * @param {string} [opts.pin] host or guest PIN, sent in every join
   * @param {string} [opts.url] WebSocket URL; default wss://<host>/ws of the page
   * @param {{microphone?: MediaStreamTrack|null, camera?: MediaStreamTrack|null}} [opts.media]
   *   local tracks to publish; a source that is absent is not published
   * @param {object} [opts.env] replacements for the browser globals (tests):
   *   WebSocket, RTCPeerConnection, MediaStream, setTimeout, clearTimeout, videoCodecs
   * @param {object} [opts.frames] media encryption (e2ee/frames.mjs FrameEncryption):
   *   peerConfig(), attachSender(sender, kind), attachReceiver(receiver, kind),
   *   mapReceiver(receiver, participant)
   * @param {'vp8'|'vp9'} [opts.videoCodec] the video codec to prefer: VP8 is sent
   *   as three simulcast layers, VP9 as one encoding with three SVC layers
   */
  constructor({ room, name, pin = '', url, media = {}, env = {}, frames = null, videoCodec = 'vp8' }) {
    super();
    const g = globalThis;
    this.env = {
      WebSocket: g.WebSocket,
      RTCPeerConnection: g.RTCPeerConnection,
      MediaStream: g.MediaStream,
      setTimeout: (fn, ms) => g.setTimeout(fn, ms),
      clearTimeout: (t) => g.clearTimeout(t),
      videoCodecs: () => g.RTCRtpReceiver?.getCapabilities?.('video')?.codecs ?? [],
      now: () => g.performance?.now?.() ?? Date.now(),
      ...env,
    };
    this.frames = frames;
    this.videoCodec = videoCodec === 'vp9' ? 'vp9' : 'vp8';
    this.room = room;
    this.name = String(name).trim();
    this.pin = String(pin ?? '');
    this.url = url ?? `wss://${g.location?.host}/ws`;
    /** @type {string[]} other nodes' WebSocket URLs, best first, from the last welcome */
    this.alternates = [];
    /** the next join follows a node's redirect (the node does not send it on) */
    this.redirected = false;
    /** the admission ticket of the last redirect (a signed-in account), for the node it names */
    this.ticket = '';
    /** where the session started: a join whose ticket was refused goes there again, once */
    this.homeURL = this.url;
    this.ticketRetried = false;

    /** @type {Map<string, MediaStreamTrack|null>} published source -> track (null: camera off) */
    this.local = new Map();
    for (const s of ['microphone', 'camera']) if (media[s] !== undefined) this.local.set(s, media[s]);
    this.cameraStream = new this.env.MediaStream(); // msid shared by microphone and camera
    this.screenStream = new this.env.MediaStream(); // msid shared by screen and screen-audio

    this.ws = null;
    this.closed = false; // left, bye or fatal: no more reconnection
    this.everJoined = false;
    this.admitted = false; // welcomed on the current WebSocket
    /** @type {''|'host'|'lobby'} what the participant waits for, before its welcome */
    this.waitingFor = '';
    this.attempt = 0;
    this.resumeToken = '';
    this.self = null;
    /** the meeting instance id of the last welcome: the E2EE context */
    this.meeting = '';
    /** authorises file uploads and downloads (X-Conclave-Upload) */
    this.uploadToken = '';
    this.roomInfo = null;
    this.iceServers = [];
    /** @type {'all'|'relay'} 'relay' when the server asks that all media go through TURN */
    this.iceTransportPolicy = 'all';
    /** @type {Map<string, object>} the other participants by id */
    this.participants = new Map();
    /** @type {{locked: boolean, guestsMayUnmute: boolean, guestsMayPresent: boolean, hostPresent: boolean}} */
    this.roomState = { ...DEFAULT_ROOM_STATE };
    /** @type {Map<string, object>} newcomers knocking at a locked room, by id (hosts only) */
    this.knocks = new Map();

    this.pub = null;
    this.sub = null;
    this.pubQueue = new SerialQueue();
    this.subQueue = new SerialQueue();
    /** @type {Map<string, RTCRtpTransceiver>} source -> pub transceiver */
    this.transceivers = new Map();
    this.pendingPublish = null; // the publish message sent and not yet answered
    this.publishWaiter = null; // {id, resolve, reject}
    this.publishSeq = 0;
    this.pubWanted = false; // a negotiation of pub is needed
    this.pubIceRestart = false;
    this.publishFailures = 0;
    this.outbox = []; // candidates and restart-ice produced while the WebSocket was down
    /** getParameters/setParameters of the pub senders, one at a time */
    this.paramsQueue = new SerialQueue();

    /** @type {Map<string, {participant: string, source: string, stream: MediaStream}>} */
    this.remote = new Map();
    this.timers = { reconnect: null, pub: null, sub: null, retry: null };

    /** @type {Map<string, {width: number, height: number}>} tile key -> rendered size */
    this.renderSizes = new Map();
    this.layout = new LayoutReporter({
      send: (layout) => this.#send(layoutMessage(layout)),
      setTimeout: this.env.setTimeout,
      clearTimeout: this.env.clearTimeout,
    });
    /** the active speaker's participant id ('' until the server names one) */
    this.speaker = '';
    /** @type {JoinTimeline|null} the phases of the join (jointimeline.mjs) */
    this.timeline = null;
  }

  // ---- public API ---------------------------------------------------------

  /** Connects and joins the meeting. */
  join() {
    this.timeline = new JoinTimeline(this.env.now);
    this.#status('connecting');
    this.#connect();
  }

  /**
   * What the local participant sends now.
   * @returns {{audio: boolean, video: boolean, screen: boolean}}
   */
  get mediaState() {
    const mic = this.local.get('microphone');
    return { audio: !!mic && mic.enabled !== false, video: !!this.local.get('camera'), screen: this.local.has('screen') };
  }

  /**
   * The MediaStream of a remote tile, or null.
   * @param {string} participant
   * @param {'camera'|'screen'} source
   * @returns {MediaStream|null}
   */
  streamFor(participant, source) {
    return this.remote.get(tileKey(participant, source))?.stream ?? null;
  }

  /**
   * Tells the server at which size a remote tile renders its video, in
   * device pixels (0x0: not visible), or forgets the tile with null. Sent
   * as `layout`, throttled, for the tile's video mid.
   * @param {string} participant
   * @param {'camera'|'screen'} source
   * @param {{width: number, height: number}|null} size
   */
  setRenderSize(participant, source, size) {
    const key = tileKey(participant, source);
    if (size) this.renderSizes.set(key, { width: size.width, height: size.height });
    else this.renderSizes.delete(key);
    this.#syncLayout();
  }

  /**
   * Mutes or unmutes the microphone. The track stays published and keeps its
   * device; a disabled track sends only silence.
   * @param {boolean} on
   */
  setMicrophoneEnabled(on) {
    const mic = this.local.get('microphone');
    if (mic) mic.enabled = !!on;
    // Unmuting lifts a host's mute, unless the server refuses (forbidden).
    if (on && mic && this.self?.muted) this.self.muted = false;
    this.#stateChanged();
  }

  /**
   * Publishes a (new) microphone track, for instance once access was granted
   * after joining. Adds a transceiver and renegotiates when none exists.
   * @param {MediaStreamTrack} track
   */
  setMicrophoneTrack(track) {
    this.local.set('microphone', track);
    this.#updatePublishing();
    this.#stateChanged();
  }

  /**
   * Turns the camera on with `track`, or off with null. Off keeps the
   * transceiver (replaceTrack(null)); the caller stops the device.
   * @param {MediaStreamTrack|null} track
   */
  setCamera(track) {
    this.local.set('camera', track ?? null);
    this.#updatePublishing();
    this.#stateChanged();
  }

  /**
   * Starts a screen share: a sendonly transceiver for the video (and one for
   * the audio when the picker gave some), published by renegotiating.
   * @param {MediaStreamTrack} video
   * @param {MediaStreamTrack|null} [audio]
   */
  startScreen(video, audio = null) {
    this.local.set('screen', video);
    if (audio) this.local.set('screen-audio', audio);
    else this.local.delete('screen-audio');
    this.#updatePublishing();
    this.#stateChanged();
  }

  /** Stops the screen share: its transceivers go inactive and leave the tracks map. */
  stopScreen() {
    if (!this.local.has('screen') && !this.local.has('screen-audio')) return;
    this.local.delete('screen');
    this.local.delete('screen-audio');
    this.#updatePublishing();
    this.#stateChanged();
  }

  // ---- host commands (docs/protocol.md, "Host controls") --------------------
  // Each returns false when the message could not be sent (not admitted, or
  // the connection is down). The server answers a non-host with forbidden.

  /**
   * Mutes a participant's microphone.
   * @param {string} target participant id
   * @returns {boolean}
   */
  mute(target) { return this.#send(muteMessage(target)); }

  /** Mutes every guest. @returns {boolean} */
  muteGuests() { return this.#send(muteGuestsMessage()); }

  /**
   * Removes a participant from the meeting; it cannot come back until the meeting ends.
   * @param {string} target participant id
   * @returns {boolean}
   */
  remove(target) { return this.#send(removeMessage(target)); }

  /**
   * Changes a participant's role.
   * @param {string} target participant id
   * @param {'host'|'participant'|'guest'} role
   * @returns {boolean}
   */
  setRole(target, role) { return this.#send(setRoleMessage(target, role)); }

  /**
   * Locks or unlocks the meeting: newcomers then knock in the lobby.
   * @param {boolean} locked
   * @returns {boolean}
   */
  lock(locked) { return this.#send(lockMessage(locked)); }

  /**
   * Lets a knocking newcomer in.
   * @param {string} target participant id of the knock
   * @returns {boolean}
   */
  admit(target) { return this.#send(admitMessage(target)); }

  /**
   * Turns a knocking newcomer away.
   * @param {string} target participant id of the knock
   * @returns {boolean}
   */
  deny(target) { return this.#send(denyMessage(target)); }

  /**
   * Changes the guest rules of this meeting; the fields not given keep
   * their current value.
   * @param {{guestsMayUnmute?: boolean, guestsMayPresent?: boolean}} changes
   * @returns {boolean}
   */
  setRoomSettings(changes) { return this.#send(roomSettingsMessage({ ...this.roomState, ...changes })); }

  /** Ends the meeting for everyone. @returns {boolean} */
  end() { return this.#send(endMessage()); }

  /**
   * Sends an end-to-end encryption message (announce, key or chat).
   * @param {'announce'|'key'|'chat'|'verify'} type
   * @param {{payload: string, to?: string}} fields
   * @returns {boolean} false when it could not be sent (not admitted, or the connection is down)
   */
  sendE2EE(type, fields) { return this.#send(e2eeMessage(type, fields)); }

  /** Leaves the meeting: sends leave, closes everything, emits left. */
  leave() {
    if (this.closed) return;
    const ws = this.ws;
    if (ws && ws.readyState === OPEN) {
      this.#sendOn(ws, leaveMessage());
      // The server answers bye and closes; don't wait for it longer than a second.
      this.env.setTimeout(() => ws.close(1000), 1000);
    } else {
      ws?.close(1000);
    }
    this.#end('leave');
  }

  // ---- WebSocket ----------------------------------------------------------

  #connect() {
    this.timers.reconnect = null;
    let ws;
    try {
      ws = new this.env.WebSocket(this.url);
    } catch (err) {
      console.error('conclave: cannot open the WebSocket:', err);
      this.#fatal('internal', 'The connection to the server could not be opened.');
      return;
    }
    this.ws = ws;
    this.admitted = false;
    let opened = false;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      opened = true;
      this.timeline?.mark('ws-open');
      this.#sendOn(ws, joinMessage(this.room, this.name, this.resumeToken || undefined, this.pin || undefined, this.redirected, this.ticket || undefined));
    };
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      let m;
      try {
        m = parseServerMessage(e.data);
      } catch (err) {
        console.warn('conclave: ignoring a server message:', err.message);
        return;
      }
      this.#onMessage(m);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (this.closed) return;
      if (this.everJoined) this.#status('reconnecting');
      else this.#status('connecting', this.attempt >= 2 ? 'Cannot reach the Conclave server. Retrying…' : undefined);
      let delay = reconnectDelay(this.attempt++);
      if (!opened && this.alternates.length > 0) {
        // The node does not answer: the next one of the cluster, at once
        // (docs/protocol.md, "Nodes"). The failed one goes last, in case
        // it comes back.
        const failed = this.url;
        this.url = this.alternates.shift();
        this.alternates.push(failed);
        this.redirected = true;
        delay = FAILOVER_DELAY_MS;
      }
      this.timers.reconnect = this.env.setTimeout(() => this.#connect(), delay);
    };
    ws.onerror = () => {}; // a close event follows
  }

  // Sends on the current WebSocket once admitted (until then the server
  // answers not-joined or not-admitted).
  #send(m) {
    if (this.ws && this.ws.readyState === OPEN && this.admitted) return this.#sendOn(this.ws, m);
    // Sent again after a resumed welcome; a publish is kept in pendingPublish.
    if (m.type === 'candidate' || m.type === 'restart-ice') this.outbox.push(m);
    return false;
  }

  #sendOn(ws, m) {
    const problem = clientMessageProblem(m);
    if (problem) {
      console.error(`conclave: not sending an invalid ${m.type} message: ${problem}`);
      return false;
    }
    ws.send(JSON.stringify(m));
    return true;
  }

  #onMessage(m) {
    switch (m.type) {
      case 'welcome': return this.#onWelcome(m);
      case 'waiting': return this.#onWaiting(m);
      case 'publish-answer': return this.#onPublishAnswer(m);
      case 'subscribe-offer': return this.#onSubscribeOffer(m);
      case 'candidate': return this.#onCandidate(m);
      case 'participant-joined':
      case 'participant-updated': return this.#onParticipant(m.participant);
      case 'participant-left': return this.#onParticipantLeft(m.participant);
      case 'error': return this.#onError(m);
      case 'bye': return this.#onBye(m);
      case 'redirect': return this.#onRedirect(m);
      case 'room-state': return this.#onRoomState(m.roomState);
      case 'knock': return this.#onKnock(m.participant);
      case 'knock-ended': return this.#onKnockEnded(m.participant);
      case 'muted': return this.#onMuted(m);
      case 'layers': return this.#onLayers(m);
      case 'speaker': return this.#onSpeaker(m);
      case 'ice-servers': return this.#onIceServers(m);
      case 'notice': return this.#emit('notice', { code: String(m.code ?? ''), message: String(m.message ?? '') });
      case 'announce':
      case 'key':
      case 'verify':
      case 'chat': return this.#emit('e2ee', { type: m.type, from: String(m.from ?? ''), payload: String(m.payload ?? '') });
      // Unknown types are extensions this client may ignore (docs/protocol.md, "Extensions").
      default: return undefined;
    }
  }

  #onWelcome(m) {
    const resumed = !!m.resumed && !!this.self && m.self?.id === this.self.id && !!this.pub;
    this.attempt = 0;
    this.everJoined = true;
    this.admitted = true;
    this.waitingFor = '';
    this.resumeToken = m.resume || '';
    this.self = { ...m.self, ...this.mediaState };
    if (!resumed || m.meeting) this.meeting = String(m.meeting ?? '');
    if (!resumed || m.uploadToken) this.uploadToken = String(m.uploadToken ?? '');
    if (!resumed || this.self.role !== 'host') this.knocks = new Map();
    this.roomInfo = m.roomInfo ?? this.roomInfo;
    this.iceServers = Array.isArray(m.iceServers) ? m.iceServers : [];
    this.iceTransportPolicy = m.iceTransportPolicy === 'relay' ? 'relay' : 'all';
    this.alternates = (Array.isArray(m.nodes) ? m.nodes : []).map(nodeSocketURL).filter((u) => u && u !== this.url);
    this.redirected = false;
    this.ticket = '';
    this.participants = new Map((m.participants ?? []).map((p) => [p.id, p]));
    if (resumed) {
      this.#applyIceServers();
      const queued = this.outbox;
      this.outbox = [];
      for (const c of queued) this.#send(c);
      if (this.pendingPublish) this.#send(this.pendingPublish);
      this.layout.resendAll(); // a layout sent while the connection dropped may be lost
    } else {
      this.timeline?.mark('welcome');
      this.outbox = [];
      this.speaker = '';
      this.#teardownPeers();
      this.#setupPeers();
    }
    this.#send(stateMessage(this.mediaState));
    if (!this.timers.pub && !this.timers.sub) this.#status('connected');
    this.#emit('joined', {
      self: this.self, roomInfo: this.roomInfo, resumed, meeting: this.meeting, uploadToken: this.uploadToken,
      participants: [...this.participants.values()],
    });
    this.#onRoomState(m.roomState);
    this.#emitParticipants();
    this.#emitKnocks(null);
  }

  #onWaiting(m) {
    this.attempt = 0;
    this.waitingFor = m.wait === 'lobby' ? 'lobby' : 'host';
    this.roomInfo = m.roomInfo ?? this.roomInfo;
    this.#status('waiting');
    this.#emit('waiting', { wait: this.waitingFor, roomInfo: this.roomInfo });
  }

  #onRoomState(rs) {
    if (!rs || typeof rs !== 'object') return;
    const next = { ...DEFAULT_ROOM_STATE };
    for (const k of Object.keys(next)) next[k] = !!rs[k];
    this.roomState = next;
    this.#emit('room-state', { roomState: { ...next } });
  }

  #onKnock(p) {
    if (!p?.id) return;
    this.knocks.set(p.id, p);
    this.#emitKnocks(p);
  }

  #onKnockEnded(p) {
    if (!p?.id || !this.knocks.delete(p.id)) return;
    this.#emitKnocks(null);
  }

  #emitKnocks(added) {
    this.#emit('knocks', { knocks: [...this.knocks.values()], added });
  }

  // A host muted this participant: the microphone goes off here too, so
  // that what the page shows and what the track sends agree.
  #onMuted(m) {
    const mic = this.local.get('microphone');
    if (mic) mic.enabled = false;
    if (this.self) this.self.muted = true;
    this.#stateChanged();
    const by = String(m.by ?? '');
    this.#emit('muted', { by, name: this.participants.get(by)?.name ?? '' });
  }

  #onParticipant(p) {
    if (!p?.id) return;
    if (p.id === this.self?.id) {
      // What others see of us: role and host mute come from the server, what
      // we send (audio, video, screen) is known here.
      const wasHost = this.self.role === 'host';
      for (const k of ['name', 'role', 'account', 'muted']) this.self[k] = p[k];
      if (wasHost && this.self.role !== 'host' && this.knocks.size) {
        this.knocks = new Map();
        this.#emitKnocks(null);
      }
      this.#emitParticipants();
      return;
    }
    this.participants.set(p.id, p);
    this.#emitParticipants();
  }

  #onParticipantLeft(p) {
    if (!p?.id || !this.participants.delete(p.id)) return;
    this.#emitParticipants();
  }

  #onError(m) {
    if (m.fatal && m.code === 'ticket-refused' && this.ticket && !this.ticketRetried) {
      // The node refused the ticket (it expired on the way, the node
      // restarted): back to the node the session started at, once, which
      // sends it on with a fresh one (docs/protocol.md, "Nodes").
      console.warn('conclave: admission ticket refused, joining again where the session started:', m.message);
      this.ticketRetried = true;
      this.ticket = '';
      this.#moveTo(this.homeURL, false);
      return;
    }
    if (m.fatal) {
      this.#fatal(m.code, m.message);
      return;
    }
    if (m.code === 'forbidden' && m.ref === 'state') this.#unmuteRefused();
    const w = this.publishWaiter;
    // forbidden answers a guest's screen share: the publish itself is still answered.
    if (w && m.code !== 'forbidden' && (m.id === w.id || (!m.id && m.ref === 'publish'))) {
      const err = new Error(m.message);
      err.code = m.code;
      w.reject(err);
      return;
    }
    console.warn(`conclave: server error ${m.code}${m.ref ? ` (answering ${m.ref})` : ''}: ${m.message}`);
    this.#emit('error', { code: m.code, message: m.message, fatal: false });
  }

  // Another node of the cluster is to take this participant: the policy
  // chose it, or this node is being drained. The session joins there at
  // once, with its resume token (the role and the meeting are kept), or
  // the admission ticket the redirect carries (a signed-in account).
  #onRedirect(m) {
    const url = nodeSocketURL(m.url);
    if (!url) {
      console.warn('conclave: ignoring a redirect to', m.url);
      return;
    }
    this.ticket = typeof m.ticket === 'string' ? m.ticket : '';
    this.#moveTo(url, true);
  }

  // Closes the current WebSocket and joins at url at once.
  #moveTo(url, redirected) {
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.url = url;
    this.redirected = redirected;
    this.attempt = 0;
    this.#clearTimer('reconnect');
    this.#connect();
  }

  #onBye(m) {
    const reason = m.reason || 'bye';
    this.ws?.close(1000);
    this.#end(reason);
  }

  // The server refused an unmute (a guest muted by a host, and guests may not
  // unmute): the microphone goes off again.
  #unmuteRefused() {
    const mic = this.local.get('microphone');
    if (this.self) this.self.muted = true;
    if (mic && mic.enabled !== false) {
      mic.enabled = false;
      this.#stateChanged();
    } else {
      this.#emitParticipants();
    }
  }

  #fatal(code, message) {
    this.ws?.close(1000);
    this.#emit('error', { code, message, fatal: true });
    this.#end(code, message);
  }

  #end(reason, message = '') {
    if (this.closed) return;
    this.closed = true;
    this.ws = null;
    for (const k of Object.keys(this.timers)) this.#clearTimer(k);
    this.#teardownPeers();
    this.#status('closed');
    this.#emit('left', { reason, message: message ?? '' });
  }

  // ---- peer connections ---------------------------------------------------

  #setupPeers() {
    // The client's own offers bundle everything; the server's offers decide for sub
    // (an offer without media has no BUNDLE group, which max-bundle would refuse).
    const extra = this.frames?.peerConfig() ?? {};
    const ice = { iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy };
    const pub = new this.env.RTCPeerConnection({ ...ice, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...extra });
    const sub = new this.env.RTCPeerConnection({ ...ice, rtcpMuxPolicy: 'require', ...extra });
    this.pub = pub;
    this.sub = sub;
    this.pubQueue = new SerialQueue();
    this.subQueue = new SerialQueue();
    this.paramsQueue = new SerialQueue();
    this.transceivers = new Map();
    this.publishFailures = 0;
    for (const [pc, name] of [[pub, 'pub'], [sub, 'sub']]) {
      pc.addEventListener('icecandidate', (e) => {
        if (pc !== this[name]) return;
        if (e.candidate && !e.candidate.candidate) return; // end of one generation; null ends all
        this.#send(candidateMessage(name, e.candidate));
      });
      const watch = () => this.#watchConnection(pc, name);
      pc.addEventListener('iceconnectionstatechange', watch);
      pc.addEventListener('connectionstatechange', watch);
    }
    this.#updatePublishing();
    this.#watchFirstFrame(sub);
  }

  // Marks the join's first decoded remote video frame: the subscribing
  // connection's statistics, read every FIRST_FRAME_POLL_MS until a frame
  // is decoded, the connection is replaced, or FIRST_FRAME_WATCH_MS pass.
  #watchFirstFrame(pc) {
    const tl = this.timeline;
    if (!tl || tl.has('first-frame') || typeof pc.getStats !== 'function') return;
    const until = this.env.now() + FIRST_FRAME_WATCH_MS;
    const poll = async () => {
      if (pc !== this.sub || this.closed || this.env.now() > until) return;
      try {
        const stats = await pc.getStats();
        let decoded = false;
        stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0) decoded = true; });
        if (decoded) {
          tl.mark('first-frame');
          return;
        }
      } catch { /* closed meanwhile */ }
      this.env.setTimeout(poll, FIRST_FRAME_POLL_MS);
    };
    this.env.setTimeout(poll, FIRST_FRAME_POLL_MS);
  }

  // Fresh TURN credentials (the server sends them before those of the welcome
  // expire): allocations open now keep working, and an ICE restart opens new
  // ones with these.
  #onIceServers(m) {
    if (!Array.isArray(m.iceServers)) return;
    this.iceServers = m.iceServers;
    this.#applyIceServers();
  }

  #applyIceServers() {
    for (const pc of [this.pub, this.sub]) {
      if (!pc || pc.signalingState === 'closed') continue;
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy });
      } catch (err) {
        console.warn('conclave: cannot update the TURN servers of a peer connection:', err.message);
      }
    }
  }

  #teardownPeers() {
    this.#clearTimer('pub');
    this.#clearTimer('sub');
    this.#clearTimer('retry');
    this.publishWaiter?.reject(new Abandoned('peer connection closed'));
    this.publishWaiter = null;
    this.pendingPublish = null;
    this.pubWanted = false;
    this.pubIceRestart = false;
    for (const pc of [this.pub, this.sub]) {
      try {
        pc?.close();
      } catch { /* already closed */ }
    }
    this.pub = null;
    this.sub = null;
    this.transceivers = new Map();
    this.layout.reset();
    if (this.remote.size) {
      for (const r of this.remote.values()) for (const t of r.stream.getTracks()) r.stream.removeTrack(t);
      this.remote = new Map();
      this.#emit('tracks', {});
    }
  }

  #watchConnection(pc, name) {
    if (pc !== this[name] || this.closed) return;
    const failed = pc.connectionState === 'failed' || pc.iceConnectionState === 'failed';
    const ok = pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
    if (ok) this.timeline?.mark(`${name}-ice`);
    if (pc.connectionState === 'connected') this.timeline?.mark(`${name}-dtls`);
    if (failed && !this.timers[name]) {
      console.warn(`conclave: the ${name} connection failed; restarting ICE`);
      this.#status('reconnecting');
      if (name === 'pub') {
        this.pubIceRestart = true;
        this.#requestPublish();
      } else {
        this.#send(restartIceMessage());
      }
      this.timers[name] = this.env.setTimeout(() => {
        this.timers[name] = null;
        console.warn(`conclave: the ${name} connection did not recover; joining again`);
        this.#rejoin();
      }, ICE_RECOVERY_MS);
    } else if (ok && this.timers[name]) {
      this.#clearTimer(name);
      if (!this.timers.pub && !this.timers.sub && this.ws) this.#status('connected');
    }
  }

  /** Leaves the server-side participant and joins again from scratch. */
  #rejoin() {
    if (this.closed) return;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState === OPEN) this.#sendOn(ws, leaveMessage());
    ws?.close(1000);
    this.#clearTimer('reconnect');
    this.#teardownPeers();
    this.resumeToken = '';
    this.self = null;
    this.participants = new Map();
    this.#emitParticipants();
    this.#status('reconnecting');
    this.#connect();
  }

  // ---- publishing ---------------------------------------------------------

  /** Brings the pub transceivers in line with this.local, renegotiating if needed. */
  #updatePublishing() {
    const pc = this.pub;
    if (!pc) return; // #setupPeers calls again
    this.pubQueue.run(async () => {
      if (pc !== this.pub) return;
      let renegotiate = false;
      for (const source of PUBLISH_ORDER) renegotiate = (await this.#syncSource(pc, source)) || renegotiate;
      if (renegotiate) this.pubWanted = true;
    }).catch((err) => console.warn('conclave: updating published media failed:', err))
      .then(() => this.#requestPublish(false));
  }

  // Returns true when the change needs a negotiation.
  async #syncSource(pc, source) {
    const want = this.local.has(source);
    const track = this.local.get(source) ?? null;
    let tr = this.transceivers.get(source);
    if (!want) {
      if (!tr) return false;
      if (tr.sender.track) await tr.sender.replaceTrack(null);
      if (tr.direction === 'inactive') return false;
      tr.direction = 'inactive';
      return true;
    }
    if (!tr) {
      if (source === 'camera') this.#checkSVC();
      const stream = source === 'screen' || source === 'screen-audio' ? this.screenStream : this.cameraStream;
      const init = { direction: 'sendonly', streams: [stream] };
      const encodings = sendEncodings(source, this.videoCodec, track?.getSettings?.());
      if (encodings) init.sendEncodings = encodings;
      tr = pc.addTransceiver(track ?? KIND[source], init);
      // One transform per sender: every simulcast encoding goes through it.
      this.frames?.attachSender(tr.sender, KIND[source]);
      if (KIND[source] === 'video') this.#preferCodecs(tr);
      if (source === 'screen') {
        this.#changeParameters(tr.sender, (p) => {
          if (p.degradationPreference === SCREEN_DEGRADATION) return false;
          p.degradationPreference = SCREEN_DEGRADATION;
          return true;
        });
      }
      this.transceivers.set(source, tr);
      return true;
    }
    if (tr.sender.track !== track) await tr.sender.replaceTrack(track);
    if (tr.direction === 'sendonly') return false;
    tr.direction = 'sendonly';
    return true;
  }

  // VP9 is sent as one encoding with SVC layers (scalabilityMode). A browser
  // that ignores scalabilityMode (Firefox 153) would send one full-size VP9
  // layer that the server cannot thin out per subscriber: the camera goes
  // out as VP8 simulcast instead. Checked once, on a throwaway connection.
  #checkSVC() {
    if (this.videoCodec !== 'vp9' || this.svcChecked) return;
    this.svcChecked = true;
    let ok = false;
    let probe = null;
    try {
      probe = new this.env.RTCPeerConnection();
      const tr = probe.addTransceiver('video', { direction: 'sendonly', sendEncodings: [{ ...CAMERA_SVC }] });
      ok = tr.sender.getParameters().encodings?.[0]?.scalabilityMode === CAMERA_SVC.scalabilityMode;
    } catch { /* no SVC */ } finally {
      try { probe?.close(); } catch { /* closed */ }
    }
    if (!ok) {
      console.warn('conclave: this browser does not send VP9 SVC (scalabilityMode); sending VP8 simulcast instead');
      this.videoCodec = 'vp8';
    }
  }

  #preferCodecs(tr) {
    if (typeof tr.setCodecPreferences !== 'function') return;
    const codecs = preferVideoCodecs(this.env.videoCodecs(), this.videoCodec);
    if (!codecs) return;
    try {
      tr.setCodecPreferences(codecs);
    } catch (err) {
      console.warn('conclave: cannot set video codec preferences:', err.message);
    }
  }

  /** The publish tracks map: mid -> {source} of every sending transceiver. */
  #tracksMap() {
    const tracks = {};
    for (const [source, tr] of this.transceivers) {
      if (tr.mid != null && tr.direction === 'sendonly' && this.local.has(source)) tracks[tr.mid] = { source };
    }
    return tracks;
  }

  /**
   * Queues a negotiation of pub when one is wanted (or `force`). Requests made
   * while one is queued or running coalesce into one offer.
   */
  #requestPublish(force = true) {
    if (force) this.pubWanted = true;
    const pc = this.pub;
    if (!pc || !this.pubWanted) return;
    this.pubQueue.run(async () => {
      if (pc !== this.pub || !this.pubWanted) return;
      this.pubWanted = false;
      const iceRestart = this.pubIceRestart;
      this.pubIceRestart = false;
      if (pc.getTransceivers().length === 0) return; // nothing to publish
      await this.#negotiatePub(pc, iceRestart);
      this.publishFailures = 0;
    }).catch((err) => {
      if (err instanceof Abandoned || pc !== this.pub) return;
      this.publishFailures++;
      console.warn(`conclave: publishing failed (${err.code || err.name}): ${err.message}`);
      if (this.publishFailures > PUBLISH_RETRIES) {
        this.#emit('error', { code: err.code || 'negotiation-failed', message: 'Your camera and microphone could not be sent to the meeting.', fatal: false });
        return;
      }
      this.#clearTimer('retry');
      this.timers.retry = this.env.setTimeout(() => {
        this.timers.retry = null;
        this.#requestPublish();
      }, PUBLISH_RETRY_MS * this.publishFailures);
    });
  }

  /**
   * Changes a pub sender's parameters: `change` edits what getParameters
   * returned and says whether setParameters is needed. Changes run one at
   * a time, so that none overwrites another.
   * @param {RTCRtpSender} sender
   * @param {(p: RTCRtpSendParameters) => boolean} change
   * @returns {Promise<void>}
   */
  #changeParameters(sender, change) {
    return this.paramsQueue.run(async () => {
      if (typeof sender?.getParameters !== 'function') return;
      const p = sender.getParameters();
      if (change(p)) await sender.setParameters(p);
    }).catch((err) => console.warn('conclave: changing sender parameters failed:', err.message ?? err));
  }

  // Dynacast: the server says which layers of a published track someone
  // watches; the others are not encoded. Followed exactly, even "none".
  #onLayers(m) {
    if (!isLayersMessage(m)) return;
    const tr = [...this.transceivers.values()].find((t) => t.mid === m.mid);
    if (!tr) return; // an unknown mid, or a publication that has been replaced
    this.#changeParameters(tr.sender, (p) => applyActive(p.encodings, m.active));
  }

  #onSpeaker(m) {
    const from = String(m.from ?? '');
    if (!from || from === this.speaker) return;
    this.speaker = from;
    this.#emit('speaker', { participant: from });
  }

  async #negotiatePub(pc, iceRestart) {
    const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : undefined);
    await this.#setLocalOffer(pc, offer);
    if (pc !== this.pub) throw new Abandoned('peer connection replaced');
    const id = `publish-${++this.publishSeq}`;
    const msg = publishMessage(pc.localDescription.sdp, this.#tracksMap(), id);
    const answer = new Promise((resolve, reject) => { this.publishWaiter = { id, resolve, reject }; });
    this.pendingPublish = msg;
    if (this.#send(msg)) this.timeline?.mark('publish');
    try {
      const sdp = await answer;
      await pc.setRemoteDescription({ type: 'answer', sdp });
    } catch (err) {
      if (!(err instanceof Abandoned) && pc === this.pub && pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      throw err;
    } finally {
      if (this.publishWaiter?.id === id) this.publishWaiter = null;
      if (this.pendingPublish === msg) this.pendingPublish = null;
    }
  }

  // The offer goes in with Opus FEC and DTX on (opus.mjs); should the
  // browser refuse the changed offer, it goes in unchanged.
  async #setLocalOffer(pc, offer) {
    const sdp = mungeOpus(offer.sdp);
    if (sdp !== offer.sdp) {
      try {
        await pc.setLocalDescription({ type: 'offer', sdp });
        return;
      } catch (err) {
        console.warn('conclave: the browser refused Opus parameters in the offer:', err.message);
      }
    }
    await pc.setLocalDescription(offer);
  }

  #onPublishAnswer(m) {
    const w = this.publishWaiter;
    if (!w) {
      console.warn('conclave: ignoring a publish-answer with no offer outstanding');
      return;
    }
    this.publishWaiter = null;
    w.resolve(m.sdp);
  }

  // ---- subscribing --------------------------------------------------------

  #onSubscribeOffer(m) {
    const pc = this.sub;
    if (!pc) return;
    if (Object.keys(m.tracks ?? {}).length) this.timeline?.mark('sub-offer');
    this.subQueue.run(async () => {
      if (pc !== this.sub) return;
      await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
      if (this.frames) {
        for (const t of pc.getTransceivers()) if (t.receiver?.track) this.frames.attachReceiver(t.receiver, t.receiver.track.kind);
      }
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (pc !== this.sub) return;
      this.#send(subscribeAnswerMessage(pc.localDescription.sdp));
      this.#applyRemoteTracks(pc, m.tracks ?? {});
    }).catch((err) => console.warn('conclave: applying the subscribe offer failed:', err));
  }

  /**
   * Maps the receivers of `pc` to tiles by transceiver mid, following the
   * offer's tracks map; mids absent from the map carry nothing.
   */
  #applyRemoteTracks(pc, tracks) {
    const byMid = new Map();
    for (const t of pc.getTransceivers()) if (t.mid != null) byMid.set(t.mid, t.receiver.track);
    if (this.frames) {
      for (const t of pc.getTransceivers()) if (t.receiver) this.frames.mapReceiver(t.receiver, (t.mid != null && tracks[t.mid]?.participant) || '');
    }
    const groups = mediaGroups(tracks);
    const next = new Map();
    for (const [key, g] of groups) {
      const entry = this.remote.get(key) ?? { participant: g.participant, source: g.source, stream: new this.env.MediaStream(), videoMid: null };
      const want = [g.audio, g.video].map((mid) => (mid === null ? null : byMid.get(mid))).filter(Boolean);
      syncStream(entry.stream, want);
      entry.videoMid = g.video;
      next.set(key, entry);
    }
    for (const [key, entry] of this.remote) if (!next.has(key)) syncStream(entry.stream, []);
    this.remote = next;
    this.#syncLayout();
    this.layout.resendAll(); // the full map after every subscribe-offer
    this.#emit('tracks', {});
  }

  // The layout to report: the rendered size of every received video mid
  // whose tile has been measured (before that, the server sets no limit).
  #syncLayout() {
    const sizes = new Map();
    for (const [key, r] of this.remote) {
      const size = this.renderSizes.get(key);
      if (r.videoMid != null && size) sizes.set(r.videoMid, size);
    }
    this.layout.update(sizes);
  }

  #onCandidate(m) {
    const pc = m.pc === 'pub' ? this.pub : m.pc === 'sub' ? this.sub : null;
    if (!pc || !m.candidate) return;
    const queue = m.pc === 'pub' ? this.pubQueue : this.subQueue;
    // Queued behind any pending description, so the candidate is never early.
    queue.run(() => (pc.signalingState === 'closed' ? undefined : pc.addIceCandidate(m.candidate)))
      .catch((err) => console.warn(`conclave: ignoring a ${m.pc} candidate:`, err.message));
  }

  // ---- state and events ---------------------------------------------------

  #stateChanged() {
    if (this.self) Object.assign(this.self, this.mediaState);
    this.#send(stateMessage(this.mediaState));
    this.#emitParticipants();
  }

  #emitParticipants() {
    this.#emit('participants', { self: this.self, participants: [...this.participants.values()] });
  }

  #status(state, text) {
    text ??= { connecting: 'Connecting…', waiting: '', connected: '', reconnecting: 'Reconnecting…', closed: '' }[state] ?? '';
    this.#emit('status', { state, text });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #clearTimer(name) {
    if (this.timers[name]) this.env.clearTimeout(this.timers[name]);
    this.timers[name] = null;
  }
}

/**
 * Makes a MediaStream hold exactly the given tracks, touching nothing that
 * is already right (so a playing element does not restart).
 * @param {MediaStream} stream
 * @param {MediaStreamTrack[]} tracks
 */
export function syncStream(stream, tracks) {
  for (const t of stream.getTracks()) if (!tracks.includes(t)) stream.removeTrack(t);
  const have = stream.getTracks();
  for (const t of tracks) if (!have.includes(t)) stream.addTrack(t);
}
