// SFrame (RFC 9605) with cipher suite AES_256_GCM_SHA512_128 (0x0005):
// header encoding, key derivation, encryption. See docs/e2ee.md.
import { MalformedError, concat, utf8 } from './bytes.mjs';

const subtle = globalThis.crypto.subtle;

export const CIPHER_SUITE = 0x0005;
export const TAG_LEN = 16;
export const MAX_HEADER_LEN = 17;
const KEY_LEN = 32;
const NONCE_LEN = 12;
export const LABEL_SFRAME_KEY = 'SFrame 1.0 Secret key ';
export const LABEL_SFRAME_SALT = 'SFrame 1.0 Secret salt ';

export class AuthError extends Error {
  constructor() { super('e2ee: message authentication failed'); this.name = 'AuthError'; }
}

function minLen(v) { // v: BigInt > 0
  let n = 0;
  for (; v > 0n; v >>= 8n) n++;
  return n;
}

// encodeHeader returns the SFrame header for kid and ctr (numbers or
// BigInts): values below 8 sit in the config byte, larger ones follow in
// the fewest big-endian bytes.
export function encodeHeader(kid, ctr) {
  kid = BigInt(kid); ctr = BigInt(ctr);
  const out = [0];
  let config = 0;
  const field = (v) => {
    const n = minLen(v);
    for (let i = n - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
    return n;
  };
  if (kid < 8n) config = Number(kid) << 4;
  else config = 0x80 | ((field(kid) - 1) << 4);
  if (ctr < 8n) config |= Number(ctr);
  else config |= 0x08 | (field(ctr) - 1);
  out[0] = config;
  return Uint8Array.from(out);
}

// parseHeader reads the header at the start of b: {kid, ctr, length}, kid
// and ctr as BigInts. Non-minimal encodings are refused.
export function parseHeader(b) {
  if (b.length < 1) throw new MalformedError('empty SFrame header');
  const c = b[0];
  let n = 1;
  const field = (ext, v) => {
    if (!ext) return BigInt(v);
    const l = v + 1;
    if (b.length < n + l) throw new MalformedError('short SFrame header');
    let x = 0n;
    for (let i = n; i < n + l; i++) x = (x << 8n) | BigInt(b[i]);
    if (x < 8n || minLen(x) !== l) throw new MalformedError('SFrame header value not minimally encoded');
    n += l;
    return x;
  };
  const kid = field((c & 0x80) !== 0, (c >> 4) & 7);
  const ctr = field((c & 0x08) !== 0, c & 7);
  return { kid, ctr, length: n };
}

export function sframeLabel(prefix, kid) {
  const b = new Uint8Array(10);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(kid));
  v.setUint16(8, CIPHER_SUITE);
  return concat(utf8(prefix), b);
}

// hkdf runs HKDF (RFC 5869) with WebCrypto and returns length bytes.
export async function hkdf(hash, ikm, salt, info, length) {
  const k = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits({ name: 'HKDF', hash, salt, info }, k, length * 8);
  return new Uint8Array(bits);
}

export async function importAesKey(raw) {
  return subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

// SFrameKey is the key and salt RFC 9605 derives from a base key for a KID.
export class SFrameKey {
  // derive runs derive_key_salt: HKDF-SHA-512 with salt "" over base_key,
  // info "SFrame 1.0 Secret key " || KID(8) || suite(2) for 32 bytes and
  // "SFrame 1.0 Secret salt " || KID(8) || suite(2) for 12 bytes.
  static async derive(baseKey, kid) {
    const empty = new Uint8Array(0);
    const key = await hkdf('SHA-512', baseKey, empty, sframeLabel(LABEL_SFRAME_KEY, kid), KEY_LEN);
    const salt = await hkdf('SHA-512', baseKey, empty, sframeLabel(LABEL_SFRAME_SALT, kid), NONCE_LEN);
    const k = new SFrameKey();
    k.kid = BigInt(kid);
    k.key = key;
    k.salt = salt;
    k.cryptoKey = await importAesKey(key);
    return k;
  }

  nonce(ctr) {
    const n = Uint8Array.from(this.salt);
    const v = new DataView(n.buffer);
    v.setBigUint64(4, v.getBigUint64(4) ^ BigInt(ctr));
    return n;
  }

  // seal returns header || AES-GCM(plaintext), AAD = header || metadata.
  async seal(ctr, metadata, plaintext) {
    const header = encodeHeader(this.kid, ctr);
    const ct = await subtle.encrypt({ name: 'AES-GCM', iv: this.nonce(ctr), additionalData: concat(header, metadata), tagLength: 128 },
      this.cryptoKey, plaintext);
    return concat(header, new Uint8Array(ct));
  }

  // open decrypts an SFrame ciphertext whose header was already parsed.
  async openParsed(metadata, header, ctr, body) {
    if (body.length < TAG_LEN) throw new MalformedError('SFrame ciphertext shorter than its tag');
    try {
      const pt = await subtle.decrypt({ name: 'AES-GCM', iv: this.nonce(ctr), additionalData: concat(header, metadata), tagLength: 128 },
        this.cryptoKey, body);
      return new Uint8Array(pt);
    } catch {
      throw new AuthError();
    }
  }

  // open decrypts an SFrame ciphertext (header included) with this key.
  async open(metadata, ciphertext) {
    const { kid, ctr, length } = parseHeader(ciphertext);
    if (kid !== this.kid) throw new Error(`e2ee: SFrame KID ${kid} is not the key's ${this.kid}`);
    return this.openParsed(metadata, ciphertext.subarray(0, length), ctr, ciphertext.subarray(length));
  }
}
