// The meeting's control bar: microphone, camera, screen sharing, the
// participants and layout toggles, and leave. It acts on the current call
// (call.mjs) and the local devices (devices.mjs); what is allowed comes
// from the room's rules (access.mjs).

import { $ } from './dom.mjs';
import { icon } from './icons.mjs';
import { mayUnmute, mayPresent } from './access.mjs';
import { describeMediaError, isUserCancel } from './media-errors.mjs';

/** The control bar of the meeting screen. */
export class ControlsView {
  /**
   * @param {object} o
   * @param {import('./devices.mjs').LocalMedia} o.media the camera and microphone
   * @param {() => import('./call.mjs').Call|null} o.call the current call
   * @param {(text: string) => void} o.notice shows a passing message
   * @param {() => void} o.changed the local media changed: render again
   * @param {() => void} o.toggleLayout switches between grid and speaker layout
   */
  constructor({ media, call, notice, changed, toggleLayout }) {
    this.media = media;
    this.call = call;
    this.notice = notice;
    this.changed = changed;
    /** @type {MediaStream|null} the screen being shared */
    this.screenShare = null;
    this.ui = {
      mic: $('#toggle-mic'),
      cam: $('#toggle-cam'),
      screen: $('#toggle-screen'),
      people: $('#toggle-participants'),
      chat: $('#toggle-chat'),
      layout: $('#toggle-layout'),
      leave: $('#leave'),
    };
    const ui = this.ui;
    ui.layout.addEventListener('click', () => toggleLayout());
    ui.leave.addEventListener('click', () => this.#session()?.leave());

    // Microphone: mute is track.enabled; without a microphone, ask for one.
    ui.mic.addEventListener('click', async () => {
      const session = this.#session();
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
      const session = this.#session();
      if (!session) return;
      if (session.mediaState.video) {
        session.setCamera(null);
        media.stopCamera();
        changed();
        return;
      }
      ui.cam.disabled = true;
      try {
        const track = await media.acquire('video');
        const now = this.#session();
        if (now) now.setCamera(track);
        else media.stopCamera();
      } catch (err) {
        notice(describeMediaError(err, 'camera'));
      } finally {
        ui.cam.disabled = false;
      }
    });

    // Screen: getDisplayMedia must be called from the click itself.
    ui.screen.addEventListener('click', () => {
      if (!this.#session()) return;
      if (this.screenShare) {
        this.stopScreenShare(true);
        return;
      }
      if (!navigator.mediaDevices?.getDisplayMedia) {
        notice('This browser cannot share a screen.');
        return;
      }
      navigator.mediaDevices.getDisplayMedia({ video: true, audio: true }).then((stream) => {
        const session = this.#session();
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
        this.screenShare = stream;
        video.addEventListener('ended', () => {
          if (this.screenShare === stream) this.stopScreenShare(true);
        });
        session.startScreen(video, audio);
      }, (err) => {
        if (!isUserCancel(err)) notice(`Screen sharing failed: ${err.message || err.name}`);
      });
    });
  }

  #session() { return this.call()?.session ?? null; }

  /**
   * Stops sharing the screen.
   * @param {boolean} tellSession the call goes on: tell the server
   */
  stopScreenShare(tellSession) {
    if (!this.screenShare) return;
    const s = this.screenShare;
    this.screenShare = null;
    s.getTracks().forEach((t) => t.stop());
    if (tellSession) this.#session()?.stopScreen();
  }

  /**
   * Shows the controls for the local participant under the room's rules.
   * @param {{audio: boolean, video: boolean, screen: boolean, role: string, muted: boolean}} self
   * @param {object} roomState
   * @param {boolean} speakerLayout the stage shows the speaker large
   */
  render(self, roomState, speakerLayout) {
    const ui = this.ui;
    setToggle(ui.mic, self.audio, self.audio ? 'mic' : 'mic-off', self.audio ? 'Mute microphone' : 'Unmute microphone');
    const unmuteAllowed = self.audio || mayUnmute(self, roomState);
    ui.mic.disabled = !unmuteAllowed;
    if (!unmuteAllowed) ui.mic.title = 'A host muted you, and guests may not unmute in this meeting.';
    setToggle(ui.cam, self.video, self.video ? 'camera' : 'camera-off', self.video ? 'Turn camera off' : 'Turn camera on');
    const presentAllowed = mayPresent(self, roomState);
    if (!presentAllowed && this.screenShare) queueMicrotask(() => this.#stopForbiddenShare()); // not from inside a render
    ui.screen.hidden = !presentAllowed;
    ui.screen.disabled = !presentAllowed;
    setToggle(ui.screen, self.screen, 'screen', self.screen ? 'Stop sharing your screen' : 'Share your screen');
    setToggle(ui.layout, speakerLayout, speakerLayout ? 'layout-speaker' : 'layout-grid', speakerLayout ? 'Show everyone alike (grid)' : 'Show the speaker large (speaker layout)');
    if (!ui.people.querySelector('svg')) ui.people.prepend(icon('people'));
    if (!ui.chat.querySelector('svg')) ui.chat.prepend(icon('chat'));
    if (!ui.leave.querySelector('svg')) ui.leave.prepend(icon('leave'));
  }

  // A host withdrew the guests' right to present while this guest shared.
  #stopForbiddenShare() {
    if (!this.screenShare) return;
    this.stopScreenShare(true);
    this.notice('Guests may not share their screen in this meeting any more.');
  }
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
