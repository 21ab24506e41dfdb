// Opus parameters of the publish offer: in-band FEC (a lost packet is
// partly recovered from the next one) and DTX (silence is sent as a few
// comfort-noise packets), mono. Chromium lets a page change an Opus fmtp
// line of its offer before setLocalDescription.

/** The fmtp parameters set on every Opus payload type. */
export const OPUS_PARAMS = Object.freeze({ useinbandfec: '1', usedtx: '1', stereo: '0' });

/**
 * Sets `params` in the a=fmtp line of every Opus payload type of an SDP,
 * adding the line when there is none; other parameters and lines are kept.
 * @param {string} sdp
 * @param {Object<string, string>} [params]
 * @returns {string}
 */
export function mungeOpus(sdp, params = OPUS_PARAMS) {
  if (typeof sdp !== 'string' || sdp === '') return sdp;
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(eol);
  const opus = new Set();
  for (const l of lines) {
    const m = /^a=rtpmap:(\d+) opus\/48000/i.exec(l);
    if (m) opus.add(m[1]);
  }
  if (opus.size === 0) return sdp;
  const withFmtp = new Set();
  const out = [];
  for (const l of lines) {
    const f = /^a=fmtp:(\d+) (.*)$/.exec(l);
    if (f && opus.has(f[1])) {
      withFmtp.add(f[1]);
      out.push(`a=fmtp:${f[1]} ${mergeParams(f[2], params)}`);
      continue;
    }
    out.push(l);
  }
  // An Opus payload type without an fmtp line gets one right after its rtpmap.
  for (const pt of opus) {
    if (withFmtp.has(pt)) continue;
    const i = out.findIndex((l) => l.startsWith(`a=rtpmap:${pt} `));
    out.splice(i + 1, 0, `a=fmtp:${pt} ${mergeParams('', params)}`);
  }
  return out.join(eol);
}

/**
 * Merges parameters into an fmtp parameter list ("a=1;b=2"), keeping the
 * order of the existing ones and appending new ones.
 * @param {string} list
 * @param {Object<string, string>} params
 * @returns {string}
 */
export function mergeParams(list, params) {
  const entries = String(list).split(';').map((s) => s.trim()).filter(Boolean).map((s) => {
    const i = s.indexOf('=');
    return i < 0 ? [s, null] : [s.slice(0, i).trim(), s.slice(i + 1).trim()];
  });
  for (const [k, v] of Object.entries(params)) {
    const e = entries.find(([name]) => name.toLowerCase() === k.toLowerCase());
    if (e) e[1] = v;
    else entries.push([k, v]);
  }
  return entries.map(([k, v]) => (v === null ? k : `${k}=${v}`)).join(';');
}
