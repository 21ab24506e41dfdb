package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"conclave/internal/secrets"
)

// crlValidity is how long a revocation list signed now stays valid: as
// long as a server certificate, so that with the CA key offline the list
// outlives the certificate in use.
const crlValidity = serverValidity

// ensureCRL returns the local CA's revocation list (DER), kept in
// dir/ca.crl. With the CA key at hand it is signed again when it is
// missing, unreadable, not signed by ca, within renewBefore of its next
// update, or when a server certificate was replaced (replaced, which is
// then added to it). With the key offline, the stored list is used as it
// is, or nil if there is none.
func ensureCRL(dir string, ca *x509.Certificate, caKey crypto.Signer, replaced *x509.Certificate, now time.Time) ([]byte, error) {
	path := filepath.Join(dir, CRLFile)
	var old *x509.RevocationList
	der, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	default:
		if l, err := x509.ParseRevocationList(der); err == nil && l.CheckSignatureFrom(ca) == nil {
			old = l
		}
	}
	if caKey == nil {
		if old == nil {
			return nil, nil
		}
		return der, nil
	}
	if old != nil && replaced == nil && old.NextUpdate.Sub(now) >= renewBefore {
		return der, nil
	}
	tmpl := &x509.RevocationList{ThisUpdate: now.Add(-backdate), NextUpdate: now.Add(crlValidity), Number: big.NewInt(1)}
	if old != nil {
		tmpl.Number = new(big.Int).Add(old.Number, big.NewInt(1))
		for _, e := range old.RevokedCertificateEntries {
			// An entry outlives the certificate it revokes, which
			// expired at most serverValidity after being replaced.
			if now.Sub(e.RevocationTime) < serverValidity+renewBefore {
				tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, e)
			}
		}
	}
	if replaced != nil && replaced.CheckSignatureFrom(ca) == nil && now.Before(replaced.NotAfter) {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: replaced.SerialNumber, RevocationTime: now,
			ReasonCode: 4, // superseded
		})
	}
	der, err = x509.CreateRevocationList(rand.Reader, tmpl, ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign revocation list: %w", err)
	}
	if err := secrets.WriteAtomic(path, der, 0o644); err != nil {
		return nil, err
	}
	return der, nil
}
