// The waiting screen of the meeting page: not admitted yet, the person
// waits for a host or in the lobby of a locked meeting, seeing its own
// camera and able to leave.

import { $ } from './dom.mjs';
import { initials } from './names.mjs';
import { waitingText } from './access.mjs';

/** The waiting screen. */
export class WaitingView {
  /**
   * @param {object} o
   * @param {import('./devices.mjs').LocalMedia} o.media the local camera
   * @param {() => void} o.leave the person gives up waiting
   */
  constructor({ media, leave }) {
    this.media = media;
    this.ui = {
      message: $('#waiting-message'),
      leave: $('#waiting-leave'),
      preview: /** @type {HTMLVideoElement} */ ($('#waiting-preview')),
      tile: $('#waiting-tile'),
      avatar: $('#waiting-avatar'),
    };
    this.ui.leave.addEventListener('click', () => leave());
  }

  /**
   * Says what the person waits for, with its camera.
   * @param {string} wait 'host' or 'lobby'
   * @param {string} name the person's name, for the avatar
   */
  render(wait, name) {
    const ui = this.ui;
    ui.message.textContent = waitingText(wait);
    const cam = this.media.camera;
    if (ui.preview.srcObject?.getVideoTracks?.()[0] !== cam) ui.preview.srcObject = cam ? new MediaStream([cam]) : null;
    ui.tile.classList.toggle('no-video', !cam);
    ui.avatar.textContent = initials(name);
  }

  /** Puts focus on the leave button (the screen was just shown). */
  focus() { this.ui.leave.focus(); }

  /** Stops showing the camera. */
  clear() { this.ui.preview.srcObject = null; }
}
