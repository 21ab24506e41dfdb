// Where each tile goes: the grid (all tiles alike) or the speaker layout
// (one large tile, the others as a strip of thumbnails), and a tile in full
// screen hiding all others. Pure data: meeting.mjs renders it, and the
// sizes that follow reach the server as `layout` (layout.mjs).

/** The two layouts of the stage. */
export const LAYOUTS = Object.freeze(['grid', 'speaker']);

/**
 * @typedef {object} Arrangement
 * @property {string[]} order tile keys in display order
 * @property {Map<string, 'grid'|'main'|'strip'>} slots key -> slot
 * @property {string} main the key of the large tile ('' in the grid)
 * @property {string} fullscreen the key of the tile in full screen, or ''
 */

/**
 * Arranges tiles. In the speaker layout the large tile is the pinned one,
 * else the first screen share, else the camera of the active speaker, else
 * the first remote camera, else the first tile; the others follow in their
 * order as the strip. A full-screen key that names no tile is dropped.
 * @param {{key: string, participant: string, source: string, self: boolean}[]} tiles in grid order
 * @param {object} [opts]
 * @param {'grid'|'speaker'} [opts.layout]
 * @param {string} [opts.speaker] participant id of the (remote) active speaker
 * @param {string} [opts.pinned] key of the tile pinned to the large slot
 * @param {string} [opts.fullscreen] key of the tile in full screen
 * @returns {Arrangement}
 */
export function arrange(tiles, { layout = 'grid', speaker = '', pinned = '', fullscreen = '' } = {}) {
  const keys = new Set(tiles.map((t) => t.key));
  const full = keys.has(fullscreen) ? fullscreen : '';
  if (layout !== 'speaker' || tiles.length === 0) {
    return { order: tiles.map((t) => t.key), slots: new Map(tiles.map((t) => [t.key, 'grid'])), main: '', fullscreen: full };
  }
  const main = (keys.has(pinned) && pinned)
    || tiles.find((t) => t.source === 'screen')?.key
    || tiles.find((t) => t.source === 'camera' && !t.self && speaker && t.participant === speaker)?.key
    || tiles.find((t) => t.source === 'camera' && !t.self)?.key
    || tiles[0].key;
  const slots = new Map(tiles.map((t) => [t.key, t.key === main ? 'main' : 'strip']));
  return { order: [main, ...tiles.map((t) => t.key).filter((k) => k !== main)], slots, main, fullscreen: full };
}

/**
 * The participant whose camera the speaker layout shows large: the active
 * speaker, except that the local participant speaking keeps the previous
 * one (nobody wants to watch themselves).
 * @param {string} previous the remote speaker so far ('' for none)
 * @param {string} speaker from the `speaker` message
 * @param {string} selfId the local participant's id
 * @returns {string}
 */
export function remoteSpeaker(previous, speaker, selfId) {
  return speaker && speaker !== selfId ? speaker : previous;
}
