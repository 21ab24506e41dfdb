// The media encryption worker (module worker): SFrame-encrypts every frame
// the local participant sends and decrypts every frame it receives
// (docs/e2ee.md, section 5). Frames reach it through RTCRtpScriptTransform
// ("rtctransform" events) or, as a fallback, as the streams of the legacy
// createEncodedStreams() posted by the page.
//
// Messages from the page (keys are never logged, and never leave here):
//   {op: 'send-key', key}                 encrypt outgoing frames with this sender key
//   {op: 'receiver', participant, index}  a verified participant and its sender index
//   {op: 'key', participant, key}         a sender key of that participant
//   {op: 'remove', participant}           it left
//   {op: 'map', id, participant}          incoming transform id carries this participant ('' = nobody)
//   {op: 'stream', id, role, kind, readable, writable}   fallback: a sender's or receiver's streams
//   {op: 'reset'}                         a new meeting: forget every key
//   {op: 'stats', seq}                    asks for the counters (FrameCryptor.report)
// Messages to the page:
//   {op: 'missing-key', participant}      frames of this participant lack a key: ask it again
//   {op: 'ready'}                         the worker runs
//   {op: 'stats', seq, report}            the answer to 'stats': counts and key versions, never keys
//   {op: 'decrypted', participant, kind}  the first frame of that kind from that participant was decrypted
// A transform's options are {id, role: 'send'|'recv', kind: 'audio'|'video'}.

import { DROP, FrameCryptor, frameCodec } from './framecryptor.mjs';

const KEY_FRAME_REPEAT_MS = 1000;

const cryptor = new FrameCryptor();
/** @type {Map<string, string>} incoming transform id -> participant */
const mapping = new Map();
/** @type {Map<string, {kind: string, transformer: any, lastRequest: number}>} incoming transforms */
const incoming = new Map();
/** @type {Set<string>} participant + kind whose first decrypted frame was reported */
const firstDecrypted = new Set();

/**
 * Pipes the frames of one transform through the cryptor.
 * @param {{id: string, role: string, kind: string}} opts
 * @param {ReadableStream} readable
 * @param {WritableStream} writable
 * @param {any} transformer the RTCRtpScriptTransformer, or null (fallback)
 */
function pipe(opts, readable, writable, transformer) {
  const id = String(opts.id);
  const send = opts.role === 'send';
  const kind = opts.kind === 'audio' ? 'audio' : 'video';
  if (!send) incoming.set(id, { kind, transformer, lastRequest: 0 });
  readable.pipeThrough(new TransformStream({
    async transform(frame, controller) {
      const codec = frameCodec(metadataOf(frame), kind);
      const data = new Uint8Array(frame.data);
      const out = send ? await cryptor.encrypt(codec, data) : await cryptor.decrypt(mapping.get(id) || null, codec, data);
      if (typeof out === 'string') {
        if (!send && out === DROP.noKey) reportMissing();
        return; // dropped: never passed on in the clear
      }
      frame.data = out.buffer.byteLength === out.length ? out.buffer : out.slice().buffer;
      controller.enqueue(frame);
      if (!send) reportDecrypted(mapping.get(id) || '', kind);
    },
  })).pipeTo(writable).catch(() => {}); // the track ended
}

function metadataOf(frame) {
  try {
    return frame.getMetadata();
  } catch {
    return null;
  }
}

function reportDecrypted(participant, kind) {
  const k = `${kind} ${participant}`;
  if (!participant || firstDecrypted.has(k)) return;
  firstDecrypted.add(k);
  postMessage({ op: 'decrypted', participant, kind });
}

function reportMissing() {
  for (const participant of cryptor.missingKeys()) postMessage({ op: 'missing-key', participant });
}

/** Asks the senders of a participant's video for a key frame (script transform only). */
function requestKeyFrames(participant) {
  const now = Date.now();
  for (const [id, t] of incoming) {
    if (t.kind !== 'video' || mapping.get(id) !== participant || !t.transformer?.sendKeyFrameRequest) continue;
    if (now - t.lastRequest < KEY_FRAME_REPEAT_MS) continue;
    t.lastRequest = now;
    Promise.resolve().then(() => t.transformer.sendKeyFrameRequest()).catch(() => {});
  }
}

self.onrtctransform = (e) => {
  const t = e.transformer;
  if (t.options?.role === 'probe') return; // FrameEncryption's feature test
  pipe(t.options ?? {}, t.readable, t.writable, t);
};

self.onmessage = async (e) => {
  const m = e.data ?? {};
  switch (m.op) {
    case 'send-key': await cryptor.setSendKey(m.key); break;
    case 'receiver': cryptor.setReceiver(m.participant, m.index); break;
    case 'key':
      if (await cryptor.addKey(m.participant, m.key)) requestKeyFrames(m.participant);
      break;
    case 'remove': cryptor.removeParticipant(m.participant); break;
    case 'map': {
      const before = mapping.get(String(m.id));
      if (m.participant) mapping.set(String(m.id), m.participant);
      else mapping.delete(String(m.id));
      if (m.participant && before !== m.participant) requestKeyFrames(m.participant);
      break;
    }
    case 'stream': pipe(m, m.readable, m.writable, null); break;
    case 'reset': cryptor.reset(); mapping.clear(); firstDecrypted.clear(); break;
    case 'stats': postMessage({ op: 'stats', seq: m.seq, report: cryptor.report() }); break;
    default: break;
  }
};

postMessage({ op: 'ready' });
