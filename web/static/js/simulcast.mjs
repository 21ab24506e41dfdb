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
 * defaults: 150, 500 and 1700 kbit/s. For a capture of at least 960x540;
 * smaller ones get fewer layers (see cameraLayers).
 */
export const CAMERA_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_700_000 }),
]);

/**
 * Fewest pixels of a capture for three layers, and for two. libwebrtc
 * encodes no more simulcast layers than its table allows for the input size
 * (3 from 960x540, 2 from 480x270, else 1), and the layers beyond are simply
 * not sent: with a 640x480 camera and q, h, f active, Chromium 156 sends q
 * and h, with q and f only q, and f only when it is the only active one.
 * The server would then wait for a layer that never comes.
 */
export const THREE_LAYERS_PIXELS = 960 * 540;
export const TWO_LAYERS_PIXELS = 480 * 270;
/** Lines of the low layer when there are two (as LiveKit's h180 preset). */
export const LOW_LAYER_LINES = 180;

/**
 * The VP8 simulcast layers for a camera capturing width x height: three
 * (q, h, f) from 960x540; two from 480x270, q about 180 lines high and f at
 * full size (640x480 gives 240x180 and 640x480); one encoding below. An
 * unknown size gets three, as before the size is known.
 * @param {{width?: number, height?: number}} [size] the track's settings
 * @returns {RTCRtpEncodingParameters[]} fresh objects the caller may keep
 */
export function cameraLayers(size) {
  const w = size?.width ?? 0, h = size?.height ?? 0;
  const pixels = w * h;
  const [q, , f] = CAMERA_LAYERS;
  if (!(pixels > 0) || pixels >= THREE_LAYERS_PIXELS) return CAMERA_LAYERS.map((l) => ({ ...l }));
  if (pixels >= TWO_LAYERS_PIXELS) {
    const scale = Math.max(2, Math.min(w, h) / LOW_LAYER_LINES);
    return [{ ...q, scaleResolutionDownBy: scale }, { ...f }];
  }
  return [{ maxBitrate: f.maxBitrate }];
}

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
 * @param {{width?: number, height?: number}} [size] the camera's capture size
 *   (MediaStreamTrack.getSettings()), which bounds the VP8 layers
 * @returns {RTCRtpEncodingParameters[]|undefined} fresh objects the caller may keep
 */
export function sendEncodings(source, codec = 'vp8', size = undefined) {
  if (source === 'camera') return codec === 'vp9' ? [{ ...CAMERA_SVC }] : cameraLayers(size);
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
