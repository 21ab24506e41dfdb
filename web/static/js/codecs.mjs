// Video codec preferences for published video: VP8 first (VP9 first on
// request), the other allowed.

const HELPERS = ['video/rtx', 'video/red', 'video/ulpfec', 'video/flexfec-03'];

/**
 * Orders codec capabilities (RTCRtpCodec[]) for setCodecPreferences: every
 * VP8 entry, then every VP9 entry (the other way round when `first` is
 * 'vp9'), then the repair codecs (rtx, red, ulpfec, flexfec); other codecs
 * are dropped since the server offers only VP8 and VP9. Returns null when
 * neither VP8 nor VP9 is available, in which case the browser's default
 * order should be kept.
 * @param {{mimeType: string}[]} codecs
 * @param {'vp8'|'vp9'} [first]
 * @returns {{mimeType: string}[] | null}
 */
export function preferVideoCodecs(codecs, first = 'vp8') {
  const by = (mime) => codecs.filter((c) => String(c.mimeType).toLowerCase() === mime);
  const order = first === 'vp9' ? ['video/vp9', 'video/vp8'] : ['video/vp8', 'video/vp9'];
  const main = order.flatMap(by);
  if (main.length === 0) return null;
  return [...main, ...HELPERS.flatMap(by)];
}
