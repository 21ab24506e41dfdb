// Device identity: ECDSA P-256 keys, the compact credential signed by the
// organisation's E2EE CA, fingerprints. See docs/e2ee.md.
import { MalformedError, Reader, Writer, concat, toHex, utf8 } from './bytes.mjs';

const subtle = globalThis.crypto.subtle;
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: 'SHA-256' };

export const PUBLIC_KEY_LEN = 65;
export const SIGNATURE_LEN = 64;
export const MAX_ID_LEN = 128;
export const MAX_USER_LEN = 256;
export const MAX_NAME_LEN = 256;
const CREDENTIAL_TAG = utf8('CCRD');
const CREDENTIAL_VERSION = 2;
const POP_TAG = utf8('CPOP');
const REVOCATION_TAG = utf8('CREV');
export const CHALLENGE_LEN = 32;

export class SignatureError extends Error {
  constructor(what) { super(`e2ee: bad signature on ${what}`); this.name = 'SignatureError'; }
}
export class ExpiredError extends Error {
  constructor() { super('e2ee: credential not valid at this time'); this.name = 'ExpiredError'; }
}

// generateDeviceKey makes a non-extractable ECDSA P-256 key pair (keep it
// in IndexedDB; CryptoKeys are structured-cloneable).
export function generateDeviceKey(extractable = false) {
  return subtle.generateKey(ECDSA, extractable, ['sign', 'verify']);
}

export async function exportPublicKey(pub) {
  return new Uint8Array(await subtle.exportKey('raw', pub));
}

// importPublicKey imports a 65-byte uncompressed P-256 point (refusing
// points off the curve) as an ECDSA verify key.
export async function importPublicKey(raw, alg = ECDSA, usages = ['verify']) {
  if (raw.length !== PUBLIC_KEY_LEN || raw[0] !== 4) throw new MalformedError('P-256 public key');
  try {
    return await subtle.importKey('raw', raw, alg, true, usages);
  } catch {
    throw new MalformedError('P-256 public key not on the curve');
  }
}

const b64url = (b) => btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

// importPrivateScalar imports a P-256 private key from its scalar d and
// public point (tests, vectors and tools; devices generate theirs).
export function importPrivateScalar(d, pub, alg = ECDSA, usages = ['sign']) {
  const jwk = { kty: 'EC', crv: 'P-256', d: b64url(d), x: b64url(pub.subarray(1, 33)), y: b64url(pub.subarray(33, 65)), ext: true };
  return subtle.importKey('jwk', jwk, alg, false, usages);
}

// sign returns the ECDSA P-256 / SHA-256 signature of msg, r || s.
export async function sign(priv, msg) {
  return new Uint8Array(await subtle.sign(SIGN, priv, msg));
}

export async function verify(pub, msg, sig) {
  if (sig.length !== SIGNATURE_LEN) return false;
  return subtle.verify(SIGN, pub, sig, msg);
}

// fingerprint: first 16 bytes of SHA-256(uncompressed point), 8 groups of
// 4 upper-case hex digits.
export async function fingerprint(pubRaw) {
  const h = new Uint8Array(await subtle.digest('SHA-256', pubRaw));
  return toHex(h.subarray(0, 16)).toUpperCase().match(/.{4}/g).join(' ');
}

// encodeCredentialBody: "CCRD" | version u8 (2) | org id str16 | user id
// str16 | account str16 | display name str16 | device public key (65) |
// not before i64 | not after i64 | serial u64. Times are Unix seconds.
export function encodeCredentialBody(f) {
  const ok = f.orgId && utf8(f.orgId).length <= MAX_ID_LEN && f.userId && utf8(f.userId).length <= MAX_USER_LEN &&
    f.account && utf8(f.account).length <= MAX_USER_LEN &&
    utf8(f.displayName ?? '').length <= MAX_NAME_LEN && f.devicePublicKey?.length === PUBLIC_KEY_LEN && f.notAfter >= f.notBefore;
  if (!ok) throw new Error('e2ee: invalid credential fields');
  return new Writer().raw(CREDENTIAL_TAG).u8(CREDENTIAL_VERSION).str16(f.orgId).str16(f.userId).str16(f.account).str16(f.displayName ?? '')
    .raw(f.devicePublicKey).i64(f.notBefore).i64(f.notAfter).u64(f.serial).bytes();
}

// issueCredential (tests and tools; the RA issues them in Go).
export async function issueCredential(caPrivate, fields) {
  const body = encodeCredentialBody(fields);
  return concat(body, await sign(caPrivate, body));
}

// parseCredential parses without checking signature or validity period.
// Times are returned as Numbers of seconds, serial as a BigInt.
export function parseCredential(b) {
  const r = new Reader(b);
  const tag = r.take(4);
  const version = r.u8();
  if (r.bad || tag.length !== 4 || !tag.every((x, i) => x === CREDENTIAL_TAG[i])) throw new MalformedError('not a credential');
  if (version !== CREDENTIAL_VERSION) throw new MalformedError(`credential version ${version}`);
  const c = {};
  c.orgId = r.str16(MAX_ID_LEN);
  c.userId = r.str16(MAX_USER_LEN);
  c.account = r.str16(MAX_USER_LEN);
  c.displayName = r.str16(MAX_NAME_LEN);
  c.devicePublicKey = r.take(PUBLIC_KEY_LEN);
  c.notBefore = Number(r.i64());
  c.notAfter = Number(r.i64());
  c.serial = r.u64();
  const bodyLen = r.o;
  c.signature = r.take(SIGNATURE_LEN);
  if (!r.done() || !c.orgId || !c.userId || !c.account) throw new MalformedError('credential');
  c.body = b.subarray(0, bodyLen);
  c.raw = b;
  return c;
}

// verifyCredential checks the CA signature (caPublic: ECDSA CryptoKey) and
// that nowSeconds lies within [notBefore, notAfter].
export async function verifyCredential(caPublic, b, nowSeconds) {
  const c = parseCredential(b);
  await importPublicKey(c.devicePublicKey); // must be a valid point
  if (!(await verify(caPublic, c.body, c.signature))) throw new SignatureError('credential');
  const now = Math.floor(nowSeconds);
  if (now < c.notBefore || now > c.notAfter) throw new ExpiredError();
  return c;
}

// possessionMessage: "CPOP" | u8(1) | org id str16 | account str16 |
// device public key (65) | challenge (32): what a device signs to prove it
// holds its key before the RA certifies it (docs/e2ee.md, section 7).
export function possessionMessage(orgId, account, devicePublicKey, challenge) {
  if (!orgId || utf8(orgId).length > MAX_ID_LEN || !account || utf8(account).length > MAX_USER_LEN ||
    devicePublicKey?.length !== PUBLIC_KEY_LEN || challenge?.length !== CHALLENGE_LEN) {
    throw new MalformedError('proof of possession');
  }
  return new Writer().raw(POP_TAG).u8(1).str16(orgId).str16(account).raw(devicePublicKey).raw(challenge).bytes();
}

// provePossession signs the proof-of-possession message with the device key.
export function provePossession(devicePrivate, orgId, account, devicePublicKey, challenge) {
  return sign(devicePrivate, possessionMessage(orgId, account, devicePublicKey, challenge));
}

// parseRevocation: "CREV" | u8(1) | org id str16 | user id str16 | device
// public key (65) | revoked at i64 (Unix s) | reason str16, then the CA's
// signature. No signature check.
export function parseRevocation(b) {
  const r = new Reader(b);
  const tag = r.take(4);
  const version = r.u8();
  if (r.bad || tag.length !== 4 || !tag.every((x, i) => x === REVOCATION_TAG[i]) || version !== 1) throw new MalformedError('not a revocation');
  const v = {};
  v.orgId = r.str16(MAX_ID_LEN);
  v.userId = r.str16(MAX_USER_LEN);
  v.devicePublicKey = r.take(PUBLIC_KEY_LEN);
  v.revokedAt = Number(r.i64());
  v.reason = r.str16(MAX_NAME_LEN);
  const bodyLen = r.o;
  v.signature = r.take(SIGNATURE_LEN);
  if (!r.done() || !v.orgId || !v.userId) throw new MalformedError('revocation');
  v.body = b.subarray(0, bodyLen);
  v.raw = b;
  return v;
}

// verifyRevocation parses a revocation and checks the CA's signature.
export async function verifyRevocation(caPublic, b) {
  const v = parseRevocation(b);
  if (!(await verify(caPublic, v.body, v.signature))) throw new SignatureError('revocation');
  return v;
}
