package e2ee

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// FileChunkSize is the plaintext size of every file chunk but the last.
const FileChunkSize = 64 * 1024

const labelFileChunk = "Conclave E2EE v1 file chunk"

// FileCipher encrypts the chunks of one file under its random file key.
type FileCipher struct {
	id   [fileIDLen]byte
	aead cipher.AEAD
}

// NewFileCipher returns the cipher for the file with this key and id.
func NewFileCipher(key [KeyLen]byte, id [fileIDLen]byte) (*FileCipher, error) {
	aead, err := newGCM(key[:])
	if err != nil {
		return nil, err
	}
	return &FileCipher{id: id, aead: aead}, nil
}

// chunkAAD is "Conclave E2EE v1 file chunk" | file id (16) | index u64 |
// last u8 (1 for the final chunk, else 0).
func (f *FileCipher) chunkAAD(index uint64, last bool) []byte {
	b := make([]byte, 0, len(labelFileChunk)+fileIDLen+9)
	b = append(append(b, labelFileChunk...), f.id[:]...)
	b = binary.BigEndian.AppendUint64(b, index)
	if last {
		return append(b, 1)
	}
	return append(b, 0)
}

// SealChunk appends AES-256-GCM(chunk) to dst with nonce 0^4 || index and
// the chunk AAD: reordering, truncation and splicing between files fail.
func (f *FileCipher) SealChunk(dst []byte, index uint64, last bool, chunk []byte) []byte {
	nonce := seqNonce(index)
	return f.aead.Seal(dst, nonce[:], chunk, f.chunkAAD(index, last))
}

// OpenChunk decrypts one chunk and appends it to dst.
func (f *FileCipher) OpenChunk(dst []byte, index uint64, last bool, sealed []byte) ([]byte, error) {
	nonce := seqNonce(index)
	out, err := f.aead.Open(dst, nonce[:], sealed, f.chunkAAD(index, last))
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// EncryptFile draws a key and id for data and returns its descriptor (for
// the chat "file" message) and the blob the server stores: the sealed
// chunks concatenated. An empty file is one empty last chunk.
func EncryptFile(name, mimeType string, data []byte) (*FileDescriptor, []byte, error) {
	d := &FileDescriptor{Name: name, MimeType: mimeType, Size: uint64(len(data)), SHA256: sha256.Sum256(data)}
	if _, err := rand.Read(d.Key[:]); err != nil {
		return nil, nil, err
	}
	if _, err := rand.Read(d.ID[:]); err != nil {
		return nil, nil, err
	}
	if _, err := d.encode(); err != nil {
		return nil, nil, err
	}
	f, err := NewFileCipher(d.Key, d.ID)
	if err != nil {
		return nil, nil, err
	}
	return d, f.sealAll(data), nil
}

func (f *FileCipher) sealAll(data []byte) []byte {
	n := (len(data) + FileChunkSize - 1) / FileChunkSize
	if n == 0 {
		n = 1
	}
	blob := make([]byte, 0, len(data)+n*TagLen)
	for i := range n {
		end := min((i+1)*FileChunkSize, len(data))
		blob = f.SealChunk(blob, uint64(i), i == n-1, data[i*FileChunkSize:end])
	}
	return blob
}

// DecryptFile decrypts a blob fetched from the server and checks it
// against the descriptor's size and SHA-256.
func DecryptFile(d *FileDescriptor, blob []byte) ([]byte, error) {
	f, err := NewFileCipher(d.Key, d.ID)
	if err != nil {
		return nil, err
	}
	data, err := f.openAll(blob)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if uint64(len(data)) != d.Size || subtle.ConstantTimeCompare(sum[:], d.SHA256[:]) != 1 {
		return nil, errors.New("e2ee: file does not match its size or SHA-256")
	}
	return data, nil
}

func (f *FileCipher) openAll(blob []byte) ([]byte, error) {
	const sealed = FileChunkSize + TagLen
	n := (len(blob) + sealed - 1) / sealed
	if n == 0 || len(blob)-(n-1)*sealed < TagLen {
		return nil, fmt.Errorf("%w: file blob of %d bytes", ErrMalformed, len(blob))
	}
	out := make([]byte, 0, len(blob)-n*TagLen)
	for i := range n {
		end := min((i+1)*sealed, len(blob))
		var err error
		if out, err = f.OpenChunk(out, uint64(i), i == n-1, blob[i*sealed:end]); err != nil {
			return nil, fmt.Errorf("file chunk %d: %w", i, err)
		}
	}
	return out, nil
}
