// The meeting page (/r/<alias>): room check, prejoin (preview, devices,
// name), the meeting itself (tiles, controls, participants) and the screens
// for errors and for having left. The protocol lives in session.mjs.

import { $, h, showOnly, setData } from './dom.mjs';
import { icon } from './icons.mjs';
import { initials } from './names.mjs';
import { aliasFromPath } from './links.mjs';
import { nameProblem } from './protocol.mjs';
import { buildTiles } from './tiles.mjs';
import { describeMediaError, isUserCancel } from './media-errors.mjs';
import { LocalMedia } from './devices.mjs';
import { Session } from './session.mjs';
import { getJSON } from './api.mjs';

const NAME_KEY = 'conclave.name';
const NOTICE_MS = 8000;

const screens = {
  loading: $('#screen-loading'),
  error: $('#screen-error'),
  prejoin: $('#screen-prejoin'),
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
  join: $('#join'),
  tiles: $('#tiles'),
  panel: $('#participants-panel'),
  list: $('#participants'),
  count: $('#participant-count'),
  notice: $('#notice'),
  mic: $('#toggle-mic'),
  cam: $('#toggle-cam'),
  screen: $('#toggle-screen'),
  people: $('#toggle-participants'),
  leave: $('#leave'),
  leftMessage: $('#left-message'),
  leftDetail: $('#left-detail'),
  rejoin: $('#rejoin'),
};

const alias = aliasFromPath(location.pathname).toLowerCase(); // aliases are lower case
const media = new LocalMedia();
/** @type {Session|null} */
let session = null;
/** @type {MediaStream|null} the screen being shared */
let screenShare = null;
let noticeTimer = 0;
let errorShown = false;
/** Settles when the prejoin's camera and microphone request has. */
let mediaReady = Promise.resolve();

// ---- screens ---------------------------------------------------------------

function show(name) {
  showOnly(Object.values(screens), screens[name]);
}

function setStatus(text) {
  if (ui.status.textContent !== text) ui.status.textContent = text;
}

function showError(message, retry = false) {
  errorShown = true;
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

// ---- room check --------------------------------------------------------------

async function openRoom() {
  show('loading');
  if (!alias) {
    showError('This meeting link is not valid — check the link.');
    return;
  }
  const res = await getJSON(`/api/room/${encodeURIComponent(alias)}`);
  if (res.network) {
    showError('Cannot reach the Conclave server. Check your network connection, then retry.', true);
    return;
  }
  if (res.status === 404) {
    showError('This meeting does not exist — check the link.');
    return;
  }
  if (!res.ok) {
    showError(res.error?.message || `The server could not open this meeting (HTTP ${res.status}).`, true);
    return;
  }
  const roomName = res.data?.name || alias;
  ui.title.textContent = roomName;
  document.title = `${roomName} · Conclave`;
  errorShown = false;
  show('prejoin');
  await startPreview();
}

ui.retry.addEventListener('click', () => openRoom());

// ---- prejoin -----------------------------------------------------------------

async function startPreview() {
  ui.name.value ||= loadName();
  mediaReady = media.start();
  const message = await mediaReady;
  ui.mediaMessage.textContent = message;
  ui.mediaMessage.hidden = !message;
  showPreview();
  await fillDevices();
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
  ui.nameError.hidden = true;
  ui.name.removeAttribute('aria-invalid');
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
  if (problem) {
    ui.nameError.textContent = problem;
    ui.nameError.hidden = false;
    ui.name.setAttribute('aria-invalid', 'true');
    ui.name.focus();
    return;
  }
  saveName(name);
  ui.join.disabled = true;
  await mediaReady; // a Join clicked before the browser answered publishes what it then gives
  ui.join.disabled = false;
  if (!session) join(name);
});

// ---- meeting -----------------------------------------------------------------

function join(name) {
  const m = {};
  if (media.mic) m.microphone = media.mic;
  if (media.camera) m.camera = media.camera;
  ui.preview.srcObject = null;
  errorShown = false;
  session = new Session({ room: alias, name, media: m });
  session.addEventListener('status', (e) => setStatus(e.detail.text));
  session.addEventListener('participants', render);
  session.addEventListener('tracks', render);
  session.addEventListener('joined', (e) => {
    if (e.detail.roomInfo?.name) ui.title.textContent = e.detail.roomInfo.name;
  });
  session.addEventListener('error', (e) => {
    if (e.detail.fatal) showError(e.detail.message || 'The meeting ended because of an error.', e.detail.code === 'room-full');
    else if (e.detail.message) notice(e.detail.message);
  });
  session.addEventListener('left', (e) => onLeft(e.detail.reason));
  show('meeting');
  render();
  session.join();
}

function onLeft(reason) {
  stopScreenShare(false);
  media.stop();
  session = null;
  clearTiles();
  if (errorShown) return; // the error screen says why
  const detail = {
    leave: '',
    replaced: 'You joined this meeting from another window or tab.',
    'server-shutdown': 'The server is restarting. Rejoin in a moment.',
  }[reason] ?? 'The server ended your presence in the meeting.';
  ui.leftMessage.textContent = reason === 'leave' ? 'You left the meeting' : 'You are no longer in the meeting';
  ui.leftDetail.textContent = detail;
  setStatus('');
  show('left');
  ui.rejoin.focus();
}

ui.leave.addEventListener('click', () => session?.leave());

ui.rejoin.addEventListener('click', async () => {
  ui.rejoin.disabled = true;
  try {
    const message = await media.start();
    if (message) notice(message);
    join(ui.name.value.trim() || loadName());
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

function stopScreenShare(tellSession) {
  if (!screenShare) return;
  const s = screenShare;
  screenShare = null;
  s.getTracks().forEach((t) => t.stop());
  if (tellSession) session?.stopScreen();
}

ui.people.addEventListener('click', () => {
  ui.panel.hidden = !ui.panel.hidden;
  ui.people.setAttribute('aria-pressed', String(!ui.panel.hidden));
});

// ---- rendering -----------------------------------------------------------------

/** key -> {root, video, avatar, name, mic, sig} */
const tileEls = new Map();

function selfView() {
  const st = session?.mediaState ?? { audio: false, video: false, screen: false };
  return { id: session?.self?.id ?? '', name: session?.self?.name ?? session?.name ?? '', ...st };
}

function render() {
  if (!session) return;
  const self = selfView();
  const others = [...session.participants.values()];
  const groups = [...session.remote].map(([key, r]) => ({ key, participant: r.participant, source: r.source }));
  renderTiles(buildTiles({ self, participants: others, groups }));
  renderParticipants(self, others);
  renderControls(self);
}

function renderTiles(tiles) {
  const seen = new Set();
  tiles.forEach((t, i) => {
    let el = tileEls.get(t.key);
    if (!el) {
      el = createTile(t);
      tileEls.set(t.key, el);
    }
    seen.add(t.key);
    updateTile(el, t);
    if (ui.tiles.children[i] !== el.root) ui.tiles.insertBefore(el.root, ui.tiles.children[i] ?? null);
  });
  for (const [key, el] of tileEls) {
    if (seen.has(key)) continue;
    el.video.srcObject = null;
    el.root.remove();
    tileEls.delete(key);
  }
  ui.tiles.dataset.count = String(tiles.length);
}

function clearTiles() {
  renderTiles([]);
  ui.list.replaceChildren();
}

function createTile(t) {
  const video = /** @type {HTMLVideoElement} */ (h('video', { autoplay: true, playsinline: true }));
  if (t.self) video.muted = true;
  const avatar = h('div', { class: 'avatar', 'aria-hidden': 'true' });
  const mic = h('span', { class: 'mic-off', role: 'img', 'aria-label': 'Microphone off', title: 'Microphone off' }, icon('mic-off'));
  const name = h('span', { class: 'name' });
  const label = h('div', { class: 'label' }, mic, name);
  const root = h('div', { class: 'tile' }, video, avatar, label);
  return { root, video, avatar, name, mic, sig: '' };
}

function updateTile(el, t) {
  setData(el.root, 'participant', t.participant);
  setData(el.root, 'source', t.source);
  setData(el.root, 'name', t.name);
  setData(el.root, 'self', t.self ? 'true' : null);
  el.root.classList.toggle('no-video', !t.video);
  el.root.classList.toggle('mirrored', t.self);
  const label = t.source === 'screen' ? `${t.name}'s screen` : t.self ? `${t.name} (you)` : t.name;
  if (el.name.textContent !== label) el.name.textContent = label;
  el.root.setAttribute('aria-label', label);
  el.avatar.textContent = initials(t.name);
  el.mic.hidden = t.audio;

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

function renderParticipants(self, others) {
  const people = [{ ...self, self: true }, ...others.map((p) => ({ ...p, self: false }))];
  const items = people.map((p) => {
    const li = h('li', { dataset: { participant: p.id, audio: String(!!p.audio), video: String(!!p.video) } },
      h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(p.name)),
      h('span', { class: 'name' }, p.self ? `${p.name} (you)` : p.name),
      h('span', { class: 'state' },
        h('span', { role: 'img', 'aria-label': p.audio ? 'microphone on' : 'microphone off', class: p.audio ? 'on' : 'off' }, icon(p.audio ? 'mic' : 'mic-off')),
        h('span', { role: 'img', 'aria-label': p.video ? 'camera on' : 'camera off', class: p.video ? 'on' : 'off' }, icon(p.video ? 'camera' : 'camera-off')),
        p.screen ? h('span', { role: 'img', 'aria-label': 'sharing screen', class: 'on' }, icon('screen')) : null));
    if (p.self) li.dataset.self = 'true';
    return li;
  });
  ui.list.replaceChildren(...items);
  ui.count.textContent = String(people.length);
}

function renderControls(self) {
  setToggle(ui.mic, self.audio, self.audio ? 'mic' : 'mic-off', self.audio ? 'Mute microphone' : 'Unmute microphone');
  setToggle(ui.cam, self.video, self.video ? 'camera' : 'camera-off', self.video ? 'Turn camera off' : 'Turn camera on');
  setToggle(ui.screen, self.screen, 'screen', self.screen ? 'Stop sharing your screen' : 'Share your screen');
  if (!ui.people.querySelector('svg')) ui.people.prepend(icon('people'));
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
