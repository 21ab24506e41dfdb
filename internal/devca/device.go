package devca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/youmark/pkcs8"
)

// This file is the device's side of enrolment, used by `conclave device
// enrol`: key generation, the PKCS#10 request, the encrypted PKCS#8 key
// file and the HTTPS call.

// KeyKinds are the key types a device may generate.
var KeyKinds = []string{"ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096"}

// GenerateKey makes a device key of kind (one of KeyKinds).
func GenerateKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "ecdsa-p256", "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("key type %q is not one of %s", kind, strings.Join(KeyKinds, ", "))
}

// MakeCSR makes the PKCS#10 request (PEM) for key; cn is informative only
// (the authority names the certificate after the account).
func MakeCSR(key crypto.Signer, cn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		return nil, fmt.Errorf("make certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// MinPassphrase is the shortest passphrase accepted for a device key.
const MinPassphrase = 12

// pbkdf2Iterations is the PBKDF2-HMAC-SHA-256 work factor of key files
// (OWASP's 2023 figure for SHA-256).
const pbkdf2Iterations = 600000

// EncryptKey encodes key as an encrypted PKCS#8 PEM block (PBES2 with
// PBKDF2-HMAC-SHA-256 and AES-256-CBC), which OpenSSL and most devices
// read.
func EncryptKey(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) < MinPassphrase {
		return nil, fmt.Errorf("the passphrase must have at least %d characters", MinPassphrase)
	}
	der, err := pkcs8.MarshalPrivateKey(key, passphrase, &pkcs8.Opts{
		Cipher:  pkcs8.AES256CBC,
		KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: pbkdf2Iterations, HMACHash: crypto.SHA256},
	})
	if err != nil {
		return nil, fmt.Errorf("encrypt device key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// DecryptKey reads an encrypted PKCS#8 PEM key file.
func DecryptKey(data, passphrase []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the key file holds no ENCRYPTED PRIVATE KEY block")
	}
	k, err := pkcs8.ParsePKCS8PrivateKey(b.Bytes, passphrase)
	if err != nil {
		return nil, errors.New("the key file does not open with this passphrase")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the key file holds a %T, which cannot sign", k)
	}
	return s, nil
}

// EnrolResponse is what the server returns to a device.
type EnrolResponse struct {
	Username    string `json:"username"`
	AOR         string `json:"aor"`
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	Fingerprint string `json:"fingerprint"`
	Serial      string `json:"serial"`
	NotAfter    string `json:"notAfter"`
	Domain      string `json:"domain"`
	Registrar   string `json:"registrar"`
	AllowSDES   bool   `json:"allowSDES"`
	// DigestPassword is the device's SIP digest secret (the second factor
	// when the server asks for it), shown once.
	DigestPassword string `json:"digestPassword"`
	// DigestRequired says whether the server asks for it.
	DigestRequired bool `json:"digestRequired"`
}

// RequestEnrol sends token and csr to the server at baseURL
// (https://host:port) and returns the issued certificate.
func RequestEnrol(ctx context.Context, hc *http.Client, baseURL, token string, csr []byte) (EnrolResponse, error) {
	body, _ := json.Marshal(map[string]string{"token": token, "csr": string(csr)})
	u := strings.TrimSuffix(baseURL, "/") + "/api/sip/enrol"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return EnrolResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", strings.TrimSuffix(baseURL, "/"))
	resp, err := hc.Do(req)
	if err != nil {
		return EnrolResponse{}, fmt.Errorf("enrol at %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return EnrolResponse{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return EnrolResponse{}, errors.New(e.Error.Message)
		}
		return EnrolResponse{}, fmt.Errorf("enrol at %s: %s", baseURL, resp.Status)
	}
	var out EnrolResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return EnrolResponse{}, fmt.Errorf("enrol at %s: %w", baseURL, err)
	}
	return out, nil
}
