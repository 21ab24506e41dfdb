// Measures the remote tiles of the meeting page: the size at which each
// renders its video, in device pixels, or 0x0 when it cannot be seen (the
// tile is hidden or scrolled away, the page is hidden, or the participant's
// camera is off). The page passes the sizes to the session, which sends
// them as `layout` (layout.mjs).

import { renderSize } from './layout.mjs';

/** Watches tiles with ResizeObserver, IntersectionObserver and page visibility. */
export class TileSizes {
  /**
   * @param {(key: string, size: {width: number, height: number}) => void} onChange
   *   called when a tile's reported size changes
   */
  constructor(onChange) {
    this.onChange = onChange;
    /** @type {Map<string, {el: Element, width: number, height: number, measured: boolean, intersecting: boolean, video: boolean, last: string}>} */
    this.tiles = new Map();
    /** @type {WeakMap<Element, string>} */
    this.keys = new WeakMap();
    this.resize = new ResizeObserver((entries) => {
      for (const e of entries) {
        const t = this.#tile(e.target);
        if (!t) continue;
        const box = e.borderBoxSize?.[0];
        t.width = box ? box.inlineSize : e.contentRect.width;
        t.height = box ? box.blockSize : e.contentRect.height;
        t.measured = true;
      }
      this.#reportAll();
    });
    this.intersection = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const t = this.#tile(e.target);
        if (t) t.intersecting = e.isIntersecting;
      }
      this.#reportAll();
    });
    this.refresh = () => this.#reportAll();
    document.addEventListener('visibilitychange', this.refresh);
    window.addEventListener('resize', this.refresh); // devicePixelRatio changes with zoom
  }

  /**
   * Starts watching a tile.
   * @param {string} key
   * @param {Element} el the tile (its video fills it)
   * @param {boolean} video whether the tile shows video (camera on)
   */
  observe(key, el, video) {
    if (this.tiles.get(key)?.el === el) return;
    this.unobserve(key);
    this.tiles.set(key, { el, width: 0, height: 0, measured: false, intersecting: true, video, last: '' });
    this.keys.set(el, key);
    this.resize.observe(el);
    this.intersection.observe(el);
  }

  /**
   * Says whether a tile shows video; without, it reports 0x0.
   * @param {string} key
   * @param {boolean} video
   */
  setVideo(key, video) {
    const t = this.tiles.get(key);
    if (!t || t.video === video) return;
    t.video = video;
    this.#report(key, t);
  }

  /** @param {string} key */
  unobserve(key) {
    const t = this.tiles.get(key);
    if (!t) return;
    this.resize.unobserve(t.el);
    this.intersection.unobserve(t.el);
    this.keys.delete(t.el);
    this.tiles.delete(key);
  }

  #tile(el) {
    const key = this.keys.get(el);
    return key === undefined ? null : this.tiles.get(key) ?? null;
  }

  #reportAll() {
    for (const [key, t] of this.tiles) this.#report(key, t);
  }

  #report(key, t) {
    if (!t.measured) return;
    const visible = document.visibilityState !== 'hidden' && t.intersecting && t.video;
    const size = renderSize({ width: t.width, height: t.height, dpr: window.devicePixelRatio, visible });
    const sig = `${size.width}x${size.height}`;
    if (sig === t.last) return;
    t.last = sig;
    this.onChange(key, size);
  }
}
