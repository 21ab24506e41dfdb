// End-to-end encrypted files (docs/e2ee.md, section 10): the file is
// encrypted here under a random key, uploaded as an opaque blob
// (POST /api/files with the meeting's upload token), and announced by a
// "file" chat message whose descriptor carries the key and the SHA-256.
// Receivers fetch the blob, decrypt it and check size and hash.

import { encryptFile, decryptFile, toHex } from './e2ee/index.mjs';

/** Largest file the server accepts. */
export const MAX_FILE_SIZE = 100 << 20;

/** Errors with a sentence for the person. */
export class FileError extends Error {
  /**
   * @param {string} code too-large, storage-full, no-meeting, not-found, unreachable, busy, integrity, network, failed
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'FileError';
    this.code = code;
  }
}

/**
 * The sentence for a failed upload or download status.
 * @param {number} status
 * @param {boolean} upload
 * @returns {FileError}
 */
export function statusError(status, upload) {
  if (status === 413) return new FileError('too-large', `The file is too large: the limit is ${MAX_FILE_SIZE >> 20} MiB.`);
  if (status === 507) return new FileError('storage-full', 'The server has no room for this file now. Try a smaller file or later.');
  if (status === 401) return new FileError('no-meeting', 'Files can only be exchanged during the meeting.');
  if (status === 404 && !upload) return new FileError('not-found', 'This file is not available any more (files vanish when the meeting ends).');
  // A file kept by another server of the meeting (docs/cluster.md).
  if (status === 502 && !upload) return new FileError('unreachable', 'The server that keeps this file cannot be reached now (it may be down). Try again later, or ask the sender to share it again.');
  if (status === 503 && !upload) return new FileError('busy', 'The server that keeps this file is busy. Try again in a few seconds.');
  if (status === 409 && upload) return new FileError('failed', 'The server refused the file id; try again.');
  return new FileError('failed', upload ? `The upload failed (HTTP ${status}); try again.` : `The download failed (HTTP ${status}).`);
}

/**
 * The server's name of a file's blob: its descriptor id in hex.
 * @param {{id: Uint8Array}} descriptor
 * @returns {string}
 */
export function blobId(descriptor) {
  return toHex(descriptor.id);
}

/**
 * Encrypts and uploads a file. The blob is named by the descriptor's id
 * (X-Conclave-File-Id), so that receivers find it from the descriptor alone.
 * @param {{name: string, type: string, size: number, arrayBuffer: () => Promise<ArrayBuffer>}} file
 * @param {string} token the upload token of the welcome
 * @param {typeof fetch} [fetchFn]
 * @returns {Promise<object>} the descriptor to send in a file chat message
 */
export async function uploadFile(file, token, fetchFn = globalThis.fetch) {
  if (file.size > MAX_FILE_SIZE) throw statusError(413, true);
  const data = new Uint8Array(await file.arrayBuffer());
  const name = file.name || 'file';
  const { descriptor, blob } = await encryptFile(name, file.type || '', data);
  let res;
  try {
    res = await fetchFn('/api/files', {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'X-Conclave-Upload': token, 'X-Conclave-File-Id': blobId(descriptor) },
      body: blob,
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new FileError('network', 'Cannot reach the Conclave server; the file was not sent.');
  }
  if (res.status !== 201 && res.status !== 200) throw statusError(res.status, true);
  const body = await res.json().catch(() => null);
  if (body?.id !== blobId(descriptor)) {
    throw new FileError('failed', 'The server stored the file under another name, so the others could not find it. The file was not sent.');
  }
  return descriptor;
}

/**
 * Downloads, decrypts and checks a file.
 * @param {object} descriptor from the file chat message
 * @param {string} token the upload token of the welcome
 * @param {typeof fetch} [fetchFn]
 * @returns {Promise<Uint8Array>} the plaintext
 */
export async function downloadFile(descriptor, token, fetchFn = globalThis.fetch) {
  let res;
  try {
    res = await fetchFn(`/api/files/${blobId(descriptor)}`, { headers: { 'X-Conclave-Upload': token }, credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new FileError('network', 'Cannot reach the Conclave server.');
  }
  if (!res.ok) throw statusError(res.status, false);
  let blob;
  try {
    blob = new Uint8Array(await res.arrayBuffer());
  } catch {
    // The transfer broke off (the network, or the server keeping the file).
    throw new FileError('network', 'The download was cut off before the end; try again.');
  }
  try {
    return await decryptFile(descriptor, blob);
  } catch {
    throw new FileError('integrity', 'The file failed its integrity check: it was altered or damaged. It was not saved.');
  }
}

/**
 * The Blob a received file is saved from. Its type is always
 * application/octet-stream, whatever type the sender declared: a sender
 * who labels a file text/html or image/svg+xml must not get it rendered
 * (and its scripts run) in this page's origin when the link is opened
 * instead of saved.
 * @param {object} descriptor from the file chat message (its mimeType is ignored)
 * @param {Uint8Array} data the decrypted file
 * @returns {Blob}
 */
export function savedBlob(descriptor, data) {
  void descriptor;
  return new Blob([data], { type: 'application/octet-stream' });
}

/**
 * A file size for people: "12 KB", "3.4 MB".
 * @param {number} n bytes
 * @returns {string}
 */
export function formatSize(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${Math.round(n / 100) / 10} KB`;
  if (n < 1e9) return `${Math.round(n / 1e5) / 10} MB`;
  return `${Math.round(n / 1e8) / 10} GB`;
}
