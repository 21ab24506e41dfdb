// Media frame encryption: [clear prefix][SFrame header][ciphertext][tag],
// the clear prefix being SFrame metadata (AAD = header || prefix).
// Sender and Receiver are what the RTCRtpScriptTransform worker uses.
import { MalformedError, concat } from './bytes.mjs';
import { SFrameKey, parseHeader } from './sframe.mjs';
import { KeyRing, kidOf, newSenderKey, ratchet, splitKid } from './keys.mjs';
import { sealChat, openChat } from './chat.mjs';

export const CODECS = ['opus', 'vp8', 'vp9', 'h264'];
export const MAX_COUNTER = 2 ** 48 - 1;

export class UnsupportedCodecError extends Error {
  constructor(c) { super(`e2ee: codec ${c} not supported for frame encryption`); this.name = 'UnsupportedCodecError'; }
}

// codecFromMimeType maps "video/VP8", "audio/opus", ... to a codec name.
export function codecFromMimeType(mime) {
  const c = String(mime).toLowerCase().split('/')[1];
  if (!CODECS.includes(c)) throw new UnsupportedCodecError(mime);
  return c;
}

// clearPrefix returns how many leading bytes stay clear: VP8 key frame
// (bit 0 of byte 0 is 0) 10, other VP8 frames 1, VP9 and Opus 0.
export function clearPrefix(codec, frame) {
  let n;
  switch (codec) {
    case 'opus': case 'vp9': return 0;
    case 'vp8':
      if (frame.length === 0) throw new MalformedError('empty VP8 frame');
      n = (frame[0] & 1) === 0 ? 10 : 1;
      break;
    default: throw new UnsupportedCodecError(codec);
  }
  if (frame.length < n) throw new MalformedError(`${codec} frame of ${frame.length} bytes is shorter than its clear prefix`);
  return n;
}

// Sender encrypts one participant's frames under its current sender key.
export class Sender {
  // create starts with key k (default: a fresh key at generation 0).
  static async create(index, k = newSenderKey(index, 0)) {
    const s = new Sender();
    s.chatSeq = 0;
    await s.setKey(k);
    return s;
  }

  async setKey(k) {
    const sf = await SFrameKey.derive(k.key, kidOf(k));
    this.key = k; this.sf = sf; this.ctr = 0;
  }

  // ratchet (a participant joined): returns {key, fresh}. Send key to the
  // newcomer only, or to everyone when fresh (step 255 reached).
  async ratchet() {
    if (this.key.step === 255) return { key: await this.rotate(), fresh: true };
    const k = await ratchet(this.key);
    await this.setKey(k);
    return { key: k, fresh: false };
  }

  // rotate (a participant left): a fresh key of the next generation, to be
  // sent to every remaining participant.
  async rotate() {
    const k = newSenderKey(this.key.index, (this.key.generation + 1) & 0xff);
    await this.setKey(k);
    return k;
  }

  async encryptFrame(codec, frame) {
    const n = clearPrefix(codec, frame);
    if (this.ctr > MAX_COUNTER) throw new Error('e2ee: frame counter exhausted; rotate the sender key');
    const ctr = this.ctr++;
    const prefix = frame.subarray(0, n);
    return concat(prefix, await this.sf.seal(ctr, prefix, frame.subarray(n)));
  }

  // sealChat signs (device: ECDSA private CryptoKey) and encrypts a chat
  // message {kind, text | file, timestampMs}.
  async sealChat(meetingId, participantId, device, msg) {
    const seq = ++this.chatSeq;
    return sealChat(meetingId, participantId, this.key, seq, msg, device);
  }
}

// Receiver decrypts the frames and chat of one remote sender.
export class Receiver {
  constructor(senderIndex, ringOptions = {}) {
    this.ring = new KeyRing(senderIndex, ringOptions);
    this.chatSeq = 0;
    /** @type {{generation: number, step: number}|null} the key version of the last frame decrypted */
    this.lastKey = null;
  }

  addKey(k) { return this.ring.add(k); }

  // generationOf returns the key generation a frame of this sender names,
  // or null when it names none (malformed, or another sender's KID).
  generationOf(codec, frame) {
    try {
      const { kid } = parseHeader(frame.subarray(clearPrefix(codec, frame)));
      const parts = splitKid(kid);
      return parts && parts.index === this.ring.index ? parts.generation : null;
    } catch {
      return null;
    }
  }

  async decryptFrame(codec, frame) {
    const n = clearPrefix(codec, frame);
    const { kid, ctr, length } = parseHeader(frame.subarray(n));
    const parts = splitKid(kid);
    if (!parts || parts.index !== this.ring.index) throw new Error(`e2ee: frame KID ${kid} is not from sender ${this.ring.index}`);
    const { entry, derived } = await this.ring.lookup(parts.generation, parts.step);
    const prefix = frame.subarray(0, n);
    const pt = await entry.sf.openParsed(prefix, frame.subarray(n, n + length), ctr, frame.subarray(n + length));
    this.ring.used(entry, derived);
    this.lastKey = { generation: parts.generation, step: parts.step };
    return concat(prefix, pt);
  }

  // openChat decrypts and verifies a chat message of this sender; device is
  // its ECDSA public CryptoKey from the verified announcement.
  openChat(meetingId, participantId, device, payload) {
    return openChat(this, meetingId, participantId, device, payload);
  }
}
