// The meeting page (/r/<alias>): prejoin (preview, devices, name, PIN),
// waiting for a host or in the lobby, the meeting itself (tiles, controls,
// participants, host controls) and the screens for errors and for having
// left. The protocol lives in session.mjs, what access control shows in
// access.mjs, the host's controls in hostcontrols.mjs and lobby.mjs.
// End-to-end encryption: the device identity in e2ee/device.mjs, the
// meeting's keys in e2ee/meetingcrypto.mjs, media in e2ee/frames.mjs (and
// its worker), what it shows in e2eeview.mjs and chatview.mjs.
// The stage: grid or speaker layout and full screen in speakerview.mjs; the
// tiles' rendered sizes (sent as `layout`) are measured by tilesizes.mjs.

import { $, h, showOnly, setData, focusedButton, restoreFocus } from './dom.mjs';
import { icon } from './icons.mjs';
import { initials } from './names.mjs';
import { aliasFromPath, signInPath } from './links.mjs';
import { nameProblem, pinProblem } from './protocol.mjs';
import { buildTiles, gridDensity } from './tiles.mjs';
import { arrange, remoteSpeaker } from './speakerview.mjs';
import { TileSizes } from './tilesizes.mjs';
import { describeMediaError, isUserCancel } from './media-errors.mjs';
import { LocalMedia } from './devices.mjs';
import { Session, DEFAULT_ROOM_STATE } from './session.mjs';
import { api, getJSON } from './api.mjs';
import { openDeviceStore, MemoryStore, loadDeviceKey, pinOrgKey, deviceCredential } from './e2ee/device.mjs';
import { MeetingCrypto } from './e2ee/meetingcrypto.mjs';
import { FrameEncryption, MODES } from './e2ee/frames.mjs';
import { renderE2EE, participantE2EE } from './e2eeview.mjs';
import { ChatView } from './chatview.mjs';
import { uploadFile, downloadFile } from './filetransfer.mjs';
import {
  waitingText, leftScreen, roleLabel, mayUnmute, mayPresent, noticeEffect, mutedText, knockText,
} from './access.mjs';
import { Panels } from './panels.mjs';
import { Lobby } from './lobby.mjs';
import { HostControls } from './hostcontrols.mjs';

const NAME_KEY = 'conclave.name';
const LAYOUT_KEY = 'conclave.layout';
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
  preview: /** @type {HTMLVideoElement} */ ($('#preview')),
  previewTile: $('#preview-tile'),
  previewAvatar: $('#preview-avatar'),
  mediaMessage: $('#media-message'),
  cameraSelect: /** @type {HTMLSelectElement} */ ($('#camera-select')),
  micSelect: /** @type {HTMLSelectElement} */ ($('#mic-select')),
  form: $('#prejoin-form'),
  name: /** @type {HTMLInputElement} */ ($('#name')),
  nameError: $('#name-error'),
  pin: /** @type {HTMLInputElement} */ ($('#pin')),
  pinError: $('#pin-error'),
  joinError: $('#join-error'),
  join: /** @type {HTMLButtonElement} */ ($('#join')),
  signIn: /** @type {HTMLAnchorElement} */ ($('#sign-in')),
  signedIn: $('#signed-in'),
  waitingMessage: $('#waiting-message'),
  waitingLeave: $('#waiting-leave'),
  waitingPreview: /** @type {HTMLVideoElement} */ ($('#waiting-preview')),
  waitingTile: $('#waiting-tile'),
  waitingAvatar: $('#waiting-avatar'),
  locked: $('#locked'),
  banner: $('#meeting-banner'),
  tiles: $('#tiles'),
  panel: $('#participants-panel'),
  list: $('#participants'),
  count: $('#participant-count'),
  notice: $('#notice'),
  mic: $('#toggle-mic'),
  cam: $('#toggle-cam'),
  screen: $('#toggle-screen'),
  people: $('#toggle-participants'),
  layout: $('#toggle-layout'),
  leave: $('#leave'),
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
/** @type {Session|null} */
let session = null;
/** @type {MediaStream|null} the screen being shared */
let screenShare = null;
let noticeTimer = 0;
/** Settles when the prejoin's camera and microphone request has. */
let mediaReady = Promise.resolve();
/** The room's access state as the server last sent it. */
let roomState = { ...DEFAULT_ROOM_STATE };
/** The local participant's role when last rendered ('' before the first welcome). */
let lastRole = '';
/** The stage: 'grid' or 'speaker' layout, the pinned and the full-screen tile keys. */
const stage = { layout: loadLayout(), pinned: '', fullscreen: '', speaker: '' };

ui.locked.prepend(icon('lock'));
const panels = new Panels();
panels.add('participants', ui.panel, ui.people);
panels.add('chat', $('#chat'), $('#toggle-chat'));
ui.e2eeState.addEventListener('click', () => panels.open('participants'));

// ---- end-to-end encryption -------------------------------------------------------

/** The device identity, prepared while the person is on the prejoin screen. */
const identityReady = prepareIdentity();
/** @type {FrameEncryption|null} one media worker for the page */
let frames = null;
/** @type {MeetingCrypto|null} the E2EE state of the current meeting */
let meetingCrypto = null;
/** @type {ReturnType<MeetingCrypto['snapshot']>|null} */
let e2ee = null;

/**
 * Loads (or makes) the device key, pins the organisation's key and, when
 * signed in, gets a credential. Never fails: without storage the key lives
 * in memory; without the organisation's key nobody is certified.
 * @returns {Promise<import('./e2ee/meetingcrypto.mjs').Identity>}
 */
async function prepareIdentity() {
  let store;
  try {
    store = await openDeviceStore();
  } catch {
    store = new MemoryStore();
  }
  const device = await loadDeviceKey(store).catch(() => loadDeviceKey(store = new MemoryStore()));
  const orgRes = await getJSON('/api/e2ee/org');
  const org = await pinOrgKey(store, orgRes.ok ? orgRes.data : null).catch(() => ({ orgId: '', name: '', key: null, changed: false }));
  const me = await getJSON('/api/me');
  const account = me.ok ? String(me.data?.user?.username ?? '') : '';
  const request = async (devicePublicKey) => {
    const r = await api('POST', '/api/e2ee/credential', { body: { devicePublicKey }, csrf: me.data?.csrf });
    return r.ok ? r.data : null;
  };
  const credential = await deviceCredential(store, device, org, { account, request }).catch(() => null);
  return { device, credential, org };
}

/** The media worker, started on the first join. */
function frameEncryption() {
  if (!frames) {
    const prefer = new URLSearchParams(location.search).get('e2ee-transform') === 'encoded-streams' ? MODES.streams : '';
    frames = new FrameEncryption({ prefer });
    frames.addEventListener('missing-key', (e) => meetingCrypto?.requestKey(e.detail.participant));
    frames.addEventListener('failed', () => onE2EE());
  }
  return frames;
}

function onE2EE() {
  if (!meetingCrypto) return;
  e2ee = meetingCrypto.snapshot();
  if (frames && !frames.available) {
    e2ee.state = 'warning';
    e2ee.warnings = ['This browser cannot encrypt media end to end: your camera and microphone are not protected.', ...e2ee.warnings];
  }
  renderE2EE({ state: ui.e2eeState, label: ui.e2eeLabel, warning: ui.e2eeWarning, code: ui.meetingCode }, e2ee);
  render();
}

// A read-only view for tests and support: states and fingerprints, never keys.
Object.defineProperty(window, 'conclaveE2EE', {
  configurable: true,
  get() {
    const s = e2ee;
    return Object.freeze({
      state: s?.state ?? 'connecting',
      code: s?.code ?? '',
      participants: Object.freeze((s?.participants ?? []).map((p) => Object.freeze({
        id: p.id, name: p.name, fingerprint: p.fingerprint, certified: p.certified, orgName: p.orgName, userId: p.userId, e2ee: p.e2ee, self: p.self,
      }))),
      warnings: Object.freeze([...(s?.warnings ?? [])]),
      senderKeyGeneration: s?.senderKeyGeneration ?? 0,
      transform: frames?.mode ?? '',
    });
  },
});

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
  sendText: (text) => (meetingCrypto ? meetingCrypto.sendText(text) : Promise.reject(new Error('You are not in the meeting.'))),
  sendFile: async (file) => {
    if (!meetingCrypto || !session) throw new Error('You are not in the meeting.');
    const descriptor = await uploadFile(file, session.uploadToken);
    await meetingCrypto.sendFile(descriptor);
  },
  download: (descriptor) => {
    if (!session) return Promise.reject(new Error('Files can only be downloaded during the meeting.'));
    return downloadFile(descriptor, session.uploadToken);
  },
});
const host = new HostControls({
  toolbar: $('#screen-meeting .controls'),
  before: ui.leave,
  list: ui.list,
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
}, () => session);
const lobby = new Lobby({
  list: $('#lobby-list'),
  empty: $('#lobby-empty'),
  answer: (id, admit) => !!session && (admit ? session.admit(id) : session.deny(id)),
});

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

function setFieldError(input, el, text) {
  el.textContent = text;
  el.hidden = !text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function setJoinError(text) {
  ui.joinError.textContent = text;
  ui.joinError.hidden = !text;
}

function setTitle(name) {
  ui.title.textContent = name;
  document.title = `${name} · Conclave`;
}

// ---- opening -------------------------------------------------------------------

// The page does not ask the server whether the room exists: only a join
// tells, and it answers a wrong PIN and an unknown room alike.
async function openRoom() {
  if (!alias) {
    showError('This meeting link is not valid — check the link.');
    return;
  }
  setTitle(alias);
  ui.signIn.href = signInPath(alias);
  checkSignedIn();
  showPrejoin();
  await startPreview();
}

ui.retry.addEventListener('click', () => openRoom());

/** Shows who is signed in, if anyone: the WebSocket carries the same session cookie. */
async function checkSignedIn() {
  const res = await getJSON('/api/me');
  const u = res.ok ? res.data?.user : null;
  if (!u) return;
  const name = u.displayName || u.username || '';
  ui.signedIn.textContent = `Signed in as ${name}`;
  ui.signedIn.hidden = false;
  ui.signIn.hidden = true;
  if (!ui.name.value && name) {
    ui.name.value = name;
    ui.previewAvatar.textContent = initials(name);
  }
}

// ---- prejoin -----------------------------------------------------------------

function showPrejoin() {
  ui.join.disabled = false;
  show('prejoin');
}

/**
 * Starts the camera and microphone unless they run already (back from a
 * refused join), then puts focus where the person continues.
 * @param {boolean} [focusPin] focus the PIN field (the join was refused)
 */
async function startPreview(focusPin = false) {
  ui.name.value ||= loadName();
  if (!media.mic && !media.camera) {
    mediaReady = media.start();
    const message = await mediaReady;
    ui.mediaMessage.textContent = message;
    ui.mediaMessage.hidden = !message;
  }
  showPreview();
  if (focusPin) {
    ui.pin.focus();
    ui.pin.select();
  }
  await fillDevices();
  if (focusPin || screens.prejoin.hidden) return;
  if (!ui.name.value) ui.name.focus();
  else ui.join.focus();
}

function showPreview() {
  const cam = media.camera;
  ui.preview.srcObject = cam ? new MediaStream([cam]) : null;
  ui.previewTile.classList.toggle('no-video', !cam);
  ui.previewAvatar.textContent = initials(ui.name.value);
}

async function fillDevices() {
  const devices = await media.devices().catch(() => ({ audio: [], video: [] }));
  fillSelect(ui.cameraSelect, devices.video, media.deviceId('video'), 'Camera', 'No camera available');
  fillSelect(ui.micSelect, devices.audio, media.deviceId('audio'), 'Microphone', 'No microphone available');
}

function fillSelect(select, list, current, label, none) {
  select.replaceChildren();
  if (list.length === 0) {
    select.append(h('option', { value: '' }, none));
    select.disabled = true;
    return;
  }
  select.disabled = false;
  list.forEach((d, i) => select.append(h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${label} ${i + 1}`)));
  if (current) select.value = current;
}

async function switchDevice(kind, select) {
  if (!select.value) return;
  try {
    const track = await media.use(kind, select.value);
    if (kind === 'video') {
      showPreview();
      if (session && session.mediaState.video) session.setCamera(track);
    } else if (session) {
      session.setMicrophoneTrack(track);
    }
    ui.mediaMessage.hidden = true;
  } catch (err) {
    ui.mediaMessage.textContent = describeMediaError(err, kind === 'video' ? 'camera' : 'microphone');
    ui.mediaMessage.hidden = false;
  }
}

ui.cameraSelect.addEventListener('change', () => switchDevice('video', ui.cameraSelect));
ui.micSelect.addEventListener('change', () => switchDevice('audio', ui.micSelect));
ui.name.addEventListener('input', () => {
  ui.previewAvatar.textContent = initials(ui.name.value);
  setFieldError(ui.name, ui.nameError, '');
});
ui.pin.addEventListener('input', () => {
  // Spaces and dashes people copy along with a PIN are not part of it.
  const cleaned = ui.pin.value.replace(/[\s-]/g, '');
  if (cleaned !== ui.pin.value) ui.pin.value = cleaned;
  setFieldError(ui.pin, ui.pinError, '');
  setJoinError('');
});
navigator.mediaDevices?.addEventListener?.('devicechange', () => {
  if (!screens.prejoin.hidden) fillDevices();
});

function loadName() {
  try {
    return localStorage.getItem(NAME_KEY) || '';
  } catch {
    return '';
  }
}

function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch { /* storage disabled */ }
}

ui.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (session) return;
  const name = ui.name.value.trim();
  const problem = nameProblem(name);
  setFieldError(ui.name, ui.nameError, problem);
  if (problem) {
    ui.name.focus();
    return;
  }
  const pin = ui.pin.value.trim();
  const pinText = pinProblem(pin);
  setFieldError(ui.pin, ui.pinError, pinText);
  if (pinText) {
    ui.pin.focus();
    return;
  }
  saveName(name);
  setJoinError('');
  ui.join.disabled = true; // until the server answers: welcome, waiting or a refusal
  await mediaReady; // a Join clicked before the browser answered publishes what it then gives
  if (!session) join(name, pin);
});

// ---- meeting -----------------------------------------------------------------

function join(name, pin) {
  const m = {};
  if (media.mic) m.microphone = media.mic;
  if (media.camera) m.camera = media.camera;
  roomState = { ...DEFAULT_ROOM_STATE };
  lastRole = '';
  const fe = frameEncryption();
  const videoCodec = new URLSearchParams(location.search).get('video-codec') === 'vp9' ? 'vp9' : 'vp8';
  const s = new Session({ room: alias, name, pin, media: m, frames: fe, videoCodec });
  session = s;
  meetingCrypto?.stop();
  const mc = new MeetingCrypto({ identity: identityReady, send: (type, fields) => s.sendE2EE(type, fields), frames: fe });
  meetingCrypto = mc;
  e2ee = null;
  chat.clear();
  for (const type of ['state', 'participants', 'code', 'warnings']) mc.addEventListener(type, () => { if (meetingCrypto === mc) onE2EE(); });
  mc.addEventListener('chat', (e) => { if (meetingCrypto === mc) chat.add(e.detail); });
  s.addEventListener('joined', (e) => {
    const d = e.detail;
    if (d.resumed) {
      mc.resumed();
      return;
    }
    chat.clear();
    mc.start({ meetingId: d.meeting || `room:${alias}`, selfId: d.self.id, name: d.self.name || name, participants: d.participants });
  });
  s.addEventListener('e2ee', (e) => mc.receive(e.detail));
  s.addEventListener('participants', (e) => mc.setServerParticipants(e.detail.participants));
  s.addEventListener('status', (e) => setStatus(e.detail.text));
  s.addEventListener('waiting', (e) => showWaiting(e.detail));
  s.addEventListener('joined', (e) => onJoined(e.detail));
  s.addEventListener('participants', render);
  s.addEventListener('tracks', render);
  s.addEventListener('speaker', (e) => {
    stage.speaker = remoteSpeaker(stage.speaker, e.detail.participant, s.self?.id ?? '');
    render();
  });
  let stateKnown = false;
  s.addEventListener('room-state', (e) => {
    const was = roomState;
    roomState = e.detail.roomState;
    if (stateKnown && was.locked !== roomState.locked) {
      notice(roomState.locked ? 'A host locked the meeting: newcomers wait in the lobby.' : 'A host unlocked the meeting.');
    }
    stateKnown = true;
    render();
  });
  s.addEventListener('knocks', (e) => onKnocks(e.detail));
  s.addEventListener('muted', (e) => notice(mutedText(e.detail.name)));
  s.addEventListener('notice', (e) => onNotice(e.detail));
  s.addEventListener('error', (e) => {
    if (!e.detail.fatal && e.detail.message) notice(e.detail.message); // forbidden, rate-limited, ...
  });
  s.addEventListener('left', (e) => onLeft(e.detail));
  s.join();
}

function onJoined({ roomInfo }) {
  if (roomInfo?.name) setTitle(roomInfo.name);
  ui.e2eeBar.hidden = false;
  if (screens.meeting.hidden) {
    ui.preview.srcObject = null;
    ui.waitingPreview.srcObject = null;
    show('meeting');
  }
  render();
}

/** Not admitted yet: waits for a host, or in the lobby of a locked meeting. */
function showWaiting({ wait, roomInfo }) {
  if (roomInfo?.name) setTitle(roomInfo.name);
  clearMeeting();
  ui.waitingMessage.textContent = waitingText(wait);
  const cam = media.camera;
  if (ui.waitingPreview.srcObject?.getVideoTracks?.()[0] !== cam) ui.waitingPreview.srcObject = cam ? new MediaStream([cam]) : null;
  ui.waitingTile.classList.toggle('no-video', !cam);
  ui.waitingAvatar.textContent = initials(session?.name ?? ui.name.value);
  ui.preview.srcObject = null;
  if (screens.waiting.hidden) {
    show('waiting');
    ui.waitingLeave.focus();
  }
}

ui.waitingLeave.addEventListener('click', () => session?.leave());

function onLeft({ reason, message }) {
  stopScreenShare(false);
  session = null;
  meetingCrypto?.stop();
  meetingCrypto = null;
  e2ee = null;
  ui.e2eeBar.hidden = true;
  ui.e2eeWarning.hidden = true;
  clearMeeting();
  ui.waitingPreview.srcObject = null;
  setStatus('');
  if (reason === 'room-unavailable') {
    // Wrong or missing PIN, unknown or blocked room: one answer for all.
    setJoinError(message || 'This meeting is not available. Check the link and the PIN you were given.');
    showPrejoin();
    startPreview(true);
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

ui.leave.addEventListener('click', () => session?.leave());

ui.rejoin.addEventListener('click', async () => {
  ui.rejoin.disabled = true;
  show('loading');
  try {
    const message = await media.start();
    if (message) notice(message);
    if (!session) join(ui.name.value.trim() || loadName(), ui.pin.value.trim());
  } finally {
    ui.rejoin.disabled = false;
  }
});

window.addEventListener('pagehide', () => session?.leave());

// Microphone: mute is track.enabled; without a microphone, ask for one.
ui.mic.addEventListener('click', async () => {
  if (!session) return;
  if (media.mic) {
    session.setMicrophoneEnabled(!session.mediaState.audio);
    return;
  }
  try {
    session.setMicrophoneTrack(await media.acquire('audio'));
  } catch (err) {
    notice(describeMediaError(err, 'microphone'));
  }
});

// Camera: off releases the device; on acquires it again.
ui.cam.addEventListener('click', async () => {
  if (!session) return;
  if (session.mediaState.video) {
    session.setCamera(null);
    media.stopCamera();
    render();
    return;
  }
  ui.cam.disabled = true;
  try {
    const track = await media.acquire('video');
    if (session) session.setCamera(track);
    else media.stopCamera();
  } catch (err) {
    notice(describeMediaError(err, 'camera'));
  } finally {
    ui.cam.disabled = false;
  }
});

// Screen: getDisplayMedia must be called from the click itself.
ui.screen.addEventListener('click', () => {
  if (!session) return;
  if (screenShare) {
    stopScreenShare(true);
    return;
  }
  if (!navigator.mediaDevices?.getDisplayMedia) {
    notice('This browser cannot share a screen.');
    return;
  }
  navigator.mediaDevices.getDisplayMedia({ video: true, audio: true }).then((stream) => {
    if (!session) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    const video = stream.getVideoTracks()[0];
    const audio = stream.getAudioTracks()[0] ?? null;
    if (!video) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    if ('contentHint' in video) video.contentHint = 'detail';
    screenShare = stream;
    video.addEventListener('ended', () => {
      if (screenShare === stream) stopScreenShare(true);
    });
    session.startScreen(video, audio);
  }, (err) => {
    if (!isUserCancel(err)) notice(`Screen sharing failed: ${err.message || err.name}`);
  });
});

// A host withdrew the guests' right to present while this guest shared.
function stopForbiddenShare() {
  if (!screenShare) return;
  stopScreenShare(true);
  notice('Guests may not share their screen in this meeting any more.');
}

function stopScreenShare(tellSession) {
  if (!screenShare) return;
  const s = screenShare;
  screenShare = null;
  s.getTracks().forEach((t) => t.stop());
  if (tellSession) session?.stopScreen();
}

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
  stage.pinned = '';
  stage.fullscreen = '';
  stage.speaker = '';
  clearTiles();
  lobby.clear();
  host.setLobbyCount(0);
  host.detach();
  ui.banner.hidden = true;
  ui.locked.hidden = true;
}

// ---- rendering -----------------------------------------------------------------

/** key -> {root, video, avatar, name, mic, sig, participant, source, pin, full} */
const tileEls = new Map();

/** The rendered size of every remote tile goes to the server as `layout`. */
const tileSizes = new TileSizes((key, size) => {
  const el = tileEls.get(key);
  if (el && session) session.setRenderSize(el.participant, el.source, size);
});

function selfView() {
  const st = session?.mediaState ?? { audio: false, video: false, screen: false };
  const me = session?.self;
  return { id: me?.id ?? '', name: me?.name ?? session?.name ?? '', role: me?.role ?? '', account: !!me?.account, muted: !!me?.muted, ...st };
}

function render() {
  if (!session || !session.self) return; // nothing to show before the welcome
  const self = selfView();
  const others = [...session.participants.values()];
  const groups = [...session.remote].map(([key, r]) => ({ key, participant: r.participant, source: r.source }));
  renderTiles(buildTiles({ self, participants: others, groups }));
  renderParticipants(self, others);
  renderControls(self);
  host.update(self, roomState);
  ui.locked.hidden = !roomState.locked;
  roleChanged(lastRole, self.role);
  lastRole = self.role;
}

function renderTiles(tiles) {
  if (stage.pinned && !tiles.some((t) => t.key === stage.pinned)) stage.pinned = '';
  const a = arrange(tiles, stage);
  stage.fullscreen = a.fullscreen;
  const byKey = new Map(tiles.map((t) => [t.key, t]));
  const seen = new Set();
  a.order.forEach((key, i) => {
    const t = byKey.get(key);
    let el = tileEls.get(key);
    if (!el) {
      el = createTile(t);
      tileEls.set(key, el);
    }
    seen.add(key);
    updateTile(el, t);
    updateStage(el, t, a);
    if (ui.tiles.children[i] !== el.root) ui.tiles.insertBefore(el.root, ui.tiles.children[i] ?? null);
    if (!t.self) {
      tileSizes.observe(key, el.root, t.video);
      tileSizes.setVideo(key, t.video);
    }
  });
  for (const [key, el] of tileEls) {
    if (seen.has(key)) continue;
    tileSizes.unobserve(key);
    if (!el.self) session?.setRenderSize(el.participant, el.source, null);
    el.video.srcObject = null;
    el.root.remove();
    tileEls.delete(key);
  }
  ui.tiles.dataset.count = String(tiles.length);
  setData(ui.tiles, 'density', gridDensity(tiles.length) || null);
  ui.tiles.dataset.layout = stage.layout;
  ui.tiles.classList.toggle('has-fullscreen', !!a.fullscreen);
}

/** Where a tile sits on the stage, whether it is in full screen, whether its participant speaks. */
function updateStage(el, t, a) {
  setData(el.root, 'slot', a.slots.get(t.key) ?? 'grid');
  const full = t.key === a.fullscreen;
  el.root.classList.toggle('fullscreen', full);
  const speaking = t.source === 'camera' && !!session?.speaker && t.participant === session.speaker;
  el.root.classList.toggle('speaking', speaking);
  setData(el.root, 'speaking', speaking ? 'true' : null);
  setPressed(el.full, full, full ? 'fullscreen-exit' : 'fullscreen', full ? `Leave full screen (${t.name})` : `Full screen (${t.name})`);
  const pinned = t.key === stage.pinned;
  setPressed(el.pin, pinned, 'pin', pinned ? `Unpin ${t.name}` : `Pin ${t.name} to the large view`);
}

function setPressed(button, on, iconName, label) {
  button.setAttribute('aria-pressed', String(on));
  if (button.getAttribute('aria-label') !== label) {
    button.setAttribute('aria-label', label);
    button.title = label;
  }
  const old = button.querySelector('svg');
  if (old?.dataset.icon === iconName) return;
  const svg = icon(iconName);
  svg.dataset.icon = iconName;
  if (old) old.replaceWith(svg);
  else button.append(svg);
}

function toggleFullscreen(key) {
  stage.fullscreen = stage.fullscreen === key ? '' : key;
  render();
}

function togglePin(key) {
  stage.pinned = stage.pinned === key ? '' : key;
  if (stage.pinned) setLayout('speaker');
  else render();
}

function setLayout(layout) {
  stage.layout = layout === 'speaker' ? 'speaker' : 'grid';
  try {
    localStorage.setItem(LAYOUT_KEY, stage.layout);
  } catch { /* storage disabled */ }
  render();
}

function loadLayout() {
  try {
    return localStorage.getItem(LAYOUT_KEY) === 'speaker' ? 'speaker' : 'grid';
  } catch {
    return 'grid';
  }
}

ui.layout.addEventListener('click', () => setLayout(stage.layout === 'speaker' ? 'grid' : 'speaker'));
document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape' || !stage.fullscreen || e.defaultPrevented) return;
  const key = stage.fullscreen;
  toggleFullscreen(key);
  tileEls.get(key)?.full.focus();
});

function clearTiles() {
  renderTiles([]);
  ui.list.replaceChildren();
}

function createTile(t) {
  const video = /** @type {HTMLVideoElement} */ (h('video', { autoplay: true, playsinline: true }));
  if (t.self) video.muted = true;
  const avatar = h('div', { class: 'avatar', 'aria-hidden': 'true' });
  const mic = h('span', { class: 'mic-off', role: 'img', 'aria-label': 'Microphone off', title: 'Microphone off' }, icon('mic-off'));
  const hostMuted = h('span', { class: 'muted-by-host', role: 'img', 'aria-label': 'Muted by a host', title: 'Muted by a host' }, icon('mic-off'));
  const name = h('span', { class: 'name' });
  const role = h('span', { class: 'role' });
  const mark = h('span', { class: 'e2ee-mark', title: 'This participant is not end-to-end verified: it gets no keys and its media is not shown decrypted.', hidden: true }, 'Not end-to-end');
  const label = h('div', { class: 'label' }, mic, hostMuted, name, role, mark);
  const root = h('div', { class: 'tile' }, video, avatar, label);
  const pin = h('button', { type: 'button', class: 'pin', 'aria-pressed': 'false' });
  const full = h('button', { type: 'button', class: 'fullscreen', 'aria-pressed': 'false' });
  pin.addEventListener('click', () => togglePin(t.key));
  full.addEventListener('click', () => toggleFullscreen(t.key));
  root.append(h('div', { class: 'tile-actions' }, pin, full));
  root.addEventListener('dblclick', (e) => {
    if (/** @type {Element} */ (e.target).closest('.tile-actions')) return;
    toggleFullscreen(t.key);
  });
  return { root, video, avatar, name, mic, hostMuted, role, mark, sig: '', participant: t.participant, source: t.source, self: t.self, pin, full };
}

function updateTile(el, t) {
  setData(el.root, 'participant', t.participant);
  setData(el.root, 'source', t.source);
  setData(el.root, 'name', t.name);
  setData(el.root, 'self', t.self ? 'true' : null);
  setData(el.root, 'role', t.role || null);
  setData(el.root, 'muted', t.muted ? 'true' : null);
  const state = t.self ? (e2ee?.participants.find((p) => p.self)?.e2ee ?? 'connecting') : e2eeOf(t.participant);
  setData(el.root, 'e2ee', state);
  el.mark.hidden = state !== 'unverified';
  const badge = roleLabel(t.role);
  if (el.role.textContent !== badge) el.role.textContent = badge;
  el.role.hidden = !badge;
  el.hostMuted.hidden = !t.muted;
  el.root.classList.toggle('no-video', !t.video);
  el.root.classList.toggle('mirrored', t.self);
  const label = t.source === 'screen' ? `${t.name}'s screen` : t.self ? `${t.name} (you)` : t.name;
  if (el.name.textContent !== label) el.name.textContent = label;
  el.root.setAttribute('aria-label', label);
  el.avatar.textContent = initials(t.name);
  el.mic.hidden = t.audio || t.muted;

  let stream = null;
  if (t.self) {
    const cam = media.camera;
    stream = cam && t.video ? (el.selfStream?.getVideoTracks()[0] === cam ? el.selfStream : new MediaStream([cam])) : null;
    el.selfStream = stream;
  } else {
    stream = session?.streamFor(t.participant, t.source) ?? null;
  }
  const sig = stream ? stream.getTracks().map((x) => x.id).sort().join(',') : '';
  if (el.video.srcObject !== stream || el.sig !== sig) {
    el.sig = sig;
    el.video.srcObject = stream;
    if (stream) el.video.play().catch(() => {}); // autoplay may wait for a gesture
  }
}

/**
 * A participant's end-to-end state as the page shows it.
 * @param {string} id
 * @returns {'verified'|'connecting'|'unverified'}
 */
function e2eeOf(id) {
  return e2ee?.participants.find((p) => p.id === id && !p.self)?.e2ee ?? 'connecting';
}

function renderParticipants(self, others) {
  const people = [{ ...self, self: true }, ...others.map((p) => ({ ...p, self: false }))];
  const views = new Map((e2ee?.participants ?? []).map((v) => [v.self ? '\u0000self' : v.id, v]));
  const isHost = self.role === 'host';
  const items = people.map((p) => {
    const badge = roleLabel(p.role);
    const li = h('li', { dataset: { participant: p.id, audio: String(!!p.audio), video: String(!!p.video) } },
      h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(p.name)),
      h('span', { class: 'name' }, p.self ? `${p.name} (you)` : p.name),
      badge ? h('span', { class: 'role' }, badge) : null,
      h('span', { class: 'state' },
        p.muted
          ? h('span', { role: 'img', 'aria-label': 'muted by a host', title: 'Muted by a host', class: 'off muted-by-host' }, icon('mic-off'))
          : h('span', { role: 'img', 'aria-label': p.audio ? 'microphone on' : 'microphone off', class: p.audio ? 'on' : 'off' }, icon(p.audio ? 'mic' : 'mic-off')),
        h('span', { role: 'img', 'aria-label': p.video ? 'camera on' : 'camera off', class: p.video ? 'on' : 'off' }, icon(p.video ? 'camera' : 'camera-off')),
        p.screen ? h('span', { role: 'img', 'aria-label': 'sharing screen', class: 'on' }, icon('screen')) : null),
      isHost && !p.self ? host.actionsFor(p) : null);
    if (p.role) li.dataset.role = p.role;
    if (p.muted) li.dataset.muted = 'true';
    if (p.self) li.dataset.self = 'true';
    li.append(participantE2EE(li, views.get(p.self ? '\u0000self' : p.id)));
    return li;
  });
  // Verified announcements of participants the server does not list: the
  // server may be hiding them from its list, or injecting them.
  for (const v of views.values()) {
    if (v.self || v.listed) continue;
    const li = h('li', { dataset: { participant: v.id, ghost: 'true' }, title: 'The server does not list this participant, but its announcement verified' },
      h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(v.name)),
      h('span', { class: 'name' }, `${v.name} (not listed by the server)`));
    li.append(participantE2EE(li, v));
    items.push(li);
  }
  const focused = focusedButton(ui.list);
  ui.list.replaceChildren(...items);
  restoreFocus(ui.list, focused);
  ui.count.textContent = String(people.length);
}

function renderControls(self) {
  setToggle(ui.mic, self.audio, self.audio ? 'mic' : 'mic-off', self.audio ? 'Mute microphone' : 'Unmute microphone');
  const unmuteAllowed = self.audio || mayUnmute(self, roomState);
  ui.mic.disabled = !unmuteAllowed;
  if (!unmuteAllowed) ui.mic.title = 'A host muted you, and guests may not unmute in this meeting.';
  setToggle(ui.cam, self.video, self.video ? 'camera' : 'camera-off', self.video ? 'Turn camera off' : 'Turn camera on');
  const presentAllowed = mayPresent(self, roomState);
  if (!presentAllowed && screenShare) queueMicrotask(stopForbiddenShare); // not from inside a render
  ui.screen.hidden = !presentAllowed;
  ui.screen.disabled = !presentAllowed;
  setToggle(ui.screen, self.screen, 'screen', self.screen ? 'Stop sharing your screen' : 'Share your screen');
  const speakerLayout = stage.layout === 'speaker';
  setToggle(ui.layout, speakerLayout, speakerLayout ? 'layout-speaker' : 'layout-grid', speakerLayout ? 'Show everyone alike (grid)' : 'Show the speaker large (speaker layout)');
  if (!ui.people.querySelector('svg')) ui.people.prepend(icon('people'));
  const chatToggle = $('#toggle-chat');
  if (!chatToggle.querySelector('svg')) chatToggle.prepend(icon('chat'));
  if (!ui.leave.querySelector('svg')) ui.leave.prepend(icon('leave'));
}

function setToggle(button, on, iconName, title) {
  button.setAttribute('aria-pressed', String(on));
  button.title = title;
  const old = button.querySelector('svg');
  if (old?.dataset.icon === iconName) return;
  const svg = icon(iconName);
  svg.dataset.icon = iconName;
  if (old) old.replaceWith(svg);
  else button.prepend(svg);
}

openRoom();
