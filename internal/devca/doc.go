// Package devca is the registration authority for telephony devices (SIP
// phones, softphones, meeting-room systems): its own certificate authority,
// separate from the web server's TLS CA and from the E2EE CA, which issues
// X.509 client certificates bound to a user's SIP address of record.
//
// The flow (docs/sip.md, "Enrolment"):
//
//  1. An administrator, or the user from their account page, creates a
//     one-time enrolment token for the user (CreateToken). Only its
//     SHA-256 hash is stored; it expires after TokenLifetime.
//  2. The device makes its own key (ECDSA P-256/P-384 or RSA of 3072 bits
//     or more) and a PKCS#10 request, and sends both the token and the
//     request over HTTPS (Enrol; `conclave device enrol` does it).
//  3. The authority consumes the token, checks the request's signature
//     (proof of possession) and its key against the key policy, and issues
//     a certificate whose subject alternative name is the user's address
//     of record (sip:<username>@<domain>), with the CRL distribution point
//     and the OCSP responder of this server.
//
// Revocation is immediate: Revoke marks the certificate in the store,
// regenerates the CRL and tells every OnRevoke listener (the SIP edge
// closes that device's connections within the call). The OCSP responder
// and Verify, which the SIP edge calls at every TLS handshake and every
// registration, read the same store, so a revoked certificate is refused
// from the next handshake or registration on.
package devca
