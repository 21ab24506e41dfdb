import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sendEncodings, cameraLayers, applyActive, isLayersMessage, CAMERA_LAYERS } from './simulcast.mjs';
import { mungeOpus, mergeParams } from './opus.mjs';

test('the camera sends three VP8 layers, lowest first; VP9 one SVC encoding; screen one encoding', () => {
  assert.deepEqual(sendEncodings('camera'), [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
    { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_700_000 },
  ]);
  assert.deepEqual(sendEncodings('camera', 'vp9'), [{ scalabilityMode: 'L3T3_KEY', maxBitrate: 2_000_000 }]);
  assert.deepEqual(sendEncodings('screen'), [{ maxBitrate: 2_500_000 }]);
  assert.equal(sendEncodings('microphone'), undefined);
  assert.equal(sendEncodings('screen-audio'), undefined);
  const a = sendEncodings('camera');
  a[0].active = false;
  assert.equal(CAMERA_LAYERS[0].active, undefined, 'callers get copies');
});

test('the camera gets as many VP8 layers as Chromium encodes for its size', () => {
  const three = [['q', 4, 150_000], ['h', 2, 500_000], ['f', 1, 1_700_000]];
  const rows = (e) => e.map((l) => [l.rid, l.scaleResolutionDownBy, l.maxBitrate]);
  assert.deepEqual(rows(cameraLayers({ width: 1280, height: 720 })), three);
  assert.deepEqual(rows(cameraLayers({ width: 960, height: 540 })), three);
  assert.deepEqual(rows(sendEncodings('camera', 'vp8', { width: 1920, height: 1080 })), three);
  // 640x480: two layers, the low one 180 lines high (240x180).
  assert.deepEqual(rows(cameraLayers({ width: 640, height: 480 })), [['q', 480 / 180, 150_000], ['f', 1, 1_700_000]]);
  assert.deepEqual(rows(sendEncodings('camera', 'vp8', { width: 640, height: 480 })), [['q', 480 / 180, 150_000], ['f', 1, 1_700_000]]);
  assert.deepEqual(rows(cameraLayers({ width: 480, height: 270 })), [['q', 2, 150_000], ['f', 1, 1_700_000]]);
  // Smaller: one encoding, not simulcast.
  assert.deepEqual(cameraLayers({ width: 320, height: 240 }), [{ maxBitrate: 1_700_000 }]);
  // Unknown size: three, as before the size is known.
  assert.deepEqual(rows(cameraLayers(undefined)), three);
  assert.deepEqual(rows(cameraLayers({})), three);
  assert.deepEqual(rows(sendEncodings('camera', 'vp8', { width: 0, height: 0 })), three);
  // VP9 is one SVC encoding whatever the size.
  assert.deepEqual(sendEncodings('camera', 'vp9', { width: 640, height: 480 }), [{ scalabilityMode: 'L3T3_KEY', maxBitrate: 2_000_000 }]);
});

test('layers: encodings follow active exactly, also when all are paused', () => {
  const enc = [{ rid: 'q', active: true }, { rid: 'h', active: true }, { rid: 'f' }];
  assert.equal(applyActive(enc, [true, false, false]), true);
  assert.deepEqual(enc.map((e) => e.active), [true, false, false]);
  assert.equal(applyActive(enc, [true, false, false]), false, 'no change, no setParameters');
  assert.equal(applyActive(enc, [false, false, false]), true);
  assert.deepEqual(enc.map((e) => e.active), [false, false, false]);
  assert.equal(applyActive(enc, [true, true, true]), true);
  assert.deepEqual(enc.map((e) => e.active), [true, true, true]);
});

test('layers: a shorter or longer list touches only the encodings both have', () => {
  const svc = [{ active: true }];
  assert.equal(applyActive(svc, [false, true, true]), true);
  assert.deepEqual(svc, [{ active: false }]);
  const enc = [{ active: true }, { active: true }, { active: true }];
  assert.equal(applyActive(enc, [false]), true);
  assert.deepEqual(enc.map((e) => e.active), [false, true, true]);
  assert.equal(applyActive(undefined, [true]), false);
  assert.equal(applyActive(enc, null), false);
});

test('layers messages are checked before use', () => {
  assert.equal(isLayersMessage({ mid: '1', active: [true, false] }), true);
  assert.equal(isLayersMessage({ mid: '', active: [true] }), false);
  assert.equal(isLayersMessage({ mid: '1' }), false);
  assert.equal(isLayersMessage({ mid: '1', active: [1, 0] }), false);
  assert.equal(isLayersMessage(null), false);
});

const offer = [
  'v=0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9',
  'a=rtpmap:111 opus/48000/2',
  'a=rtcp-fb:111 transport-cc',
  'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:63 red/48000/2',
  'a=fmtp:63 111/111',
  'a=rtpmap:9 G722/8000',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'a=rtpmap:96 VP8/90000',
  '',
].join('\r\n');

test('opus: FEC, DTX and mono are set in the Opus fmtp only', () => {
  const out = mungeOpus(offer);
  const lines = out.split('\r\n');
  assert.ok(lines.includes('a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1;stereo=0'));
  assert.ok(lines.includes('a=fmtp:63 111/111'), 'RED untouched');
  assert.equal(lines.length, offer.split('\r\n').length);
  assert.ok(out.endsWith('\r\n'));
  assert.equal(mungeOpus(out), out, 'idempotent');
});

test('opus: a missing fmtp line is added after the rtpmap; existing values are replaced', () => {
  const sdp = 'v=0\r\nm=audio 9 RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\na=rtcp-fb:109 nack\r\n';
  assert.equal(mungeOpus(sdp), 'v=0\r\nm=audio 9 RTP/SAVPF 109\r\na=rtpmap:109 OPUS/48000/2\r\na=fmtp:109 useinbandfec=1;usedtx=1;stereo=0\r\na=rtcp-fb:109 nack\r\n');
  assert.equal(mergeParams('stereo=1; usedtx=0;x', { usedtx: '1', stereo: '0' }), 'stereo=0;usedtx=1;x');
  assert.equal(mungeOpus('v=0\r\nm=video 9 RTP/SAVPF 96\r\n'), 'v=0\r\nm=video 9 RTP/SAVPF 96\r\n', 'no Opus, no change');
  assert.equal(mungeOpus(''), '');
});
