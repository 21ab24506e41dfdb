// The meeting's side panels (participants, lobby, settings): one open at a
// time, each opened and closed by a toggle button whose aria-pressed tells
// whether its panel shows.

/** A set of side panels of which at most one is open. */
export class Panels {
  constructor() {
    /** @type {Map<string, {panel: HTMLElement, button: HTMLElement}>} */
    this.items = new Map();
  }

  /**
   * Adds a panel and the button that toggles it.
   * @param {string} name
   * @param {HTMLElement} panel
   * @param {HTMLElement} button
   */
  add(name, panel, button) {
    this.items.set(name, { panel, button });
    button.setAttribute('aria-controls', panel.id);
    button.setAttribute('aria-pressed', String(!panel.hidden));
    button.addEventListener('click', () => this.toggle(name));
  }

  /**
   * Opens a panel (closing the others) or closes it if it is open.
   * @param {string} name
   */
  toggle(name) {
    const it = this.items.get(name);
    if (!it) return;
    if (it.panel.hidden) this.open(name);
    else this.close(name);
  }

  /**
   * Opens a panel and closes the others.
   * @param {string} name
   */
  open(name) {
    for (const [n, it] of this.items) this.#set(it, n === name);
  }

  /**
   * Closes a panel.
   * @param {string} name
   */
  close(name) {
    const it = this.items.get(name);
    if (it) this.#set(it, false);
  }

  #set(it, open) {
    it.panel.hidden = !open;
    it.button.setAttribute('aria-pressed', String(open));
  }
}
