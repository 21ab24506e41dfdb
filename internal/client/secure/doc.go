// Package secure is the end-to-end encryption of the native participant:
// it wires the crypto library (internal/e2ee) to a client.Session exactly
// as docs/e2ee.md, sections 6 to 9, says, so that `conclave join` and the
// browser keep the same schedule and interoperate.
//
// A Session holds, per meeting:
//   - an ephemeral ECDH P-256 key and a random sender index, announced
//     after every fresh welcome in an announcement signed by the device key;
//   - the participants whose announcements it verified (from == participant
//     id, meeting id = welcome.meeting, signature, credential against the
//     pinned organisation key), the only ones it lists and encrypts to, and
//     the meeting code over them and itself;
//   - a pairwise Channel and a Receiver per verified participant;
//   - one Sender for its own frames, ratcheted when a newcomer is verified
//     (the new key goes to the newcomer only) and replaced by a fresh key
//     after a leave (debounced, sent to everyone remaining, used after a
//     short delay).
//
// It plugs into a client.Session through the frame transforms (SFrame with
// the codec's clear prefix) and the announce and key hooks: Wire does it.
// A frame of a key generation it holds no key of waits for the key
// message, DefaultKeyWait at most (awaitKey); frames it has no key for
// are then dropped and counted, never passed on.
//
// Recovery (an addition to docs/e2ee.md, shared with the browser): a
// receiver whose frames from a verified participant have failed with
// "unknown key" for KeyRequestAfter (2 s) sends that participant a key
// request, the 5-byte payload "CKRQ" || 0x01 in a `key` message, and again
// every KeyRequestAfter while it lasts. A participant that gets a request
// from one it verified (and would send keys to) answers with its current
// key (and the pending one during a rotation) in ordinary key messages, at
// most once every 2 s per requester. The request is not authenticated: its
// only effect is a key message to a participant that was entitled to that
// key anyway, sealed to that participant's channel.
package secure
