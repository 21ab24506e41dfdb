// What the meeting page shows of end-to-end encryption: the indicator
// (#e2ee-state), the warnings (#e2ee-warning), the meeting code
// (#meeting-code), and per participant a fingerprint, a certification
// badge and a verification state. Texts are pure functions; render
// helpers take the elements.

import { h, setData } from './dom.mjs';
import { cleanName } from './e2ee/names.mjs';

/** The indicator's label and tooltip per state. */
export const STATE_TEXT = Object.freeze({
  e2ee: { label: 'End-to-end encrypted', title: 'Everyone in this meeting is verified and media, chat and files are end-to-end encrypted.' },
  connecting: { label: 'Securing…', title: 'Exchanging keys with the other participants.' },
  warning: { label: 'Verification failed', title: 'A verification failed: see the warning.' },
  'not-e2ee': { label: 'Not end-to-end', title: 'Someone in this meeting is not end-to-end encrypted: the server could see what you send to them.' },
});

/** What the meeting code is for. */
export const CODE_HELP = 'Compare this code aloud; it changes when someone joins or leaves';

/** What stands in for the code while its round is incomplete. */
export const VERIFYING = 'verifying…';

/**
 * The names to show: a participant whose credential verified (and is in
 * the log) is named by its credential, whatever name it gave; everyone
 * else by its free text, cleaned of invisible and bidi characters. The
 * free text stays as freeName.
 * @param {object[]} people the server's participants ({id, name, ...})
 * @param {{participants: object[]}|null} e2ee
 * @returns {object[]}
 */
export function withVerifiedNames(people, e2ee) {
  const views = new Map((e2ee?.participants ?? []).filter((v) => !v.self).map((v) => [v.id, v]));
  return people.map((p) => {
    const v = views.get(p.id);
    return { ...p, freeName: p.name, name: v?.certified ? v.name : cleanName(p.name) };
  });
}

/**
 * The badge of a participant.
 * @param {{certified: boolean, orgName: string}} p
 * @returns {string}
 */
export function badgeText(p) {
  if (p.revoked) return 'Device revoked';
  if (!p.certified) return p.pending ? 'Not certified (not in the identity log)' : 'Not certified';
  return `Certified by ${p.orgName || 'your organisation'}${p.account ? ` as @${p.account}` : ''}`;
}

/**
 * Notes under a participant's name: the free text it gave when it differs
 * from its certified name, a new device, a look-alike name.
 * @param {{nameDiffers?: boolean, freeName?: string, newDevice?: boolean, lookalike?: string}} p
 * @returns {string[]}
 */
export function nameNotes(p) {
  const out = [];
  if (p.nameDiffers) out.push(`calls themselves “${p.freeName}”`);
  if (p.newDevice) out.push('new device: certified less than a day ago');
  if (p.lookalike) out.push(`name looks like ${p.lookalike}`);
  return out;
}

/**
 * What a participant's verification state says.
 * @param {'verified'|'connecting'|'unverified'|'gateway'|string} e2ee
 * @returns {string}
 */
export function e2eeText(e2ee) {
  if (e2ee === 'verified') return 'End-to-end verified';
  if (e2ee === 'unverified') return 'Not end-to-end';
  if (e2ee === 'gateway') return 'Not end-to-end: a telephone through the server';
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
  const shown = code || (snap.state === 'connecting' && !snap.participants?.length ? '' : VERIFYING);
  if (el.code.textContent !== shown) el.code.textContent = shown;
  setData(el.code, 'code', code);
  setData(el.code, 'verifying', String(!code));
  el.code.hidden = !shown;
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
  if (v?.lookalike) li.dataset.lookalike = 'true';
  if (v?.newDevice) li.dataset.newDevice = 'true';
  const notes = v ? nameNotes(v) : [];
  return h('div', { class: 'e2ee-info' },
    h('span', { class: 'badge', dataset: { certified: String(certified), account: v?.account ?? '' } }, v?.fingerprint ? badgeText(v) : 'Not certified'),
    h('span', { class: 'e2ee-status' }, e2eeText(e2ee)),
    ...notes.map((n) => h('span', { class: 'name-note', role: 'note' }, n)),
    v?.fingerprint ? h('code', { class: 'fingerprint', title: 'Device key fingerprint: compare it with what this person sees on their own device' }, v.fingerprint) : null);
}
