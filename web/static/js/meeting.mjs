// The meeting page (/r/<alias>): the router between its screens — loading,
// prejoin, waiting, the meeting, errors and having left — and the place
// where the current call meets the views.
//
// The call (call.mjs) is the protocol session with its end-to-end
// encryption, without DOM. The views: prejoinview.mjs (preview, devices,
// name, PIN), waitingview.mjs, stageview.mjs (tiles, layouts, full
// screen, rendered sizes), controlsview.mjs (microphone, camera, screen,
// layout, leave), participantsview.mjs, chatview.mjs, e2eeview.mjs (the
// E2EE bar and badges), hostcontrols.mjs and lobby.mjs (a host's controls).
// The device identity is e2ee/device.mjs's; the media worker is
// e2ee/frames.mjs's, one per page.

import { $, showOnly } from './dom.mjs';
import { icon } from './icons.mjs';
import { aliasFromPath } from './links.mjs';
import { buildTiles } from './tiles.mjs';
import { LocalMedia } from './devices.mjs';
import { DEFAULT_ROOM_STATE } from './session.mjs';
import { Call, prepareIdentity } from './call.mjs';
import { FrameEncryption, MODES } from './e2ee/frames.mjs';
import { renderE2EE, withVerifiedNames } from './e2eeview.mjs';
import { watchTrust } from './trustwatch.mjs';
import { ChatView } from './chatview.mjs';
import { leftScreen, noticeEffect, mutedText, knockText } from './access.mjs';
import { Panels } from './panels.mjs';
import { Lobby } from './lobby.mjs';
import { HostControls } from './hostcontrols.mjs';
import { PrejoinView } from './prejoinview.mjs';
import { WaitingView } from './waitingview.mjs';
import { StageView } from './stageview.mjs';
import { ControlsView } from './controlsview.mjs';
import { ParticipantsView } from './participantsview.mjs';

const NOTICE_MS = 8000;

const screens = {
  loading: $('#screen-loading'),
  error: $('#screen-error'),
  prejoin: $('#screen-prejoin'),
  waiting: $('#screen-waiting'),
  meeting: $('#screen-meeting'),
  left: $('#screen-left'),
};
const ui = {
  title: $('#room-title'),
  status: $('#status'),
  error: $('#error'),
  retry: $('#retry'),
  locked: $('#locked'),
  banner: $('#meeting-banner'),
  notice: $('#notice'),
  leftMessage: $('#left-message'),
  leftDetail: $('#left-detail'),
  rejoin: $('#rejoin'),
  home: $('#screen-left a[href="/"]'),
  e2eeBar: $('#e2ee-bar'),
  e2eeState: $('#e2ee-state'),
  e2eeLabel: $('#e2ee-label'),
  e2eeWarning: $('#e2ee-warning'),
  meetingCode: $('#meeting-code'),
};

const alias = aliasFromPath(location.pathname).toLowerCase(); // aliases are lower case
const media = new LocalMedia();
/** @type {Call|null} the meeting being joined, waited for or attended */
let call = null;
let noticeTimer = 0;
/** The room's access state as the server last sent it. */
let roomState = { ...DEFAULT_ROOM_STATE };
/** The local participant's role when last rendered ('' before the first welcome). */
let lastRole = '';

ui.locked.prepend(icon('lock'));
const panels = new Panels();
panels.add('participants', $('#participants-panel'), $('#toggle-participants'));
panels.add('chat', $('#chat'), $('#toggle-chat'));
ui.e2eeState.addEventListener('click', () => panels.open('participants'));

// ---- end-to-end encryption -------------------------------------------------------

/** The device identity, prepared while the person is on the prejoin screen. */
const identityReady = prepareIdentity();
watchTrust(identityReady);
/** @type {FrameEncryption|null} one media worker for the page */
let frames = null;

/** The media worker, started on the first join. */
function frameEncryption() {
  if (!frames) {
    const prefer = new URLSearchParams(location.search).get('e2ee-transform') === 'encoded-streams' ? MODES.streams : '';
    frames = new FrameEncryption({ prefer });
  }
  return frames;
}

function onE2EE() {
  const e2ee = call?.e2ee;
  if (!e2ee) return;
  renderE2EE({ state: ui.e2eeState, label: ui.e2eeLabel, warning: ui.e2eeWarning, code: ui.meetingCode }, e2ee);
  render();
}

// The phases of the current (or last) join, milliseconds after Join was
// clicked (jointimeline.mjs): for the join benchmark and support.
Object.defineProperty(window, 'conclaveJoin', {
  configurable: true,
  get() { return Object.freeze((call?.joinPhases ?? []).map((p) => Object.freeze({ ...p }))); },
});

// A read-only view for tests and support: states and fingerprints, never keys.
Object.defineProperty(window, 'conclaveE2EE', {
  configurable: true,
  get() {
    const s = call?.e2ee;
    return Object.freeze({
      state: s?.state ?? 'connecting',
      code: s?.code ?? '',
      participants: Object.freeze((s?.participants ?? []).map((p) => Object.freeze({
        id: p.id, name: p.name, fingerprint: p.fingerprint, certified: p.certified, orgName: p.orgName, userId: p.userId, e2ee: p.e2ee, self: p.self,
        account: p.account, freeName: p.freeName, nameDiffers: p.nameDiffers, revoked: p.revoked, pending: p.pending, newDevice: p.newDevice, lookalike: p.lookalike,
      }))),
      warnings: Object.freeze([...(s?.warnings ?? [])]),
      senderKeyGeneration: s?.senderKeyGeneration ?? 0,
      transform: frames?.mode ?? '',
    });
  },
});

// ---- views -----------------------------------------------------------------------

const chat = new ChatView({
  panel: $('#chat'),
  toggle: $('#toggle-chat'),
  unread: $('#chat-unread'),
  log: $('#chat-log'),
  form: /** @type {HTMLFormElement} */ ($('#chat-form')),
  input: /** @type {HTMLInputElement} */ ($('#chat-input')),
  send: /** @type {HTMLButtonElement} */ ($('#chat-send')),
  file: /** @type {HTMLInputElement} */ ($('#chat-file')),
  error: $('#chat-error'),
}, {
  sendText: (text) => (call ? call.sendText(text) : Promise.reject(new Error('You are not in the meeting.'))),
  sendFile: (file) => (call ? call.sendFile(file) : Promise.reject(new Error('You are not in the meeting.'))),
  download: (descriptor) => (call ? call.download(descriptor) : Promise.reject(new Error('Files can only be downloaded during the meeting.'))),
});
const host = new HostControls({
  toolbar: $('#screen-meeting .controls'),
  before: $('#leave'),
  list: $('#participants'),
  panels,
  lobbyPanel: $('#lobby'),
  settingsPanel: $('#room-settings'),
  guestsMayUnmute: /** @type {HTMLInputElement} */ ($('#guests-may-unmute')),
  guestsMayPresent: /** @type {HTMLInputElement} */ ($('#guests-may-present')),
  confirmRemove: /** @type {HTMLDialogElement} */ ($('#confirm-remove')),
  confirmRemoveText: $('#confirm-remove-text'),
  confirmRemoveYes: $('#confirm-remove-yes'),
  confirmRemoveNo: $('#confirm-remove-no'),
  confirmEnd: /** @type {HTMLDialogElement} */ ($('#confirm-end')),
  confirmEndYes: $('#confirm-end-yes'),
  confirmEndNo: $('#confirm-end-no'),
}, () => call?.session ?? null);
const lobby = new Lobby({
  list: $('#lobby-list'),
  empty: $('#lobby-empty'),
  answer: (id, admit) => !!call && (admit ? call.session.admit(id) : call.session.deny(id)),
});
const prejoin = new PrejoinView({
  screen: screens.prejoin,
  media,
  busy: () => !!call,
  join: (name, pin) => join(name, pin),
  deviceChanged: (kind, track) => {
    const session = call?.session;
    if (kind === 'video') {
      if (session && session.mediaState.video) session.setCamera(track);
    } else if (session) {
      session.setMicrophoneTrack(track);
    }
  },
});
const waiting = new WaitingView({ media, leave: () => call?.leave() });
const stage = new StageView({ media, call: () => call, changed: () => render() });
const controls = new ControlsView({ media, call: () => call, notice, changed: () => render(), toggleLayout: () => stage.toggleLayout() });
const participants = new ParticipantsView({ host });

// ---- screens ---------------------------------------------------------------

function show(name) {
  showOnly(Object.values(screens), screens[name]);
}

function setStatus(text) {
  if (ui.status.textContent !== text) ui.status.textContent = text;
}

function showError(message, retry = false) {
  ui.error.textContent = message;
  ui.retry.hidden = !retry;
  setStatus('');
  show('error');
  if (retry) ui.retry.focus();
}

function notice(text) {
  clearTimeout(noticeTimer);
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
  if (text) noticeTimer = setTimeout(() => notice(''), NOTICE_MS);
}

function setTitle(name) {
  ui.title.textContent = name;
  document.title = `${name} · Conclave`;
}

// The page does not ask the server whether the room exists: only a join
// tells, and it answers a wrong PIN and an unknown room alike.
async function openRoom() {
  if (!alias) {
    showError('This meeting link is not valid — check the link.');
    return;
  }
  setTitle(alias);
  prejoin.open(alias);
  showPrejoin();
  await prejoin.start();
}

ui.retry.addEventListener('click', () => openRoom());

function showPrejoin() {
  prejoin.enable();
  show('prejoin');
}

// ---- the call ------------------------------------------------------------------

function join(name, pin) {
  const m = {};
  if (media.mic) m.microphone = media.mic;
  if (media.camera) m.camera = media.camera;
  roomState = { ...DEFAULT_ROOM_STATE };
  lastRole = '';
  const videoCodec = new URLSearchParams(location.search).get('video-codec') === 'vp9' ? 'vp9' : 'vp8';
  const c = new Call({ room: alias, name, pin, media: m, identity: identityReady, frames: frameEncryption(), videoCodec });
  call = c;
  chat.clear();
  c.addEventListener('chat-reset', () => chat.clear());
  c.addEventListener('chat', (e) => chat.add(e.detail));
  c.addEventListener('e2ee-state', onE2EE);
  c.addEventListener('status', (e) => setStatus(e.detail.text));
  c.addEventListener('waiting', (e) => showWaiting(e.detail));
  c.addEventListener('joined', (e) => onJoined(e.detail));
  c.addEventListener('participants', render);
  c.addEventListener('tracks', render);
  c.addEventListener('speaker', (e) => {
    stage.setSpeaker(e.detail.participant, c.session.self?.id ?? '');
    render();
  });
  let stateKnown = false;
  c.addEventListener('room-state', (e) => {
    const was = roomState;
    roomState = e.detail.roomState;
    if (stateKnown && was.locked !== roomState.locked) {
      notice(roomState.locked ? 'A host locked the meeting: newcomers wait in the lobby.' : 'A host unlocked the meeting.');
    }
    stateKnown = true;
    render();
  });
  c.addEventListener('knocks', (e) => onKnocks(e.detail));
  c.addEventListener('muted', (e) => notice(mutedText(e.detail.name)));
  c.addEventListener('notice', (e) => onNotice(e.detail));
  c.addEventListener('error', (e) => {
    if (!e.detail.fatal && e.detail.message) notice(e.detail.message); // forbidden, rate-limited, ...
  });
  c.addEventListener('left', (e) => onLeft(e.detail));
  c.join();
}

function onJoined({ roomInfo }) {
  if (roomInfo?.name) setTitle(roomInfo.name);
  ui.e2eeBar.hidden = false;
  if (screens.meeting.hidden) {
    prejoin.hidePreview();
    waiting.clear();
    show('meeting');
  }
  render();
}

/** Not admitted yet: waits for a host, or in the lobby of a locked meeting. */
function showWaiting({ wait, roomInfo }) {
  if (roomInfo?.name) setTitle(roomInfo.name);
  clearMeeting();
  waiting.render(wait, call?.session.name ?? prejoin.name);
  prejoin.hidePreview();
  if (screens.waiting.hidden) {
    show('waiting');
    waiting.focus();
  }
}

function onLeft({ reason, message }) {
  controls.stopScreenShare(false);
  call = null;
  ui.e2eeBar.hidden = true;
  ui.e2eeWarning.hidden = true;
  clearMeeting();
  waiting.clear();
  setStatus('');
  if (reason === 'room-unavailable') {
    // Wrong or missing PIN, unknown or blocked room: one answer for all.
    prejoin.setJoinError(message || 'This meeting is not available. Check the link and the PIN you were given.');
    showPrejoin();
    prejoin.start(true);
    return;
  }
  media.stop();
  if (message && reason !== 'removed') {
    showError(message, reason === 'room-full');
    return;
  }
  const ls = leftScreen(reason);
  ui.leftMessage.textContent = ls.message;
  ui.leftDetail.textContent = ls.detail;
  ui.leftDetail.hidden = !ls.detail;
  ui.rejoin.hidden = !ls.rejoin;
  show('left');
  (ls.rejoin ? ui.rejoin : ui.home).focus();
}

ui.rejoin.addEventListener('click', async () => {
  ui.rejoin.disabled = true;
  show('loading');
  try {
    const message = await media.start();
    if (message) notice(message);
    if (!call) join(prejoin.name, prejoin.pin);
  } finally {
    ui.rejoin.disabled = false;
  }
});

window.addEventListener('pagehide', () => call?.leave());

// ---- access control ------------------------------------------------------------

function onKnocks({ knocks, added }) {
  lobby.render(knocks);
  host.setLobbyCount(knocks.length);
  if (added) notice(knockText(added));
}

function onNotice(n) {
  const { banner, toast } = noticeEffect(n);
  if (banner !== null) {
    ui.banner.textContent = banner;
    ui.banner.hidden = !banner;
  }
  if (toast) notice(toast);
}

/** Tells the person about a role a host gave or took. */
function roleChanged(before, after) {
  if (!before || before === after) return;
  if (after === 'host') notice('A host made you a host of this meeting.');
  else if (before === 'host') notice('You are no longer a host of this meeting.');
  else if (after === 'guest') notice('A host made you a guest of this meeting.');
}

/** Forgets what belonged to the meeting: tiles, lobby, banners, host controls. */
function clearMeeting() {
  stage.clear();
  participants.clear();
  lobby.clear();
  host.setLobbyCount(0);
  host.detach();
  ui.banner.hidden = true;
  ui.locked.hidden = true;
}

// ---- rendering -----------------------------------------------------------------

function selfView() {
  const session = call?.session;
  const st = session?.mediaState ?? { audio: false, video: false, screen: false };
  const me = session?.self;
  return { id: me?.id ?? '', name: me?.name ?? session?.name ?? '', role: me?.role ?? '', account: !!me?.account, muted: !!me?.muted, ...st };
}

function render() {
  const session = call?.session;
  if (!session || !session.self) return; // nothing to show before the welcome
  const self = selfView();
  const e2ee = call.e2ee;
  const others = withVerifiedNames([...session.participants.values()], e2ee);
  const groups = [...session.remote].map(([key, r]) => ({ key, participant: r.participant, source: r.source }));
  stage.render(buildTiles({ self, participants: others, groups }), e2ee);
  participants.render(self, others, e2ee);
  controls.render(self, roomState, stage.speakerLayout);
  host.update(self, roomState);
  ui.locked.hidden = !roomState.locked;
  roleChanged(lastRole, self.role);
  lastRole = self.role;
}

openRoom();
