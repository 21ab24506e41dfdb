// Package pki provides Conclave's transport PKI: a local certificate authority
// and server certificate generated on first start and kept in the data
// directory, the loading of an operator-provided certificate instead, the TLS
// policy every HTTPS listener uses, and the trust instructions printed at
// startup.
//
// The policy follows the design brief: TLS 1.2 and 1.3 only, ECDHE key
// exchange with AES-GCM suites only, ECDSA P-256/P-384 keys (RSA of at least
// 3072 bits when an operator brings an RSA certificate).
//
// Layout of the generated material under the data directory:
//
//	<dir>/tls/            mode 0700
//	<dir>/tls/ca.crt      local CA certificate (PEM), 10 years
//	<dir>/tls/ca.key      local CA key (PKCS#8 PEM), mode 0600
//	<dir>/tls/server.crt  server certificate (PEM), 365 days
//	<dir>/tls/server.key  server key (PKCS#8 PEM), mode 0600
package pki
