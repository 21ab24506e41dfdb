// The `layout` message (docs/protocol.md): the size, in device pixels, at
// which each received video track is rendered, so that the server forwards
// the smallest layer that looks sharp (and nothing for a hidden tile).
// LayoutReporter decides what to send and when: only entries that changed,
// at most one message per LAYOUT_INTERVAL_MS, everything again after a new
// subscribe-offer or a resume. No DOM: the page measures (tilesizes.mjs).

/** Shortest time between two layout messages (at most 4 per second). */
export const LAYOUT_INTERVAL_MS = 250;
/** How long a first change waits for others of the same moment. */
export const LAYOUT_BATCH_MS = 30;
/** Largest dimension the server accepts. */
export const MAX_TRACK_SIZE = 16384;

/** A hidden track: the server stops forwarding it. */
export const HIDDEN = Object.freeze({ width: 0, height: 0 });

/**
 * The size to report for a tile.
 * @param {object} p
 * @param {number} p.width CSS pixels
 * @param {number} p.height CSS pixels
 * @param {number} [p.dpr] devicePixelRatio
 * @param {boolean} [p.visible] on screen, in a visible page, showing video
 * @returns {{width: number, height: number}} device pixels, 0x0 when not visible
 */
export function renderSize({ width, height, dpr = 1, visible = true }) {
  if (!visible) return { ...HIDDEN };
  const d = Number.isFinite(dpr) && dpr > 0 ? dpr : 1;
  const w = clamp(Math.round(width * d)), h = clamp(Math.round(height * d));
  return w === 0 || h === 0 ? { ...HIDDEN } : { width: w, height: h };
}

function clamp(n) {
  return Number.isFinite(n) ? Math.min(Math.max(n, 0), MAX_TRACK_SIZE) : 0;
}

/** What the page wants the server to know, and what it last told it. */
export class LayoutState {
  constructor() {
    /** @type {Map<string, {width: number, height: number}>} sub mid -> wanted size */
    this.want = new Map();
    /** @type {Map<string, {width: number, height: number}>} sub mid -> size last sent */
    this.sent = new Map();
  }

  /**
   * Sets the size of a mid.
   * @param {string} mid
   * @param {{width: number, height: number}} size
   */
  set(mid, size) {
    this.want.set(mid, { width: size.width, height: size.height });
  }

  /**
   * Forgets every mid not in `mids` (its track is gone).
   * @param {Iterable<string>} mids
   */
  retain(mids) {
    const keep = new Set(mids);
    for (const m of [...this.want.keys()]) if (!keep.has(m)) this.want.delete(m);
    for (const m of [...this.sent.keys()]) if (!keep.has(m)) this.sent.delete(m);
  }

  /** Sends every entry again with the next message. */
  resendAll() {
    this.sent.clear();
  }

  /** Forgets everything (new peer connections). */
  clear() {
    this.want.clear();
    this.sent.clear();
  }

  /**
   * The entries that differ from what was sent, or null.
   * @returns {Object<string, {width: number, height: number}>|null}
   */
  changes() {
    let out = null;
    for (const [mid, s] of this.want) {
      const was = this.sent.get(mid);
      if (was && was.width === s.width && was.height === s.height) continue;
      out ??= {};
      out[mid] = { width: s.width, height: s.height };
    }
    return out;
  }

  /**
   * Records entries as sent.
   * @param {Object<string, {width: number, height: number}>} layout
   */
  commit(layout) {
    for (const [mid, s] of Object.entries(layout)) this.sent.set(mid, { ...s });
  }
}

/**
 * Sends a LayoutState's changes, throttled: a change is sent after
 * LAYOUT_BATCH_MS, and then no message goes out for LAYOUT_INTERVAL_MS.
 */
export class LayoutReporter {
  /**
   * @param {object} opts
   * @param {(layout: Object<string, {width: number, height: number}>) => boolean} opts.send
   *   sends a layout message; false when it could not (it is sent again later)
   * @param {(fn: () => void, ms: number) => any} opts.setTimeout
   * @param {(t: any) => void} opts.clearTimeout
   */
  constructor({ send, setTimeout, clearTimeout }) {
    this.state = new LayoutState();
    this.send = send;
    this.setTimeout = setTimeout;
    this.clearTimeout = clearTimeout;
    this.timer = null;
  }

  /**
   * Replaces the wanted sizes: mid -> size for every track with a known size.
   * Mids absent from `sizes` are forgotten.
   * @param {Map<string, {width: number, height: number}>} sizes
   */
  update(sizes) {
    this.state.retain(sizes.keys());
    for (const [mid, s] of sizes) this.state.set(mid, s);
    this.schedule();
  }

  /** Sends the full map with the next message (a new subscribe-offer, a resume). */
  resendAll() {
    this.state.resendAll();
    this.schedule();
  }

  /** Forgets everything and stops (new peer connections, the end). */
  reset() {
    this.state.clear();
    if (this.timer) this.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Arranges for the pending changes to be sent. */
  schedule() {
    if (this.timer || !this.state.changes()) return;
    this.timer = this.setTimeout(() => this.#fire(), LAYOUT_BATCH_MS);
  }

  #fire() {
    this.timer = null;
    const changes = this.state.changes();
    if (!changes) return; // the quiet period ends
    if (!this.send(changes)) return; // not connected: resendAll after the welcome
    this.state.commit(changes);
    // The interval's timer keeps later changes waiting; when it fires with
    // nothing to send, the next change goes out after LAYOUT_BATCH_MS.
    this.timer = this.setTimeout(() => this.#fire(), LAYOUT_INTERVAL_MS);
  }
}
