// From the subscribe-offer tracks map and the participant list to the tiles
// a meeting shows. Pure data: the session fills MediaStreams from the
// groups, the page renders the tiles.

/**
 * The tile a source belongs to: a participant's microphone and camera share
 * the "camera" tile, a screen share and its audio the "screen" tile.
 * @param {string} source
 * @returns {'camera'|'screen'}
 */
export function tileSource(source) {
  return source === 'screen' || source === 'screen-audio' ? 'screen' : 'camera';
}

/**
 * The key of a participant's tile.
 * @param {string} participant
 * @param {'camera'|'screen'} source
 * @returns {string}
 */
export function tileKey(participant, source) {
  return `${participant}/${source}`;
}

/**
 * @typedef {object} MediaGroup
 * @property {string} key tileKey(participant, source)
 * @property {string} participant
 * @property {'camera'|'screen'} source
 * @property {string|null} audio mid of the audio track
 * @property {string|null} video mid of the video track
 * @property {string} stream the msid stream id announced by the server
 */

/**
 * Groups the tracks of a subscribe-offer by tile. Entries without a
 * participant are ignored; the kind decides audio or video, falling back
 * to the source when the kind is missing.
 * @param {Object<string, {participant: string, source: string, kind?: string, stream?: string}>} tracks mid -> track
 * @returns {Map<string, MediaGroup>} key -> group, in mid order
 */
export function mediaGroups(tracks) {
  const groups = new Map();
  const mids = Object.keys(tracks ?? {}).sort(compareMids);
  for (const mid of mids) {
    const t = tracks[mid];
    if (!t || !t.participant) continue;
    const source = tileSource(t.source);
    const key = tileKey(t.participant, source);
    let g = groups.get(key);
    if (!g) {
      g = { key, participant: t.participant, source, audio: null, video: null, stream: t.stream ?? '' };
      groups.set(key, g);
    }
    const kind = t.kind || (t.source === 'microphone' || t.source === 'screen-audio' ? 'audio' : 'video');
    if (kind === 'audio') g.audio ??= mid;
    else g.video ??= mid;
  }
  return groups;
}

// Numeric mids ("0", "1", "10") in numeric order, others after, by text.
function compareMids(a, b) {
  const na = /^\d+$/.test(a), nb = /^\d+$/.test(b);
  if (na && nb) return Number(a) - Number(b);
  if (na !== nb) return na ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The key of the local participant's self-view tile. */
export const SELF_KEY = 'self/camera';

/**
 * @typedef {object} Tile
 * @property {string} key
 * @property {string} participant
 * @property {'camera'|'screen'} source
 * @property {string} name
 * @property {boolean} audio microphone on (always true for screen tiles)
 * @property {boolean} video picture present
 * @property {boolean} self the local participant's own view
 * @property {string} role host, participant, guest, or '' when the server did not say
 * @property {boolean} muted microphone muted by a host
 */

/**
 * The tiles to show: screen shares first (they are what people look at),
 * then the local participant's self view, then one camera tile per remote
 * participant, whether or not it publishes anything: those showing video
 * first, each group in the order given, so that in a crowded meeting the
 * pictures are on screen and the audio-only tiles are the ones that may
 * scroll away.
 * Screen tiles appear only for participants in the list, so that media
 * arriving just before its participant-joined (or just after its
 * participant-left) shows no nameless tile.
 * @param {object} p
 * @param {{id: string, name: string, audio: boolean, video: boolean, screen: boolean, role?: string, muted?: boolean}|null} p.self
 * @param {{id: string, name: string, audio: boolean, video: boolean, screen: boolean, role?: string, muted?: boolean}[]} p.participants the others
 * @param {Iterable<{key: string, participant: string, source: string}>} p.groups the remote media
 * @returns {Tile[]}
 */
export function buildTiles({ self, participants, groups }) {
  const screens = [];
  const cameras = [];
  const known = new Map(participants.map((x) => [x.id, x]));
  for (const g of groups) {
    const who = known.get(g.participant);
    if (g.source !== 'screen' || !who) continue;
    screens.push({ key: g.key, participant: who.id, source: 'screen', name: who.name, audio: true, video: true, self: false, role: who.role ?? '', muted: false });
  }
  if (self) {
    cameras.push({ key: SELF_KEY, participant: self.id || '', source: 'camera', name: self.name, audio: !!self.audio, video: !!self.video, self: true, role: self.role ?? '', muted: !!self.muted });
  }
  const videoFirst = [...participants.filter((x) => x.video), ...participants.filter((x) => !x.video)];
  for (const who of videoFirst) {
    cameras.push({ key: tileKey(who.id, 'camera'), participant: who.id, source: 'camera', name: who.name, audio: !!who.audio, video: !!who.video, self: false, role: who.role ?? '', muted: !!who.muted });
  }
  return [...screens, ...cameras];
}

/**
 * How tightly the grid packs its tiles: '' for a few (large tiles), 'dense'
 * and then 'denser' as the meeting grows, so that a typical laptop screen
 * shows about 25 tiles without scrolling.
 * @param {number} count tiles on the stage
 * @returns {''|'dense'|'denser'}
 */
export function gridDensity(count) {
  if (count <= 6) return '';
  return count <= 16 ? 'dense' : 'denser';
}

/**
 * Compares two key lists.
 * @param {Iterable<string>} before
 * @param {Iterable<string>} after
 * @returns {{added: string[], removed: string[], kept: string[]}}
 */
export function diffKeys(before, after) {
  const a = new Set(before), b = new Set(after);
  return {
    added: [...b].filter((k) => !a.has(k)),
    removed: [...a].filter((k) => !b.has(k)),
    kept: [...b].filter((k) => a.has(k)),
  };
}
