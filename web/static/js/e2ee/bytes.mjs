// Byte helpers for the E2EE encodings (docs/e2ee.md): big-endian fields,
// u16/u32-length-prefixed strings, hex and base64.

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export const utf8 = (s) => enc.encode(s);

export class MalformedError extends Error {
  constructor(what) { super(`e2ee: malformed input: ${what}`); this.name = 'MalformedError'; }
}

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// compare orders byte strings like Go's bytes.Compare.
export function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length === b.length ? 0 : (a.length < b.length ? -1 : 1);
}

export function toHex(b) {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

export function fromHex(s) {
  if (s.length % 2) throw new MalformedError('odd hex');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    const v = parseInt(s.substr(2 * i, 2), 16);
    if (Number.isNaN(v)) throw new MalformedError('hex');
    out[i] = v;
  }
  return out;
}

// Base64 (standard alphabet, padded) for the signaling payloads.
export function toBase64(b) {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

export class Writer {
  constructor() { this.parts = []; }
  raw(b) { this.parts.push(b); return this; }
  u8(v) { return this.raw(Uint8Array.of(v)); }
  u16(v) { const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, v); return this.raw(b); }
  u32(v) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v); return this.raw(b); }
  u64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v)); return this.raw(b); }
  i64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(v)); return this.raw(b); }
  bytes16(b) { return this.u16(b.length).raw(b); }
  str16(s) { return this.bytes16(utf8(s)); }
  bytes32(b) { return this.u32(b.length).raw(b); }
  bytes() { return concat(...this.parts); }
}

export class Reader {
  constructor(b) { this.b = b; this.o = 0; this.bad = false; }
  take(n) {
    if (this.bad || n < 0 || this.o + n > this.b.length) { this.bad = true; return new Uint8Array(0); }
    const p = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return p;
  }
  view(n) { const p = this.take(n); return new DataView(p.buffer, p.byteOffset, p.length); }
  u8() { return this.bad ? 0 : (this.take(1)[0] ?? 0); }
  u16() { const v = this.view(2); return this.bad ? 0 : v.getUint16(0); }
  u32() { const v = this.view(4); return this.bad ? 0 : v.getUint32(0); }
  u64() { const v = this.view(8); return this.bad ? 0n : v.getBigUint64(0); }
  i64() { const v = this.view(8); return this.bad ? 0n : v.getBigInt64(0); }
  bytes16(max) {
    const n = this.u16();
    if (n > max) { this.bad = true; return new Uint8Array(0); }
    return this.take(n);
  }
  str16(max) { return this.text(this.bytes16(max)); }
  text(b) {
    if (this.bad) return '';
    try { return dec.decode(b); } catch { this.bad = true; return ''; }
  }
  rest() { return this.b.length - this.o; }
  done() { return !this.bad && this.o === this.b.length; }
}
