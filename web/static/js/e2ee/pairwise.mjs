// Pairwise channels over ECDH P-256 and the key messages they carry.
// See docs/e2ee.md, "Pairwise channel".
import { MalformedError, Writer, compare, concat, utf8 } from './bytes.mjs';
import { AuthError, hkdf, importAesKey, TAG_LEN } from './sframe.mjs';

const subtle = globalThis.crypto.subtle;
export const LABEL_PAIRWISE = 'Conclave E2EE v1 pairwise';
export const LABEL_KEY_MESSAGE = 'Conclave E2EE v1 key message';
const VERSION = 1;
const PLAINTEXT_LEN = 2 + 1 + 1 + 32;
export const KEY_MESSAGE_LEN = 1 + 8 + PLAINTEXT_LEN + TAG_LEN;

export class ReplayError extends Error {
  constructor() { super('e2ee: replayed or reordered key message'); this.name = 'ReplayError'; }
}

// generateEphemeral makes this meeting's ECDH P-256 key pair; the raw
// public key goes in the announcement.
export async function generateEphemeral() {
  const pair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  return { privateKey: pair.privateKey, publicKey: new Uint8Array(await subtle.exportKey('raw', pair.publicKey)) };
}

async function importEcdhPublic(raw) {
  return subtle.importKey('raw', raw, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
}

// pairwiseKeys derives {send, recv, secret}: for direction d,
// HKDF-SHA-256(ikm = ECDH x-coordinate, salt = meeting id, info =
// "Conclave E2EE v1 pairwise" || low pub || high pub || d, 32); d = 0x01
// from the low key's owner to the high one, 0x02 the other way.
export async function pairwiseKeys(meetingId, selfPrivate, selfPublic, peerPublic) {
  const c = compare(selfPublic, peerPublic);
  if (c === 0) throw new Error('e2ee: pairwise channel with one\'s own key');
  const secret = new Uint8Array(await subtle.deriveBits({ name: 'ECDH', public: await importEcdhPublic(peerPublic) }, selfPrivate, 256));
  const [lo, hi] = c < 0 ? [selfPublic, peerPublic] : [peerPublic, selfPublic];
  const derive = (d) => hkdf('SHA-256', secret, utf8(meetingId), concat(utf8(LABEL_PAIRWISE), lo, hi, Uint8Array.of(d)), 32);
  const [sendDir, recvDir] = c < 0 ? [1, 2] : [2, 1];
  return { secret, send: await derive(sendDir), recv: await derive(recvDir) };
}

export function seqNonce(seq) {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setBigUint64(4, BigInt(seq));
  return n;
}

function keyMessageAAD(meetingId, from, to, seq) {
  return new Writer().raw(utf8(LABEL_KEY_MESSAGE)).str16(meetingId).str16(from).str16(to).u8(VERSION).u64(seq).bytes();
}

// Channel: this participant's channel to one peer in one meeting.
export class Channel {
  static async create(meetingId, selfId, selfPrivate, selfPublic, peerId, peerPublic) {
    const keys = await pairwiseKeys(meetingId, selfPrivate, selfPublic, peerPublic);
    const ch = new Channel();
    Object.assign(ch, { meetingId, selfId, peerId, sendSeq: 0, recvSeq: 0 });
    ch.sendKey = await importAesKey(keys.send);
    ch.recvKey = await importAesKey(keys.recv);
    return ch;
  }

  // seal returns the key message payload (before base64) for sender key k.
  seal(k) { return this.sealSeq(++this.sendSeq, k); }

  async sealSeq(seq, k) {
    const pt = new Uint8Array(PLAINTEXT_LEN);
    new DataView(pt.buffer).setUint16(0, k.index);
    pt[2] = k.generation; pt[3] = k.step;
    pt.set(k.key, 4);
    const head = new Writer().u8(VERSION).u64(seq).bytes();
    const ct = await subtle.encrypt({ name: 'AES-GCM', iv: seqNonce(seq), additionalData: keyMessageAAD(this.meetingId, this.selfId, this.peerId, seq) },
      this.sendKey, pt);
    return concat(head, new Uint8Array(ct));
  }

  // open decrypts a key message from the peer; refuses seq <= last seen.
  async open(b) {
    if (b.length !== KEY_MESSAGE_LEN || b[0] !== VERSION) throw new MalformedError('key message');
    const seq = new DataView(b.buffer, b.byteOffset + 1, 8).getBigUint64(0);
    if (seq <= BigInt(this.recvSeq)) throw new ReplayError();
    let pt;
    try {
      pt = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: seqNonce(seq), additionalData: keyMessageAAD(this.meetingId, this.peerId, this.selfId, seq) },
        this.recvKey, b.subarray(9)));
    } catch {
      throw new AuthError();
    }
    if (seq <= BigInt(this.recvSeq)) throw new ReplayError(); // raced with another open
    this.recvSeq = seq;
    return { index: new DataView(pt.buffer).getUint16(0), generation: pt[2], step: pt[3], key: pt.slice(4) };
  }
}
