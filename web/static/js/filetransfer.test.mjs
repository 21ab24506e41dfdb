// Encrypted file transfer against a fake /api/files: the server only ever
// sees ciphertext, receivers get the plaintext back, and altered blobs,
// full storage and oversize files give clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uploadFile, downloadFile, blobId, formatSize, savedBlob, MAX_FILE_SIZE } from './filetransfer.mjs';

function fakeServer() {
  const blobs = new Map();
  const srv = { blobs, status: 0 };
  srv.fetch = async (url, init = {}) => {
    const h = init.headers ?? {};
    if (h['X-Conclave-Upload'] !== 'token-1') return new Response('{"error":{"code":"no-meeting"}}', { status: 401 });
    if (srv.status) return new Response('{}', { status: srv.status });
    if (init.method === 'POST') {
      const id = h['X-Conclave-File-Id'];
      blobs.set(id, new Uint8Array(init.body));
      return new Response(JSON.stringify({ id }), { status: 201 });
    }
    const b = blobs.get(url.split('/').pop());
    return b ? new Response(b, { status: 200 }) : new Response('{}', { status: 404 });
  };
  return srv;
}

const file = (data, name = 'report.pdf', type = 'application/pdf') => ({ name, type, size: data.length, arrayBuffer: async () => data.buffer });

test('a file goes up encrypted and comes back checked', async () => {
  const srv = fakeServer();
  const data = Uint8Array.from({ length: 150000 }, (_, i) => i % 251);
  const d = await uploadFile(file(data), 'token-1', srv.fetch);
  assert.equal(d.name, 'report.pdf');
  assert.equal(d.size, data.length);
  const stored = srv.blobs.get(blobId(d));
  assert.ok(stored.length > data.length, 'stored with tags');
  assert.notDeepEqual(stored.subarray(0, 64), data.subarray(0, 64), 'the server sees ciphertext');
  assert.deepEqual(await downloadFile(d, 'token-1', srv.fetch), data);
  // Altered on the server: refused.
  stored[100] ^= 1;
  await assert.rejects(downloadFile(d, 'token-1', srv.fetch), (e) => e.code === 'integrity');
});

test('errors: storage full, too large, no meeting, gone', async () => {
  const srv = fakeServer();
  srv.status = 507;
  await assert.rejects(uploadFile(file(new Uint8Array(10)), 'token-1', srv.fetch), (e) => e.code === 'storage-full' && /no room/.test(e.message));
  srv.status = 413;
  await assert.rejects(uploadFile(file(new Uint8Array(10)), 'token-1', srv.fetch), (e) => e.code === 'too-large');
  await assert.rejects(uploadFile({ ...file(new Uint8Array(1)), size: MAX_FILE_SIZE + 1 }, 'token-1', srv.fetch), (e) => e.code === 'too-large');
  srv.status = 0;
  await assert.rejects(uploadFile(file(new Uint8Array(10)), 'wrong', srv.fetch), (e) => e.code === 'no-meeting');
  const d = await uploadFile(file(new Uint8Array(10)), 'token-1', srv.fetch);
  srv.blobs.clear();
  await assert.rejects(downloadFile(d, 'token-1', srv.fetch), (e) => e.code === 'not-found');
  // Kept by another node of the meeting, which is down or busy.
  srv.status = 502;
  await assert.rejects(downloadFile(d, 'token-1', srv.fetch), (e) => e.code === 'unreachable' && /cannot be reached/.test(e.message));
  srv.status = 503;
  await assert.rejects(downloadFile(d, 'token-1', srv.fetch), (e) => e.code === 'busy' && /Try again/.test(e.message));
  srv.status = 0;
  // A body cut off in the middle.
  const cut = async () => ({ ok: true, status: 200, arrayBuffer: async () => { throw new TypeError('network error'); } });
  await assert.rejects(downloadFile(d, 'token-1', cut), (e) => e.code === 'network' && /cut off/.test(e.message));
  assert.equal(formatSize(1536), '1.5 KB');
});

// Hardening finding 18: a received file is saved with a fixed safe type,
// never the one its sender declared.
test('hardening 18: received files keep no sender-chosen type', async () => {
  const data = new TextEncoder().encode('<script>alert(1)</script>');
  for (const mimeType of ['text/html', 'image/svg+xml', 'application/xhtml+xml', '']) {
    const b = savedBlob({ name: 'x.html', mimeType }, data);
    assert.equal(b.type, 'application/octet-stream', `declared ${mimeType}`);
    assert.deepEqual(new Uint8Array(await b.arrayBuffer()), data);
  }
});
