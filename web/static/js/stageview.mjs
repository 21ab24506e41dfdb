// The stage of the meeting screen: one tile per camera or screen, in the
// grid or the speaker layout (speakerview.mjs), with pin and full-screen
// buttons, and each remote tile's rendered size reported to the server as
// `layout` (tilesizes.mjs), so that it forwards the layer that fits.

import { $, h, setData } from './dom.mjs';
import { icon } from './icons.mjs';
import { initials } from './names.mjs';
import { gridDensity } from './tiles.mjs';
import { arrange, remoteSpeaker } from './speakerview.mjs';
import { TileSizes } from './tilesizes.mjs';
import { roleLabel } from './access.mjs';

const LAYOUT_KEY = 'conclave.layout';

/** The tiles of a meeting. */
export class StageView {
  /**
   * @param {object} o
   * @param {import('./devices.mjs').LocalMedia} o.media the local camera, for the self tile
   * @param {() => import('./call.mjs').Call|null} o.call the current call: remote streams, sizes sent
   * @param {() => void} o.changed the stage changed (layout, pin, full screen): render again
   */
  constructor({ media, call, changed }) {
    this.media = media;
    this.call = call;
    this.changed = changed;
    this.tiles = $('#tiles');
    /** The stage: 'grid' or 'speaker' layout, the pinned and the full-screen tile keys, the remote speaker. */
    this.stage = { layout: loadLayout(), pinned: '', fullscreen: '', speaker: '' };
    /** key -> {root, video, avatar, name, mic, sig, participant, source, pin, full} */
    this.els = new Map();
    /** The rendered size of every remote tile goes to the server as `layout`. */
    this.sizes = new TileSizes((key, size) => {
      const el = this.els.get(key);
      const session = this.call()?.session;
      if (el && session) session.setRenderSize(el.participant, el.source, size);
    });
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || !this.stage.fullscreen || e.defaultPrevented) return;
      const key = this.stage.fullscreen;
      this.toggleFullscreen(key);
      this.els.get(key)?.full.focus();
    });
  }

  /** Whether the speaker layout is on. */
  get speakerLayout() { return this.stage.layout === 'speaker'; }

  /**
   * Follows the active speaker the server names (the local participant's
   * own voice does not move the stage).
   * @param {string} participant
   * @param {string} selfId
   */
  setSpeaker(participant, selfId) {
    this.stage.speaker = remoteSpeaker(this.stage.speaker, participant, selfId);
  }

  /** The participant the stage shows as speaking, or ''. */
  get speaker() { return this.call()?.session.speaker ?? ''; }

  /**
   * Shows the tiles.
   * @param {object[]} tiles buildTiles' output (tiles.mjs)
   * @param {object|null} e2ee the call's E2EE state, for the tiles' marks
   */
  render(tiles, e2ee) {
    const stage = this.stage;
    if (stage.pinned && !tiles.some((t) => t.key === stage.pinned)) stage.pinned = '';
    const a = arrange(tiles, stage);
    stage.fullscreen = a.fullscreen;
    const byKey = new Map(tiles.map((t) => [t.key, t]));
    const seen = new Set();
    a.order.forEach((key, i) => {
      const t = byKey.get(key);
      let el = this.els.get(key);
      if (!el) {
        el = this.#createTile(t);
        this.els.set(key, el);
      }
      seen.add(key);
      this.#updateTile(el, t, e2ee);
      this.#updateStage(el, t, a);
      if (this.tiles.children[i] !== el.root) this.tiles.insertBefore(el.root, this.tiles.children[i] ?? null);
      if (!t.self) {
        this.sizes.observe(key, el.root, t.video);
        this.sizes.setVideo(key, t.video);
      }
    });
    for (const [key, el] of this.els) {
      if (seen.has(key)) continue;
      this.sizes.unobserve(key);
      if (!el.self) this.call()?.session.setRenderSize(el.participant, el.source, null);
      el.video.srcObject = null;
      el.root.remove();
      this.els.delete(key);
    }
    this.tiles.dataset.count = String(tiles.length);
    setData(this.tiles, 'density', gridDensity(tiles.length) || null);
    this.tiles.dataset.layout = stage.layout;
    this.tiles.classList.toggle('has-fullscreen', !!a.fullscreen);
  }

  /** Forgets the meeting's tiles, pin, full screen and speaker. */
  clear() {
    this.stage.pinned = '';
    this.stage.fullscreen = '';
    this.stage.speaker = '';
    this.render([], null);
  }

  /** @param {string} key a tile to put in (or take out of) full screen */
  toggleFullscreen(key) {
    this.stage.fullscreen = this.stage.fullscreen === key ? '' : key;
    this.changed();
  }

  /** @param {string} key a tile to pin to the large view (or unpin) */
  togglePin(key) {
    this.stage.pinned = this.stage.pinned === key ? '' : key;
    if (this.stage.pinned) this.setLayout('speaker');
    else this.changed();
  }

  /** @param {'grid'|'speaker'} layout */
  setLayout(layout) {
    this.stage.layout = layout === 'speaker' ? 'speaker' : 'grid';
    try {
      localStorage.setItem(LAYOUT_KEY, this.stage.layout);
    } catch { /* storage disabled */ }
    this.changed();
  }

  /** Switches between the grid and the speaker layout. */
  toggleLayout() { this.setLayout(this.speakerLayout ? 'grid' : 'speaker'); }

  /** Where a tile sits on the stage, whether it is in full screen, whether its participant speaks. */
  #updateStage(el, t, a) {
    setData(el.root, 'slot', a.slots.get(t.key) ?? 'grid');
    const full = t.key === a.fullscreen;
    el.root.classList.toggle('fullscreen', full);
    const speaker = this.speaker;
    const speaking = t.source === 'camera' && !!speaker && t.participant === speaker;
    el.root.classList.toggle('speaking', speaking);
    setData(el.root, 'speaking', speaking ? 'true' : null);
    setPressed(el.full, full, full ? 'fullscreen-exit' : 'fullscreen', full ? `Leave full screen (${t.name})` : `Full screen (${t.name})`);
    const pinned = t.key === this.stage.pinned;
    setPressed(el.pin, pinned, 'pin', pinned ? `Unpin ${t.name}` : `Pin ${t.name} to the large view`);
  }

  #createTile(t) {
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
    pin.addEventListener('click', () => this.togglePin(t.key));
    full.addEventListener('click', () => this.toggleFullscreen(t.key));
    root.append(h('div', { class: 'tile-actions' }, pin, full));
    root.addEventListener('dblclick', (e) => {
      if (/** @type {Element} */ (e.target).closest('.tile-actions')) return;
      this.toggleFullscreen(t.key);
    });
    return { root, video, avatar, name, mic, hostMuted, role, mark, sig: '', participant: t.participant, source: t.source, self: t.self, pin, full };
  }

  #updateTile(el, t, e2ee) {
    setData(el.root, 'participant', t.participant);
    setData(el.root, 'source', t.source);
    setData(el.root, 'name', t.name);
    setData(el.root, 'self', t.self ? 'true' : null);
    setData(el.root, 'role', t.role || null);
    setData(el.root, 'muted', t.muted ? 'true' : null);
    const state = t.self ? (e2ee?.participants.find((p) => p.self)?.e2ee ?? 'connecting') : e2eeOf(e2ee, t.participant);
    setData(el.root, 'e2ee', state);
    el.mark.hidden = state !== 'unverified' && state !== 'gateway';
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
      const cam = this.media.camera;
      stream = cam && t.video ? (el.selfStream?.getVideoTracks()[0] === cam ? el.selfStream : new MediaStream([cam])) : null;
      el.selfStream = stream;
    } else {
      stream = this.call()?.session.streamFor(t.participant, t.source) ?? null;
    }
    const sig = stream ? stream.getTracks().map((x) => x.id).sort().join(',') : '';
    if (el.video.srcObject !== stream || el.sig !== sig) {
      el.sig = sig;
      el.video.srcObject = stream;
      if (stream) el.video.play().catch(() => {}); // autoplay may wait for a gesture
    }
  }
}

/**
 * A participant's end-to-end state as the page shows it.
 * @param {object|null} e2ee the call's E2EE state
 * @param {string} id
 * @returns {'verified'|'connecting'|'unverified'|'gateway'}
 */
function e2eeOf(e2ee, id) {
  return e2ee?.participants.find((p) => p.id === id && !p.self)?.e2ee ?? 'connecting';
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

function loadLayout() {
  try {
    return localStorage.getItem(LAYOUT_KEY) === 'speaker' ? 'speaker' : 'grid';
  } catch {
    return 'grid';
  }
}
