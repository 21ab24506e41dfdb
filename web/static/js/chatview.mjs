// The meeting's chat panel (#chat): the log of end-to-end encrypted
// messages and files, the unread badge on #toggle-chat, the input, and the
// file picker. Encryption is MeetingCrypto's, uploads filetransfer.mjs's.

import { h } from './dom.mjs';
import { formatSize, savedBlob } from './filetransfer.mjs';

/**
 * @typedef {object} ChatElements
 * @property {HTMLElement} panel #chat
 * @property {HTMLElement} toggle #toggle-chat
 * @property {HTMLElement} unread #chat-unread
 * @property {HTMLElement} log #chat-log
 * @property {HTMLFormElement} form #chat-form
 * @property {HTMLInputElement} input #chat-input
 * @property {HTMLButtonElement} send #chat-send
 * @property {HTMLInputElement} file #chat-file
 * @property {HTMLElement} error #chat-error
 */

/**
 * @typedef {object} ChatActions
 * @property {(text: string) => Promise<void>} sendText
 * @property {(file: File) => Promise<void>} sendFile
 * @property {(descriptor: object) => Promise<Uint8Array>} download
 */

const time = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/** The chat panel. */
export class ChatView {
  /**
   * @param {ChatElements} el
   * @param {ChatActions} actions
   */
  constructor(el, actions) {
    this.el = el;
    this.actions = actions;
    this.unread = 0;
    /** @type {string[]} blob: URLs to revoke when the meeting ends */
    this.urls = [];
    el.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#sendText();
    });
    el.file.addEventListener('change', () => {
      const f = el.file.files?.[0];
      el.file.value = '';
      if (f) this.#sendFile(f);
    });
    el.log.addEventListener('click', (e) => {
      const a = /** @type {HTMLElement} */ (e.target).closest('a.file-download');
      if (!a || a.getAttribute('href')) return; // already downloaded: the link saves it
      e.preventDefault();
      this.#download(/** @type {HTMLAnchorElement} */ (a));
    });
    el.log.addEventListener('keydown', (e) => {
      const a = /** @type {HTMLElement} */ (e.target).closest?.('a.file-download');
      if (!a || (e.key !== 'Enter' && e.key !== ' ') || a.getAttribute('href')) return;
      e.preventDefault();
      this.#download(/** @type {HTMLAnchorElement} */ (a));
    });
    new MutationObserver(() => { if (!el.panel.hidden) this.#setUnread(0); }).observe(el.panel, { attributes: true, attributeFilter: ['hidden'] });
  }

  /**
   * Shows a message (event detail of MeetingCrypto's chat event).
   * @param {{from: string, name: string, self: boolean, ok: boolean, kind?: number, text?: string, file?: object, timestampMs: number}} m
   */
  add(m) {
    const head = h('div', { class: 'chat-head' },
      h('span', { class: 'chat-name' }, m.self ? `${m.name} (you)` : m.name),
      h('time', { class: 'chat-time', datetime: new Date(m.timestampMs).toISOString() }, time(m.timestampMs)));
    let li;
    if (!m.ok) {
      li = h('li', { class: 'chat-unverified', dataset: { from: m.from, verified: 'false' } }, head,
        h('p', { class: 'chat-text' }, `Message from ${m.name} could not be verified`));
    } else if (m.file) {
      const f = m.file;
      const link = h('a', { class: 'file-download', download: f.name, role: 'button', tabindex: '0' }, m.self ? 'Save' : 'Download');
      link.descriptor = f;
      li = h('li', { dataset: { from: m.from, file: f.name, verified: 'true' } }, head,
        h('p', { class: 'chat-file' }, h('span', { class: 'file-name' }, f.name), ' ', h('span', { class: 'file-size' }, formatSize(Number(f.size))), ' ', link),
        h('p', { class: 'file-error', role: 'alert', hidden: true }));
    } else {
      li = h('li', { dataset: { from: m.from, verified: 'true' } }, head, h('p', { class: 'chat-text' }, m.text ?? ''));
    }
    if (m.self) li.dataset.self = 'true';
    this.el.log.append(li);
    li.scrollIntoView?.({ block: 'end' });
    if (!m.self && this.el.panel.hidden) this.#setUnread(this.unread + 1);
  }

  /** Forgets the messages (a new meeting) and frees downloaded files. */
  clear() {
    this.el.log.replaceChildren();
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.urls = [];
    this.#setUnread(0);
    this.#error('');
  }

  async #sendText() {
    const text = this.el.input.value.trim();
    if (!text) return;
    this.el.send.disabled = true;
    try {
      await this.actions.sendText(text);
      this.el.input.value = '';
      this.#error('');
    } catch (err) {
      this.#error(err.message || 'The message could not be sent.');
    } finally {
      this.el.send.disabled = false;
      this.el.input.focus();
    }
  }

  async #sendFile(f) {
    this.#error('');
    this.el.file.disabled = true;
    const pending = h('li', { class: 'chat-pending', dataset: { uploading: f.name } }, h('p', { class: 'chat-text' }, `Encrypting and sending ${f.name}…`));
    this.el.log.append(pending);
    try {
      await this.actions.sendFile(f);
    } catch (err) {
      this.#error(err.message || 'The file could not be sent.');
    } finally {
      pending.remove();
      this.el.file.disabled = false;
    }
  }

  async #download(a) {
    const li = a.closest('li');
    const err = li?.querySelector('.file-error');
    if (a.dataset.busy) return;
    a.dataset.busy = 'true';
    a.textContent = 'Decrypting…';
    try {
      const data = await this.actions.download(a.descriptor);
      const url = URL.createObjectURL(savedBlob(a.descriptor, data));
      this.urls.push(url);
      a.href = url;
      a.textContent = 'Save';
      a.dataset.ready = 'true';
      if (err) err.hidden = true;
      a.click(); // now a plain link to the blob: saves the file
    } catch (e) {
      a.textContent = 'Download';
      if (err) {
        err.textContent = e.message || 'The file could not be downloaded.';
        err.hidden = false;
      }
      if (li) li.dataset.error = e.code || 'failed';
    } finally {
      delete a.dataset.busy;
    }
  }

  #setUnread(n) {
    this.unread = n;
    this.el.unread.textContent = n ? String(n) : '';
    this.el.toggle.title = n ? `Chat: ${n} unread` : 'Chat';
  }

  #error(text) {
    this.el.error.textContent = text;
    this.el.error.hidden = !text;
  }
}
