// Announcements: the signed per-meeting statement of a participant, their
// verification. The meeting code is round.mjs's. See docs/e2ee.md.
import { MalformedError, Reader, Writer, concat, equal, utf8 } from './bytes.mjs';
import {
  MAX_ID_LEN, MAX_NAME_LEN, MAX_USER_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, SignatureError,
  fingerprint, importPublicKey, sign, verify, verifyCredential,
} from './identity.mjs';

const ANNOUNCEMENT_TAG = utf8('CANN');
const ANNOUNCEMENT_VERSION = 1;
const MAX_CREDENTIAL_LEN = 1024;

// encodeAnnouncementBody: "CANN" | version u8 (1) | meeting id str16 |
// participant id str16 | user id str16 | display name str16 | ECDH public
// key (65) | device public key (65) | credential bytes16 | sender index u16
// | timestamp i64 (Unix ms). Keys are raw 65-byte points.
export function encodeAnnouncementBody(a) {
  const len = (s) => utf8(s ?? '').length;
  const cred = a.credential ?? new Uint8Array(0);
  if (!a.meetingId || len(a.meetingId) > MAX_ID_LEN || !a.participantId || len(a.participantId) > MAX_ID_LEN ||
    len(a.userId) > MAX_USER_LEN || len(a.displayName) > MAX_NAME_LEN || cred.length > MAX_CREDENTIAL_LEN ||
    a.ecdhPublicKey?.length !== PUBLIC_KEY_LEN || a.devicePublicKey?.length !== PUBLIC_KEY_LEN) {
    throw new Error('e2ee: invalid announcement fields');
  }
  return new Writer().raw(ANNOUNCEMENT_TAG).u8(ANNOUNCEMENT_VERSION).str16(a.meetingId).str16(a.participantId)
    .str16(a.userId ?? '').str16(a.displayName ?? '').raw(a.ecdhPublicKey).raw(a.devicePublicKey).bytes16(cred)
    .u16(a.senderIndex).i64(a.timestampMs).bytes();
}

// signAnnouncement returns body || signature: the announce payload before
// base64. a.devicePublicKey must be the raw public half of devicePrivate.
export async function signAnnouncement(devicePrivate, a) {
  const body = encodeAnnouncementBody(a);
  return concat(body, await sign(devicePrivate, body));
}

// parseAnnouncement parses without verifying anything.
export function parseAnnouncement(b) {
  const r = new Reader(b);
  const tag = r.take(4);
  const version = r.u8();
  if (r.bad || !equal(tag, ANNOUNCEMENT_TAG)) throw new MalformedError('not an announcement');
  if (version !== ANNOUNCEMENT_VERSION) throw new MalformedError(`announcement version ${version}`);
  const a = {};
  a.meetingId = r.str16(MAX_ID_LEN);
  a.participantId = r.str16(MAX_ID_LEN);
  a.userId = r.str16(MAX_USER_LEN);
  a.displayName = r.str16(MAX_NAME_LEN);
  a.ecdhPublicKey = r.take(PUBLIC_KEY_LEN);
  a.devicePublicKey = r.take(PUBLIC_KEY_LEN);
  const cred = r.bytes16(MAX_CREDENTIAL_LEN);
  a.credential = cred.length ? cred : null;
  a.senderIndex = r.u16();
  a.timestampMs = Number(r.i64());
  const bodyLen = r.o;
  a.signature = r.take(SIGNATURE_LEN);
  if (!r.done() || !a.meetingId || !a.participantId) throw new MalformedError('announcement');
  a.body = b.subarray(0, bodyLen);
  a.raw = b;
  return a;
}

// verifyAnnouncement checks, as the Go VerifyAnnouncement does: signature
// by the device key inside; meeting id; a guest claims no user id; a
// credential (when an org key is pinned) verifies and binds the same
// device key and user id. Returns the parsed announcement with certified,
// credential (parsed, when certified), fingerprint, deviceKey and ecdhKey
// (CryptoKeys). The caller checks participantId against the relay's from.
export async function verifyAnnouncement(b, { meetingId, orgKey = null, nowSeconds }) {
  const a = parseAnnouncement(b);
  const deviceKey = await importPublicKey(a.devicePublicKey);
  const ecdhKey = await importPublicKey(a.ecdhPublicKey, { name: 'ECDH', namedCurve: 'P-256' }, []);
  if (!(await verify(deviceKey, a.body, a.signature))) throw new SignatureError('announcement');
  if (a.meetingId !== meetingId) throw new Error(`e2ee: announcement for meeting ${a.meetingId}, not this one`);
  const v = { ...a, certified: false, credentialInfo: null, deviceKey, ecdhKey, fingerprint: await fingerprint(a.devicePublicKey) };
  if (!a.credential) {
    if (a.userId !== '') throw new Error('e2ee: announcement claims a user id without a credential');
    return v;
  }
  if (!orgKey) return v;
  const c = await verifyCredential(orgKey, a.credential, nowSeconds);
  if (!equal(c.devicePublicKey, a.devicePublicKey)) throw new Error('e2ee: credential certifies another device key');
  if (c.userId !== a.userId) throw new Error('e2ee: credential certifies another user id');
  v.certified = true;
  v.credentialInfo = c;
  return v;
}
