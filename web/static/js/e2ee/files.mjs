// Files: a random key per file, 64 KiB chunks sealed with AES-256-GCM,
// nonce from the chunk index, file id, index and last-chunk flag in AAD.
import { MalformedError, Writer, concat, equal, randomBytes, utf8 } from './bytes.mjs';
import { AuthError, TAG_LEN, importAesKey } from './sframe.mjs';
import { seqNonce } from './pairwise.mjs';

const subtle = globalThis.crypto.subtle;
export const FILE_CHUNK_SIZE = 64 * 1024;
export const LABEL_FILE_CHUNK = 'Conclave E2EE v1 file chunk';

function chunkAAD(id, index, last) {
  return new Writer().raw(utf8(LABEL_FILE_CHUNK)).raw(id).u64(index).u8(last ? 1 : 0).bytes();
}

export class FileCipher {
  static async create(key, id) {
    const f = new FileCipher();
    f.id = id;
    f.key = await importAesKey(key);
    return f;
  }

  async sealChunk(index, last, chunk) {
    return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: seqNonce(index), additionalData: chunkAAD(this.id, index, last) }, this.key, chunk));
  }

  async openChunk(index, last, sealed) {
    try {
      return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: seqNonce(index), additionalData: chunkAAD(this.id, index, last) }, this.key, sealed));
    } catch {
      throw new AuthError();
    }
  }

  async sealAll(data) {
    const n = Math.max(1, Math.ceil(data.length / FILE_CHUNK_SIZE));
    const parts = [];
    for (let i = 0; i < n; i++) parts.push(await this.sealChunk(i, i === n - 1, data.subarray(i * FILE_CHUNK_SIZE, (i + 1) * FILE_CHUNK_SIZE)));
    return concat(...parts);
  }

  async openAll(blob) {
    const sealed = FILE_CHUNK_SIZE + TAG_LEN;
    const n = Math.ceil(blob.length / sealed);
    if (n === 0 || blob.length - (n - 1) * sealed < TAG_LEN) throw new MalformedError(`file blob of ${blob.length} bytes`);
    const parts = [];
    for (let i = 0; i < n; i++) parts.push(await this.openChunk(i, i === n - 1, blob.subarray(i * sealed, (i + 1) * sealed)));
    return concat(...parts);
  }
}

// encryptFile returns {descriptor, blob}; the descriptor goes in a chat
// "file" message, the blob to the server.
export async function encryptFile(name, mimeType, data) {
  const d = { id: randomBytes(16), name, size: data.length, mimeType, key: randomBytes(32),
    sha256: new Uint8Array(await subtle.digest('SHA-256', data)) };
  const f = await FileCipher.create(d.key, d.id);
  return { descriptor: d, blob: await f.sealAll(data) };
}

// decryptFile decrypts a blob and checks size and SHA-256.
export async function decryptFile(d, blob) {
  const f = await FileCipher.create(d.key, d.id);
  const data = await f.openAll(blob);
  const sum = new Uint8Array(await subtle.digest('SHA-256', data));
  if (data.length !== Number(d.size) || !equal(sum, d.sha256)) throw new Error('e2ee: file does not match its size or SHA-256');
  return data;
}
