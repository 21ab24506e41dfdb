// What the meeting page shows of end-to-end encryption: the indicator
// (#e2ee-state), the warnings (#e2ee-warning), the meeting code
// (#meeting-code), and per participant a fingerprint, a certification
// badge and a verification state. Texts are pure functions; render
// helpers take the elements.

import { h, setData } from './dom.mjs';

/** The indicator's label and tooltip per state. */
export const STATE_TEXT = Object.freeze({
  e2ee: { label: 'End-to-end encrypted', title: 'Everyone in this meeting is verified and media, chat and files are end-to-end encrypted.' },
  connecting: { label: 'Securing…', title: 'Exchanging keys with the other participants.' },
  warning: { label: 'Verification failed', title: 'A verification failed: see the warning.' },
  'not-e2ee': { label: 'Not end-to-end', title: 'Someone in this meeting is not end-to-end encrypted: the server could see what you send to them.' },
});

/** What the meeting code is for. */
export const CODE_HELP = 'Compare this code aloud; it changes when someone joins or leaves';

/**
 * The badge of a participant.
 * @param {{certified: boolean, orgName: string}} p
 * @returns {string}
 */
export function badgeText(p) {
  return p.certified ? `Certified by ${p.orgName || 'your organisation'}` : 'Not certified';
}

/**
 * What a participant's verification state says.
 * @param {'verified'|'connecting'|'unverified'|string} e2ee
 * @returns {string}
 */
export function e2eeText(e2ee) {
  if (e2ee === 'verified') return 'End-to-end verified';
  if (e2ee === 'unverified') return 'Not end-to-end';
  return 'Connecting…';
}

/**
 * Shows the E2EE state, the warnings and the code.
 * @param {{state: HTMLElement, label: HTMLElement, warning: HTMLElement, code: HTMLElement}} el
 * @param {{state: string, code: string, warnings: string[]}} snap
 */
export function renderE2EE(el, snap) {
  const t = STATE_TEXT[snap.state] ?? STATE_TEXT.connecting;
  setData(el.state, 'state', snap.state);
  if (el.label.textContent !== t.label) el.label.textContent = t.label;
  el.state.title = t.title;
  const warning = snap.warnings.join(' ');
  if (el.warning.textContent !== warning) el.warning.textContent = warning;
  el.warning.hidden = !warning;
  const code = snap.code || '';
  if (el.code.textContent !== code) el.code.textContent = code;
  setData(el.code, 'code', code);
  el.code.hidden = !code;
}

/**
 * The E2EE part of a participant's list entry: fingerprint, badge, state.
 * Sets data-e2ee on the entry.
 * @param {HTMLElement} li
 * @param {{fingerprint: string, certified: boolean, orgName: string, e2ee: string}|undefined} v
 * @returns {HTMLElement}
 */
export function participantE2EE(li, v) {
  const e2ee = v?.e2ee ?? 'connecting';
  li.dataset.e2ee = e2ee;
  const certified = !!v?.certified;
  return h('div', { class: 'e2ee-info' },
    h('span', { class: 'badge', dataset: { certified: String(certified) } }, v?.fingerprint ? badgeText(v) : 'Not certified'),
    h('span', { class: 'e2ee-status' }, e2eeText(e2ee)),
    v?.fingerprint ? h('code', { class: 'fingerprint', title: 'Device key fingerprint: compare it with what this person sees on their own device' }, v.fingerprint) : null);
}
