// The prejoin screen of the meeting page: the camera preview with device
// pickers, the name and PIN fields, the sign-in link, and the join button.
// What a join does is the page's (meeting.mjs): the view reports it.

import { $, h } from './dom.mjs';
import { initials } from './names.mjs';
import { signInLink } from './links.mjs';
import { nameProblem, pinProblem } from './protocol.mjs';
import { describeMediaError } from './media-errors.mjs';
import { getJSON } from './api.mjs';

const NAME_KEY = 'conclave.name';

/** The prejoin form and preview. */
export class PrejoinView {
  /**
   * @param {object} o
   * @param {HTMLElement} o.screen the prejoin screen (#screen-prejoin)
   * @param {import('./devices.mjs').LocalMedia} o.media the camera and microphone
   * @param {(name: string, pin: string) => void|Promise<void>} o.join asks to join with a valid name and PIN
   * @param {(kind: 'audio'|'video', track: MediaStreamTrack) => void} o.deviceChanged another camera or microphone was picked
   * @param {() => boolean} o.busy a call is under way: the form does nothing
   */
  constructor({ screen, media, join, deviceChanged, busy }) {
    this.screen = screen;
    this.media = media;
    this.deviceChanged = deviceChanged;
    /** Settles when the preview's camera and microphone request has. */
    this.mediaReady = Promise.resolve();
    this.ui = {
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
    };
    const ui = this.ui;
    ui.cameraSelect.addEventListener('change', () => this.#switchDevice('video', ui.cameraSelect));
    ui.micSelect.addEventListener('change', () => this.#switchDevice('audio', ui.micSelect));
    ui.name.addEventListener('input', () => {
      ui.previewAvatar.textContent = initials(ui.name.value);
      setFieldError(ui.name, ui.nameError, '');
    });
    ui.pin.addEventListener('input', () => {
      // Spaces and dashes people copy along with a PIN are not part of it.
      const cleaned = ui.pin.value.replace(/[\s-]/g, '');
      if (cleaned !== ui.pin.value) ui.pin.value = cleaned;
      setFieldError(ui.pin, ui.pinError, '');
      this.setJoinError('');
    });
    navigator.mediaDevices?.addEventListener?.('devicechange', () => {
      if (!screen.hidden) this.fillDevices();
    });
    ui.form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (busy()) return;
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
      this.setJoinError('');
      ui.join.disabled = true; // until the server answers: welcome, waiting or a refusal
      await this.mediaReady; // a Join clicked before the browser answered publishes what it then gives
      if (!busy()) join(name, pin);
    });
  }

  /** The name to join with after the meeting: the field's, else the saved one. */
  get name() { return this.ui.name.value.trim() || loadName(); }

  /** The PIN in the field. */
  get pin() { return this.ui.pin.value.trim(); }

  /**
   * Prepares the form for a room: the sign-in link back to it, and who is
   * signed in (the WebSocket carries the same session cookie).
   * @param {string} alias
   */
  async open(alias) {
    this.ui.signIn.href = signInLink(alias);
    const res = await getJSON('/api/me');
    const u = res.ok ? res.data?.user : null;
    if (!u) {
      // A conference node has no accounts: its answer names the
      // management node, where accounts sign in.
      const link = res.ok ? '' : signInLink(alias, res.data?.signIn);
      if (link.startsWith('https:')) {
        this.ui.signIn.href = link;
        this.ui.signIn.textContent = `Sign in at ${new URL(link).host}`;
      }
      return;
    }
    const name = u.displayName || u.username || '';
    this.ui.signedIn.textContent = `Signed in as ${name}`;
    this.ui.signedIn.hidden = false;
    this.ui.signIn.hidden = true;
    if (!this.ui.name.value && name) {
      this.ui.name.value = name;
      this.ui.previewAvatar.textContent = initials(name);
    }
  }

  /** The join button works again (the screen is shown anew). */
  enable() { this.ui.join.disabled = false; }

  /** @param {string} text a refusal to show under the form ('' hides it) */
  setJoinError(text) {
    this.ui.joinError.textContent = text;
    this.ui.joinError.hidden = !text;
  }

  /**
   * Starts the camera and microphone unless they run already (back from a
   * refused join), then puts focus where the person continues.
   * @param {boolean} [focusPin] focus the PIN field (the join was refused)
   */
  async start(focusPin = false) {
    const ui = this.ui;
    ui.name.value ||= loadName();
    if (!this.media.mic && !this.media.camera) {
      this.mediaReady = this.media.start();
      const message = await this.mediaReady;
      ui.mediaMessage.textContent = message;
      ui.mediaMessage.hidden = !message;
    }
    this.showPreview();
    if (focusPin) {
      ui.pin.focus();
      ui.pin.select();
    }
    await this.fillDevices();
    if (focusPin || this.screen.hidden) return;
    if (!ui.name.value) ui.name.focus();
    else ui.join.focus();
  }

  /** Shows the camera, or the initials without one. */
  showPreview() {
    const cam = this.media.camera;
    this.ui.preview.srcObject = cam ? new MediaStream([cam]) : null;
    this.ui.previewTile.classList.toggle('no-video', !cam);
    this.ui.previewAvatar.textContent = initials(this.ui.name.value);
  }

  /** Stops showing the camera (the meeting's tiles show it now). */
  hidePreview() { this.ui.preview.srcObject = null; }

  /** Fills the device pickers. */
  async fillDevices() {
    const devices = await this.media.devices().catch(() => ({ audio: [], video: [] }));
    fillSelect(this.ui.cameraSelect, devices.video, this.media.deviceId('video'), 'Camera', 'No camera available');
    fillSelect(this.ui.micSelect, devices.audio, this.media.deviceId('audio'), 'Microphone', 'No microphone available');
  }

  async #switchDevice(kind, select) {
    if (!select.value) return;
    const ui = this.ui;
    try {
      const track = await this.media.use(kind, select.value);
      if (kind === 'video') this.showPreview();
      this.deviceChanged(kind, track);
      ui.mediaMessage.hidden = true;
    } catch (err) {
      ui.mediaMessage.textContent = describeMediaError(err, kind === 'video' ? 'camera' : 'microphone');
      ui.mediaMessage.hidden = false;
    }
  }
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

function setFieldError(input, el, text) {
  el.textContent = text;
  el.hidden = !text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

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
