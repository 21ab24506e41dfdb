// Watches the identity log from every Conclave page of a signed-in user
// (docs/e2ee.md, section 13): every 30 s it reads the log, and a device
// certified for the user's account after this one, or a split view of the
// log, shows a banner on this page and on the user's other pages until the
// user says the new device is theirs. The log work is e2ee/log.mjs's
// LogMonitor, reached through the page's device identity (call.mjs
// prepareIdentity); this module only keeps the alerts and shows them.

import { h } from './dom.mjs';
import { openDeviceStore, MemoryStore } from './e2ee/device.mjs';

/** How often the log is read outside meetings: a new device is reported within a minute. */
export const PAGE_LOG_INTERVAL_MS = 30000;

const ALERTS = 'device-alerts';

/**
 * The alert texts of the stored alerts.
 * @param {{kind: string, fingerprint?: string, at?: number, text?: string}[]} alerts
 * @returns {string[]}
 */
export function alertTexts(alerts) {
  return alerts.map((a) => (a.kind === 'split'
    ? `The server showed this browser a version of the identity log that contradicts another one (${a.text}). Identities cannot be trusted: tell your administrator.`
    : `A new device was certified for your account: ${a.fingerprint}, on ${new Date(a.at).toLocaleString()}. If it is not one of yours, tell your administrator at once: it can be revoked.`));
}

/**
 * Starts watching: identity is a promise of the page's device identity
 * (with its LogMonitor, or none for guests, and the alarms of pinned keys
 * the server withheld or replaced, shown too). Returns a stop function.
 * @param {Promise<{log?: import('./e2ee/log.mjs').LogMonitor|null}>} identity
 * @param {{interval?: number, root?: HTMLElement}} [opts]
 * @returns {() => void}
 */
export function watchTrust(identity, { interval = PAGE_LOG_INTERVAL_MS, root = document.body } = {}) {
  let timer = null;
  let stopped = false;
  let store = null;
  const banner = h('div', { class: 'notice trust-alert', role: 'alert', hidden: true, dataset: { trustAlert: 'true' } });
  root.prepend(banner);

  let pinAlarms = []; // pinned keys the server withheld or replaced, as long as it does
  const show = async () => {
    const alerts = (await store?.get(ALERTS)) ?? [];
    const texts = [...pinAlarms, ...alertTexts(alerts)];
    const ack = h('button', { type: 'button', class: 'secondary' }, 'These devices are mine');
    ack.addEventListener('click', async () => {
      await store?.put(ALERTS, alerts.filter((a) => a.kind === 'split'));
      show();
    });
    banner.replaceChildren(...texts.map((t) => h('p', {}, t)), alerts.some((a) => a.kind !== 'split') ? ack : '');
    banner.hidden = !texts.length;
  };
  const add = async (alert) => {
    const alerts = (await store?.get(ALERTS)) ?? [];
    if (!alerts.some((a) => a.kind === alert.kind && a.fingerprint === alert.fingerprint && a.text === alert.text)) alerts.push(alert);
    await store?.put(ALERTS, alerts);
    show();
  };

  (async () => {
    try {
      store = await openDeviceStore();
    } catch {
      store = new MemoryStore();
    }
    await show();
    const id = await identity;
    pinAlarms = id?.alarms ?? [];
    if (pinAlarms.length) await show();
    const log = id?.log;
    if (!log || stopped) return;
    log.addEventListener('new-device', (e) => add({ kind: 'device', fingerprint: e.detail.fingerprint, at: e.detail.at }));
    log.addEventListener('split', (e) => add({ kind: 'split', text: e.detail.text }));
    if (log.split()) add({ kind: 'split', text: log.split() });
    const tick = async () => {
      timer = null;
      if (stopped) return;
      await log.refresh().catch(() => {});
      if (!stopped) timer = setTimeout(tick, interval);
    };
    timer = setTimeout(tick, interval);
  })();

  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
