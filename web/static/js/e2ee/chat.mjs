// Chat messages: signed by the device key, encrypted under the chat key
// derived from the sender's current sender key. See docs/e2ee.md.
import { MalformedError, Reader, Writer, concat, utf8 } from './bytes.mjs';
import { SignatureError, sign, verify, SIGNATURE_LEN } from './identity.mjs';
import { AuthError, TAG_LEN, importAesKey } from './sframe.mjs';
import { chatKey } from './keys.mjs';
import { ReplayError, seqNonce } from './pairwise.mjs';

const subtle = globalThis.crypto.subtle;
export const CHAT_TEXT = 1;
export const CHAT_FILE = 2;
export const LABEL_CHAT_AAD = 'Conclave E2EE v1 chat message';
const CHAT_TAG = utf8('CCHT');
const VERSION = 1;
const HEADER_LEN = 13;
const MAX_BODY = 64 * 1024;
const OVERHEAD = HEADER_LEN + 8 + 1 + 4 + SIGNATURE_LEN + TAG_LEN;

// encodeFileDescriptor: id (16) | name str16 | size u64 | mime type str16
// | key (32) | sha256 (32).
export function encodeFileDescriptor(f) {
  const nl = utf8(f.name).length;
  if (nl === 0 || nl > 255 || utf8(f.mimeType ?? '').length > 127 || f.id.length !== 16 || f.key.length !== 32 || f.sha256.length !== 32) {
    throw new Error('e2ee: invalid file descriptor');
  }
  return new Writer().raw(f.id).str16(f.name).u64(f.size).str16(f.mimeType ?? '').raw(f.key).raw(f.sha256).bytes();
}

export function decodeFileDescriptor(b) {
  const r = new Reader(b);
  const f = { id: r.take(16).slice() };
  f.name = r.str16(255);
  f.size = Number(r.u64());
  f.mimeType = r.str16(127);
  f.key = r.take(32).slice();
  f.sha256 = r.take(32).slice();
  if (!r.done() || !f.name) throw new MalformedError('file descriptor');
  return f;
}

function chatHeader(k, seq) {
  return new Writer().u8(VERSION).u16(k.index).u8(k.generation).u8(k.step).u64(seq).bytes();
}

function chatAAD(meetingId, participantId, header) {
  return new Writer().raw(utf8(LABEL_CHAT_AAD)).str16(meetingId).str16(participantId).raw(header).bytes();
}

// chatSigned: "CCHT" | meeting id str16 | participant id str16 | header |
// timestamp i64 | kind u8 | body bytes32.
export function chatSigned(meetingId, participantId, header, timestampMs, kind, body) {
  return new Writer().raw(CHAT_TAG).str16(meetingId).str16(participantId).raw(header).i64(timestampMs).u8(kind).bytes32(body).bytes();
}

function chatBody(msg) {
  if (msg.kind === CHAT_TEXT) {
    const b = utf8(msg.text);
    if (b.length > MAX_BODY) throw new Error('e2ee: chat text longer than 64 KiB');
    return b;
  }
  if (msg.kind === CHAT_FILE) return encodeFileDescriptor(msg.file);
  throw new Error(`e2ee: chat kind ${msg.kind}`);
}

// sealChat: header (version u8 | index u16 | generation u8 | step u8 | seq
// u64) || AES-256-GCM(chat key, nonce 0^4 || seq, AAD "Conclave E2EE v1
// chat message" | meeting id str16 | participant id str16 | header;
// timestamp i64 | kind u8 | body bytes32 | signature). device is an ECDSA
// private CryptoKey, or a function(bytes) returning a signature.
export async function sealChat(meetingId, participantId, senderKey, seq, msg, device) {
  const body = chatBody(msg);
  const header = chatHeader(senderKey, seq);
  const signed = chatSigned(meetingId, participantId, header, msg.timestampMs, msg.kind, body);
  const sig = typeof device === 'function' ? await device(signed) : await sign(device, signed);
  const pt = new Writer().i64(msg.timestampMs).u8(msg.kind).bytes32(body).raw(sig).bytes();
  const key = await importAesKey(await chatKey(senderKey));
  const ct = await subtle.encrypt({ name: 'AES-GCM', iv: seqNonce(seq), additionalData: chatAAD(meetingId, participantId, header) }, key, pt);
  return concat(header, new Uint8Array(ct));
}

// openChat (used by Receiver.openChat) returns {kind, text | file,
// timestampMs, index, generation, step, seq}.
export async function openChat(receiver, meetingId, participantId, devicePublic, b) {
  if (b.length < OVERHEAD || b[0] !== VERSION) throw new MalformedError('chat message');
  const header = b.subarray(0, HEADER_LEN);
  const hv = new DataView(b.buffer, b.byteOffset, HEADER_LEN);
  const m = { index: hv.getUint16(1), generation: b[3], step: b[4], seq: Number(hv.getBigUint64(5)) };
  if (m.index !== receiver.ring.index) throw new Error(`e2ee: chat message from sender ${m.index} given to the receiver of ${receiver.ring.index}`);
  if (m.seq <= receiver.chatSeq) throw new ReplayError();
  const { entry, derived } = await receiver.ring.lookup(m.generation, m.step);
  const key = await importAesKey(await chatKey(entry.key));
  let pt;
  try {
    pt = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: seqNonce(m.seq), additionalData: chatAAD(meetingId, participantId, header) },
      key, b.subarray(HEADER_LEN)));
  } catch {
    throw new AuthError();
  }
  const r = new Reader(pt);
  m.timestampMs = Number(r.i64());
  m.kind = r.u8();
  const n = r.u32();
  if (n > MAX_BODY) throw new MalformedError('chat body');
  const body = r.take(n);
  const sig = r.take(SIGNATURE_LEN);
  if (!r.done()) throw new MalformedError('chat message');
  if (!(await verify(devicePublic, chatSigned(meetingId, participantId, header, m.timestampMs, m.kind, body), sig))) {
    throw new SignatureError('chat message');
  }
  if (m.kind === CHAT_TEXT) {
    m.text = r.text(body);
    if (r.bad) throw new MalformedError('chat text is not UTF-8');
  } else if (m.kind === CHAT_FILE) {
    m.file = decodeFileDescriptor(body);
  } else {
    throw new MalformedError(`chat kind ${m.kind}`);
  }
  if (m.seq <= receiver.chatSeq) throw new ReplayError();
  receiver.chatSeq = m.seq;
  receiver.ring.used(entry, derived);
  return m;
}
