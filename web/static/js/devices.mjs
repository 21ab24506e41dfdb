// The local camera and microphone: acquisition with clear explanations when
// the browser refuses, device switching, and remembered device choices.

import { describeMediaError } from './media-errors.mjs';

const STORE = { audio: 'conclave.microphone', video: 'conclave.camera' };
const WHAT = { audio: 'microphone', video: 'camera' };

function remembered(kind) {
  try {
    return localStorage.getItem(STORE[kind]) || '';
  } catch {
    return '';
  }
}

function remember(kind, id) {
  try {
    if (id) localStorage.setItem(STORE[kind], id);
  } catch { /* storage disabled */ }
}

/** The local microphone and camera tracks. */
export class LocalMedia {
  constructor() {
    /** @type {MediaStreamTrack|null} */
    this.mic = null;
    /** @type {MediaStreamTrack|null} */
    this.camera = null;
  }

  /** Whether this page may ask for media at all (a secure context). */
  get supported() {
    return !!navigator.mediaDevices?.getUserMedia;
  }

  /**
   * Asks for the microphone and the camera (the remembered devices when they
   * still exist). Returns '' when both were obtained, otherwise a message for
   * the user explaining what is missing and how to allow it.
   * @returns {Promise<string>}
   */
  async start() {
    if (!this.supported) return describeMediaError({ name: 'TypeError' });
    try {
      const s = await navigator.mediaDevices.getUserMedia({ audio: this.#constraint('audio'), video: this.#constraint('video') });
      this.#take(s);
      return '';
    } catch (err) {
      // One device may be missing or blocked: try each alone.
      const failures = [];
      for (const kind of ['audio', 'video']) {
        try {
          this.#take(await navigator.mediaDevices.getUserMedia({ [kind]: this.#constraint(kind) }));
        } catch (e) {
          failures.push([kind, e]);
        }
      }
      if (failures.length === 0) return '';
      const what = failures.length === 2 ? 'camera and microphone' : WHAT[failures[0][0]];
      return describeMediaError(failures[0][1], what);
    }
  }

  /**
   * Switches the microphone or the camera to another device.
   * @param {'audio'|'video'} kind
   * @param {string} deviceId
   * @returns {Promise<MediaStreamTrack>} the new track
   */
  async use(kind, deviceId) {
    remember(kind, deviceId);
    const s = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
    const track = s.getTracks()[0];
    this.#replace(kind, track);
    return track;
  }

  /**
   * Acquires one kind again (camera turned back on, microphone allowed later).
   * @param {'audio'|'video'} kind
   * @returns {Promise<MediaStreamTrack>}
   */
  async acquire(kind) {
    const s = await navigator.mediaDevices.getUserMedia({ [kind]: this.#constraint(kind) });
    const track = s.getTracks()[0];
    this.#replace(kind, track);
    return track;
  }

  /** Stops the camera device (its light goes off). */
  stopCamera() {
    this.camera?.stop();
    this.camera = null;
  }

  /** Stops every device. */
  stop() {
    this.mic?.stop();
    this.mic = null;
    this.stopCamera();
  }

  /**
   * The available devices; labels are empty until access was granted once.
   * @returns {Promise<{audio: MediaDeviceInfo[], video: MediaDeviceInfo[]}>}
   */
  async devices() {
    if (!navigator.mediaDevices?.enumerateDevices) return { audio: [], video: [] };
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      audio: all.filter((d) => d.kind === 'audioinput' && d.deviceId),
      video: all.filter((d) => d.kind === 'videoinput' && d.deviceId),
    };
  }

  /**
   * The device id a kind currently uses, or ''.
   * @param {'audio'|'video'} kind
   * @returns {string}
   */
  deviceId(kind) {
    const t = kind === 'audio' ? this.mic : this.camera;
    return t?.getSettings?.().deviceId ?? '';
  }

  #constraint(kind) {
    const id = remembered(kind);
    return id ? { deviceId: { ideal: id } } : true;
  }

  #take(stream) {
    for (const t of stream.getTracks()) this.#replace(t.kind, t);
  }

  #replace(kind, track) {
    const old = kind === 'audio' ? this.mic : this.camera;
    if (old && old !== track) {
      if (kind === 'audio') track.enabled = old.enabled; // keep mute state
      old.stop();
    }
    if (kind === 'audio') this.mic = track;
    else this.camera = track;
  }
}
