package e2ee

import (
	"crypto/ecdh"
	"testing"
	"time"
)

// Fuzz targets for every decoder of untrusted input. Seeds come from the
// shared vectors.

func FuzzParseHeader(f *testing.F) {
	file, _ := loadVectors(f)
	for _, h := range file.RFC9605.Header {
		f.Add([]byte(h.Header))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kid, ctr, n, err := ParseHeader(b)
		if err != nil {
			return
		}
		if h := AppendHeader(nil, kid, ctr); string(h) != string(b[:n]) {
			t.Fatalf("parse %x then encode gives %x", b[:n], h)
		}
	})
}

func FuzzDecryptFrame(f *testing.F) {
	file, _ := loadVectors(f)
	for _, m := range file.Media {
		f.Add(uint8(CodecVP8), []byte(m.Encrypted))
	}
	k := file.Media[0].SenderKey.key()
	f.Fuzz(func(t *testing.T, codec uint8, b []byte) {
		r := NewReceiver(k.Index, KeyRingConfig{})
		r.AddKey(k)
		r.DecryptFrame(Codec(codec%5), b, nil)
	})
}

func FuzzCredential(f *testing.F) {
	file, _ := loadVectors(f)
	for _, c := range file.Credentials {
		f.Add([]byte(c.Credential))
	}
	ca, _ := ParsePublicKey(file.Keys.CA.Public)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCredential(b)
		if err != nil {
			return
		}
		body, err := EncodeCredentialBody(c.CredentialFields)
		if err == nil && string(body) != string(c.Body) {
			t.Fatalf("credential re-encodes differently")
		}
		VerifyCredential(ca, b, time.Unix(vecNow, 0))
	})
}

func FuzzAnnouncement(f *testing.F) {
	file, _ := loadVectors(f)
	for _, a := range file.Announcement {
		f.Add([]byte(a.Announcement))
	}
	ca, _ := ParsePublicKey(file.Keys.CA.Public)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAnnouncement(b)
		if err != nil {
			return
		}
		body, err := EncodeAnnouncementBody(a.Announcement)
		if err == nil && string(body) != string(a.Body) {
			t.Fatalf("announcement re-encodes differently")
		}
		VerifyAnnouncement(b, VerifyOptions{MeetingID: vecMeeting, OrgKey: ca, Now: time.Unix(vecNow, 0)})
	})
}

func FuzzKeyMessage(f *testing.F) {
	file, _ := loadVectors(f)
	for _, m := range file.Pairwise.Messages {
		f.Add([]byte(m.Payload))
	}
	pa, _ := ecdh.P256().NewPrivateKey(file.Keys.ECDH[0].Private)
	pb, _ := ecdh.P256().NewPrivateKey(file.Keys.ECDH[1].Private)
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := NewChannel(vecMeeting, "p-bob", pb, "p-alice", pa.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		ch.Open(b)
	})
}

func FuzzChat(f *testing.F) {
	file, _ := loadVectors(f)
	for _, c := range file.Chat {
		f.Add([]byte(c.Payload))
	}
	c := file.Chat[0]
	dev, _ := ParsePublicKey(file.Keys.Devices[0].Public)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReceiver(c.SenderKey.Index, KeyRingConfig{})
		r.AddKey(c.SenderKey.key())
		r.OpenChat(c.MeetingID, c.ParticipantID, dev, b)
	})
}

func FuzzFileDescriptor(f *testing.F) {
	d := &FileDescriptor{Name: "a", Size: 3}
	b, _ := d.encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeFileDescriptor(b)
		if err != nil {
			return
		}
		if e, err := d.encode(); err == nil && string(e) != string(b) {
			t.Fatalf("file descriptor re-encodes differently")
		}
	})
}

func FuzzFileChunk(f *testing.F) {
	file, _ := loadVectors(f)
	for _, c := range file.File.Chunks {
		f.Add(c.Index, c.Last, []byte(c.Sealed))
	}
	var key [32]byte
	var id [16]byte
	copy(key[:], file.File.Key)
	copy(id[:], file.File.ID)
	fc, _ := NewFileCipher(key, id)
	f.Fuzz(func(t *testing.T, index uint64, last bool, b []byte) {
		fc.OpenChunk(nil, index, last, b)
		fc.openAll(b)
	})
}

func FuzzParseCommitReveal(f *testing.F) {
	file, _ := loadVectors(f)
	for _, c := range file.Rounds.Commits {
		f.Add([]byte(c.Commit))
		f.Add([]byte(c.Reveal))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseCommit(b); err == nil {
			body, err := encodeCommitBody(c)
			if err != nil || string(append(body, c.Signature...)) != string(b) {
				t.Fatalf("commit %x does not encode back: %v", b, err)
			}
		}
		if r, err := ParseReveal(b); err == nil {
			if enc, err := EncodeReveal(*r); err != nil || string(enc) != string(b) {
				t.Fatalf("reveal %x does not encode back: %v", b, err)
			}
		}
	})
}

func FuzzLogRecords(f *testing.F) {
	file, _ := loadVectors(f)
	for _, r := range file.Log.Records {
		f.Add([]byte(r))
	}
	f.Add([]byte(file.Log.Checkpoint))
	v, err := LogVerifier(file.Log.VerifierKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseCredential(b)
		ParseRevocation(b)
		OpenCheckpoint(b, v)
		parseCheckpointUnverified(b)
		Skeleton(string(b))
	})
}
