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
//     signed by the organisation's E2EE CA, its proof of possession and
//     Revocation, Fingerprint.
//   - Announcement: the signed per-meeting statement of a participant.
//   - The verification round (Commit, Reveal, RoundState) and the meeting
//     code over the verified set, every member's nonce and the agreed log
//     checkpoint (MeetingCodeV2).
//   - The transparency log of credentials and revocations: checkpoints in
//     signed notes with ECDSA P-256, inclusion and consistency proofs.
//   - Names: CleanName and Skeleton, to flag look-alike names.
//   - Channel: the pairwise ECDH channel that carries KeyMessages.
//   - Chat messages and file chunks.
//
// Only primitives from the ANSSI / CCN-STIC-807 set are used: ECDH and ECDSA
// on P-256, SHA-256/512, HKDF and AES-256-GCM.
package e2ee
