// What the publisher sends for each video source, and how the server's
// `layers` messages (docs/protocol.md) switch simulcast encodings on and
// off. Pure data: session.mjs applies it to RTCRtpSenders.
//
// Every encoding of a sender goes through the sender's one E2EE transform
// (e2ee/frames.mjs): simulcast changes what is encoded, never whether it is
// encrypted.

/**
 * The camera's simulcast layers for VP8, lowest first as the server indexes
 * them (the order of the offer's a=simulcast line). Bitrates as LiveKit's
 * defaults: 150, 500 and 1700 kbit/s.
 */
export const CAMERA_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_700_000 }),
]);

/** The camera's one encoding for VP9: three spatial and three temporal layers (SVC). */
export const CAMERA_SVC = Object.freeze({ scalabilityMode: 'L3T3_KEY', maxBitrate: 2_000_000 });

/**
 * A screen share: one encoding, no simulcast; text stays sharp (the track's
 * contentHint is 'detail' and the sender keeps the resolution, dropping
 * frames rather than pixels under congestion).
 */
export const SCREEN_ENCODING = Object.freeze({ maxBitrate: 2_500_000 });
export const SCREEN_DEGRADATION = 'maintain-resolution';

/** Video codecs the publisher can prefer. */
export const VIDEO_CODECS = Object.freeze(['vp8', 'vp9']);

/**
 * The sendEncodings of a new transceiver for a source, or undefined when the
 * browser's default (one encoding) is right: audio.
 * @param {string} source microphone, camera, screen, screen-audio
 * @param {'vp8'|'vp9'} [codec] the preferred video codec
 * @returns {RTCRtpEncodingParameters[]|undefined} fresh objects the caller may keep
 */
export function sendEncodings(source, codec = 'vp8') {
  if (source === 'camera') return codec === 'vp9' ? [{ ...CAMERA_SVC }] : CAMERA_LAYERS.map((l) => ({ ...l }));
  if (source === 'screen') return [{ ...SCREEN_ENCODING }];
  return undefined;
}

/**
 * Applies a `layers` message to a sender's encodings, in place:
 * encodings[i].active = active[i] for every i both have. The server's word
 * is followed exactly, also when it pauses every layer.
 * @param {{active?: boolean}[]} encodings from RTCRtpSender.getParameters()
 * @param {boolean[]} active from `layers`, lowest layer first
 * @returns {boolean} whether anything changed (setParameters is needed)
 */
export function applyActive(encodings, active) {
  if (!Array.isArray(encodings) || !Array.isArray(active)) return false;
  let changed = false;
  const n = Math.min(encodings.length, active.length);
  for (let i = 0; i < n; i++) {
    const want = active[i] === true;
    // An encoding without the field is active (RTCRtpEncodingParameters default).
    if ((encodings[i].active !== false) !== want) {
      encodings[i].active = want;
      changed = true;
    }
  }
  return changed;
}

/**
 * Whether a `layers` message is well formed enough to act on.
 * @param {any} m
 * @returns {boolean}
 */
export function isLayersMessage(m) {
  return typeof m?.mid === 'string' && m.mid !== '' && Array.isArray(m.active) && m.active.every((x) => typeof x === 'boolean');
}
