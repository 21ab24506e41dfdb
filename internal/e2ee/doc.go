// Package e2ee holds Conclave's end-to-end encryption core: the formats and
// the cryptography, with no networking, DOM or WebRTC. docs/e2ee.md is its
// specification; web/static/js/e2ee/ is the JavaScript twin, and both pass
// the vectors in testdata/vectors.json.
//
// The pieces:
//   - SFrame (RFC 9605, cipher suite AES_256_GCM_SHA512_128) for media
//     frames, with a per-codec clear prefix: Sender and Receiver.
//   - Sender keys: SenderKey, its ratchet, and the receivers' KeyRing.
//   - Device identity: ECDSA P-256 device keys, the compact Credential
//     signed by the organisation's E2EE CA, Fingerprint.
//   - Announcement: the signed per-meeting statement of a participant, and
//     MeetingCode over the verified set.
//   - Channel: the pairwise ECDH channel that carries KeyMessages.
//   - Chat messages and file chunks.
//
// Only primitives from the ANSSI / CCN-STIC-807 set are used: ECDH and ECDSA
// on P-256, SHA-256/512, HKDF and AES-256-GCM.
package e2ee
