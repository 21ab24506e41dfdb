package secure

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"conclave/internal/e2ee"
)

// The device key file holds the device's ECDSA P-256 key as PKCS#8, either
// encrypted (the default) or, only on explicit request, in the clear:
//
//	-----BEGIN CONCLAVE ENCRYPTED DEVICE KEY-----
//	Cipher: AES-256-GCM
//	KDF: PBKDF2-SHA256
//	Iterations: 600000
//	Salt: <16 random bytes, base64>
//	Nonce: <12 random bytes, base64>
//
//	<base64 of AES-256-GCM(key, nonce, AAD, PKCS#8 DER) || tag>
//	-----END CONCLAVE ENCRYPTED DEVICE KEY-----
//
// key = PBKDF2-HMAC-SHA-256(passphrase, salt, iterations, 32) and AAD =
// "Conclave device key v1" || u32 iterations || salt, so that the header
// cannot be changed without failing decryption. A clear key is a plain
// "PRIVATE KEY" PEM block.
const (
	encryptedKeyType = "CONCLAVE ENCRYPTED DEVICE KEY"
	plainKeyType     = "PRIVATE KEY"
	deviceKeyAAD     = "Conclave device key v1"
	// DeviceKeyIterations is the PBKDF2 work factor of new key files
	// (OWASP's 2023 figure for PBKDF2-HMAC-SHA-256).
	DeviceKeyIterations = 600_000
	maxIterations       = 100_000_000
	saltLen             = 16
)

// newKeyIterations is DeviceKeyIterations; tests lower it to stay fast.
var newKeyIterations = DeviceKeyIterations

// ErrPassphrase is returned when a device key file does not decrypt.
var ErrPassphrase = errors.New("the passphrase does not open the device key")

// ErrPlainKey is returned for a clear device key file when clear keys
// were not allowed.
var ErrPlainKey = errors.New("the device key file is not encrypted; allow it explicitly (conclave join --plain-device-key) or make a new one")

// EncryptDeviceKey returns the encrypted key file for k.
func EncryptDeviceKey(k *ecdsa.PrivateKey, passphrase []byte) ([]byte, error) {
	return encryptDeviceKey(k, passphrase, DeviceKeyIterations)
}

func encryptDeviceKey(k *ecdsa.PrivateKey, passphrase []byte, iterations int) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("an empty passphrase protects nothing")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode the device key: %w", err)
	}
	salt := make([]byte, saltLen)
	nonce := make([]byte, 12)
	rand.Read(salt)
	rand.Read(nonce)
	aead, err := deviceKeyCipher(passphrase, salt, iterations)
	if err != nil {
		return nil, err
	}
	block := &pem.Block{Type: encryptedKeyType, Headers: map[string]string{
		"Cipher": "AES-256-GCM", "KDF": "PBKDF2-SHA256", "Iterations": strconv.Itoa(iterations),
		"Salt": base64.StdEncoding.EncodeToString(salt), "Nonce": base64.StdEncoding.EncodeToString(nonce),
	}, Bytes: aead.Seal(nil, nonce, der, deviceKeyAADFor(iterations, salt))}
	clear(der)
	return pem.EncodeToMemory(block), nil
}

func deviceKeyCipher(passphrase, salt []byte, iterations int) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, string(passphrase), salt, iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("derive the device key's wrapping key: %w", err)
	}
	defer clear(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func deviceKeyAADFor(iterations int, salt []byte) []byte {
	aad := binary.BigEndian.AppendUint32([]byte(deviceKeyAAD), uint32(iterations))
	return append(aad, salt...)
}

// ParseDeviceKey reads a device key file. passphrase is asked only for an
// encrypted file; a clear one is refused unless allowPlain.
func ParseDeviceKey(data []byte, passphrase func() ([]byte, error), allowPlain bool) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("the device key file holds no PEM block")
	}
	var der []byte
	switch block.Type {
	case plainKeyType:
		if !allowPlain {
			return nil, ErrPlainKey
		}
		der = block.Bytes
	case encryptedKeyType:
		h := block.Headers
		if h["Cipher"] != "AES-256-GCM" || h["KDF"] != "PBKDF2-SHA256" {
			return nil, fmt.Errorf("device key encrypted with %q and %q; only AES-256-GCM and PBKDF2-SHA256 are known", h["Cipher"], h["KDF"])
		}
		iterations, err := strconv.Atoi(h["Iterations"])
		salt, err2 := base64.StdEncoding.DecodeString(h["Salt"])
		nonce, err3 := base64.StdEncoding.DecodeString(h["Nonce"])
		if err != nil || err2 != nil || err3 != nil || iterations < 1 || iterations > maxIterations || len(salt) < saltLen || len(nonce) != 12 {
			return nil, errors.New("the device key file's header is damaged")
		}
		pass, err := passphrase()
		if err != nil {
			return nil, err
		}
		aead, err := deviceKeyCipher(pass, salt, iterations)
		clear(pass)
		if err != nil {
			return nil, err
		}
		if der, err = aead.Open(nil, nonce, block.Bytes, deviceKeyAADFor(iterations, salt)); err != nil {
			return nil, ErrPassphrase
		}
		defer clear(der)
	default:
		return nil, fmt.Errorf("the device key file holds a %q block, not a device key", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse the device key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("the device key is not an ECDSA P-256 key")
	}
	return ek, nil
}

// LoadOrCreateDeviceKey reads the device key at path, or makes one there
// (mode 0600, directory 0700) when none exists: encrypted with the
// passphrase, or in the clear when plain. created tells which happened.
func LoadOrCreateDeviceKey(path string, passphrase func(confirm bool) ([]byte, error), plain bool) (k *ecdsa.PrivateKey, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err = ParseDeviceKey(data, func() ([]byte, error) { return passphrase(false) }, plain)
		if err != nil {
			return nil, false, fmt.Errorf("device key %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("read the device key: %w", err)
	}
	if k, err = e2ee.GenerateDeviceKey(); err != nil {
		return nil, false, fmt.Errorf("generate a device key: %w", err)
	}
	if plain {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, false, err
		}
		data = pem.EncodeToMemory(&pem.Block{Type: plainKeyType, Bytes: der})
	} else {
		pass, err := passphrase(true)
		if err != nil {
			return nil, false, err
		}
		data, err = encryptDeviceKey(k, pass, newKeyIterations)
		clear(pass)
		if err != nil {
			return nil, false, err
		}
	}
	if err := writeFileAtomic(path, data); err != nil {
		return nil, false, fmt.Errorf("write the device key: %w", err)
	}
	return k, true, nil
}

// writeFileAtomic writes a private file (0600, directory 0700) through a
// temporary file, so that a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
	}
	return werr
}
