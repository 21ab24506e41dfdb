package e2ee

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

const (
	chatTag         = "CCHT"
	chatVersion     = 1
	chatHeaderLen   = 1 + 2 + 1 + 1 + 8
	labelChatAAD    = "Conclave E2EE v1 chat message"
	maxChatBody     = 64 * 1024
	maxFileNameLen  = 255
	maxMimeTypeLen  = 127
	fileIDLen       = 16
	fileDescLen     = fileIDLen + 8 + KeyLen + sha256.Size // plus name and type
	chatOverheadLen = chatHeaderLen + 8 + 1 + 4 + SignatureLen + TagLen
)

// ChatKind says what a chat message carries.
type ChatKind uint8

// Chat message kinds.
const (
	ChatText ChatKind = 1 // UTF-8 text
	ChatFile ChatKind = 2 // a FileDescriptor
)

// FileDescriptor announces an encrypted file stored by the server as an
// opaque blob: everything needed to fetch, decrypt and check it.
type FileDescriptor struct {
	ID       [fileIDLen]byte // random; also names the blob on the server
	Name     string
	Size     uint64
	MimeType string
	Key      [KeyLen]byte
	SHA256   [sha256.Size]byte // of the plaintext
}

// encode: id (16) | name str16 | size u64 | mime type str16 | key (32) |
// sha256 (32).
func (f *FileDescriptor) encode() ([]byte, error) {
	if f.Name == "" || len(f.Name) > maxFileNameLen || len(f.MimeType) > maxMimeTypeLen {
		return nil, errors.New("e2ee: file name must be 1-255 bytes, MIME type at most 127")
	}
	w := writer{b: make([]byte, 0, fileDescLen+4+len(f.Name)+len(f.MimeType))}
	w.raw(f.ID[:])
	w.str16(f.Name)
	w.u64(f.Size)
	w.str16(f.MimeType)
	w.raw(f.Key[:])
	w.raw(f.SHA256[:])
	return w.b, nil
}

func decodeFileDescriptor(b []byte) (*FileDescriptor, error) {
	r := reader{b: b}
	var f FileDescriptor
	copy(f.ID[:], r.take(fileIDLen))
	f.Name = r.str16(maxFileNameLen)
	f.Size = r.u64()
	f.MimeType = r.str16(maxMimeTypeLen)
	copy(f.Key[:], r.take(KeyLen))
	copy(f.SHA256[:], r.take(sha256.Size))
	if !r.done() || f.Name == "" {
		return nil, fmt.Errorf("%w: file descriptor", ErrMalformed)
	}
	return &f, nil
}

// ChatMessage is one chat message. SenderIndex, Generation, Step and Seq
// are filled in by SealChat and OpenChat.
type ChatMessage struct {
	Kind        ChatKind
	Text        string          // ChatText
	File        *FileDescriptor // ChatFile
	Timestamp   time.Time       // milliseconds
	SenderIndex uint16
	Generation  uint8
	Step        uint8
	Seq         uint64
}

func (m *ChatMessage) body() ([]byte, error) {
	switch m.Kind {
	case ChatText:
		if len(m.Text) > maxChatBody || !utf8.ValidString(m.Text) {
			return nil, errors.New("e2ee: chat text must be UTF-8 of at most 64 KiB")
		}
		return []byte(m.Text), nil
	case ChatFile:
		if m.File == nil {
			return nil, errors.New("e2ee: file message without a file")
		}
		return m.File.encode()
	}
	return nil, fmt.Errorf("e2ee: chat kind %d", m.Kind)
}

func chatHeader(m *ChatMessage) []byte {
	h := make([]byte, chatHeaderLen)
	h[0] = chatVersion
	binary.BigEndian.PutUint16(h[1:], m.SenderIndex)
	h[3], h[4] = m.Generation, m.Step
	binary.BigEndian.PutUint64(h[5:], m.Seq)
	return h
}

func chatAAD(meetingID, participantID string, header []byte) []byte {
	w := writer{}
	w.raw([]byte(labelChatAAD))
	w.str16(meetingID)
	w.str16(participantID)
	w.raw(header)
	return w.b
}

// chatSigned is "CCHT" | meeting id str16 | participant id str16 | header
// (13) | timestamp i64 | kind u8 | body bytes32.
func chatSigned(meetingID, participantID string, header []byte, ts int64, kind ChatKind, body []byte) []byte {
	w := writer{}
	w.raw([]byte(chatTag))
	w.str16(meetingID)
	w.str16(participantID)
	w.raw(header)
	w.i64(ts)
	w.u8(uint8(kind))
	w.u32(uint32(len(body)))
	w.raw(body)
	return w.b
}

// SealChat signs a chat message with the device key and encrypts it under
// the chat key of the sender's current key version. The payload is header
// (version u8 | sender index u16 | generation u8 | step u8 | seq u64) ||
// AES-256-GCM(timestamp i64 | kind u8 | body bytes32 | signature (64)),
// nonce 0^4 || seq, AAD "Conclave E2EE v1 chat message" | meeting id str16
// | participant id str16 | header.
func (s *Sender) SealChat(meetingID, participantID string, device *ecdsa.PrivateKey, m ChatMessage) ([]byte, error) {
	s.mu.Lock()
	s.chatSeq++
	m.Seq = s.chatSeq
	k := s.key
	s.mu.Unlock()
	m.SenderIndex, m.Generation, m.Step = k.Index, k.Generation, k.Step
	sig := func(msg []byte) ([]byte, error) { return Sign(device, msg) }
	return sealChat(meetingID, participantID, k, m, sig)
}

func sealChat(meetingID, participantID string, k SenderKey, m ChatMessage, sign func([]byte) ([]byte, error)) ([]byte, error) {
	body, err := m.body()
	if err != nil {
		return nil, err
	}
	header := chatHeader(&m)
	ts := m.Timestamp.UnixMilli()
	sig, err := sign(chatSigned(meetingID, participantID, header, ts, m.Kind, body))
	if err != nil {
		return nil, err
	}
	w := writer{b: make([]byte, 0, 13+len(body)+SignatureLen)}
	w.i64(ts)
	w.u8(uint8(m.Kind))
	w.u32(uint32(len(body)))
	w.raw(body)
	w.raw(sig)
	ck, err := k.ChatKey()
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(ck[:])
	if err != nil {
		return nil, err
	}
	nonce := seqNonce(m.Seq)
	out := append(make([]byte, 0, chatOverheadLen+len(body)), header...)
	return aead.Seal(out, nonce[:], w.b, chatAAD(meetingID, participantID, header)), nil
}

// OpenChat decrypts and verifies a chat message from this receiver's
// sender: participantID and device are from the sender's verified
// announcement. Messages whose sequence number is not above the last
// accepted one are refused (ErrReplay).
func (r *Receiver) OpenChat(meetingID, participantID string, device *ecdsa.PublicKey, b []byte) (ChatMessage, error) {
	var m ChatMessage
	if len(b) < chatOverheadLen || b[0] != chatVersion {
		return m, fmt.Errorf("%w: chat message", ErrMalformed)
	}
	header := b[:chatHeaderLen]
	m.SenderIndex = binary.BigEndian.Uint16(header[1:])
	m.Generation, m.Step = header[3], header[4]
	m.Seq = binary.BigEndian.Uint64(header[5:])
	if m.SenderIndex != r.ring.index {
		return ChatMessage{}, fmt.Errorf("e2ee: chat message from sender %d given to the receiver of %d", m.SenderIndex, r.ring.index)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.Seq <= r.chatSeq {
		return ChatMessage{}, ErrReplay
	}
	r.ring.mu.Lock()
	e, derived, err := r.ring.lookup(m.Generation, m.Step)
	r.ring.mu.Unlock()
	if err != nil {
		return ChatMessage{}, err
	}
	ck, err := e.key.ChatKey()
	if err != nil {
		return ChatMessage{}, err
	}
	aead, err := newGCM(ck[:])
	if err != nil {
		return ChatMessage{}, err
	}
	nonce := seqNonce(m.Seq)
	pt, err := aead.Open(nil, nonce[:], b[chatHeaderLen:], chatAAD(meetingID, participantID, header))
	if err != nil {
		return ChatMessage{}, ErrAuth
	}
	in := reader{b: pt}
	ts := in.i64()
	m.Kind = ChatKind(in.u8())
	n := in.u32()
	if n > maxChatBody {
		return ChatMessage{}, fmt.Errorf("%w: chat body", ErrMalformed)
	}
	body := in.take(int(n))
	sig := in.take(SignatureLen)
	if !in.done() {
		return ChatMessage{}, fmt.Errorf("%w: chat message", ErrMalformed)
	}
	if !Verify(device, chatSigned(meetingID, participantID, header, ts, m.Kind, body), sig) {
		return ChatMessage{}, fmt.Errorf("chat message: %w", ErrSignature)
	}
	m.Timestamp = time.UnixMilli(ts)
	switch m.Kind {
	case ChatText:
		if !utf8.Valid(body) {
			return ChatMessage{}, fmt.Errorf("%w: chat text is not UTF-8", ErrMalformed)
		}
		m.Text = string(body)
	case ChatFile:
		if m.File, err = decodeFileDescriptor(body); err != nil {
			return ChatMessage{}, err
		}
	default:
		return ChatMessage{}, fmt.Errorf("%w: chat kind %d", ErrMalformed, m.Kind)
	}
	r.chatSeq = m.Seq
	r.ring.mu.Lock()
	r.ring.used(e, derived)
	r.ring.mu.Unlock()
	return m, nil
}
