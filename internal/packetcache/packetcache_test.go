package packetcache

import (
	"bytes"
	"testing"
)

func TestStoreGet(t *testing.T) {
	c := New(100)
	if c.Len() != 128 {
		t.Fatalf("Len = %d, want 128", c.Len())
	}
	buf := make([]byte, MaxPacketSize)
	for seq := uint16(65500); seq != 100; seq++ {
		c.Store(seq, []byte{byte(seq), byte(seq >> 8), 1, 2, 3})
	}
	tests := []struct {
		seq  uint16
		want []byte
	}{
		{99, []byte{99, 0, 1, 2, 3}},
		{65535, []byte{255, 255, 1, 2, 3}},
		{0, []byte{0, 0, 1, 2, 3}},
		{65500, nil}, // overwritten: more than 128 packets ago
		{5000, nil},  // never stored
	}
	for _, tt := range tests {
		n := c.Get(tt.seq, buf)
		if !bytes.Equal(buf[:n], tt.want) {
			t.Errorf("Get(%d) = %v, want %v", tt.seq, buf[:n], tt.want)
		}
	}
}

func TestRejects(t *testing.T) {
	c := New(8)
	c.Store(1, make([]byte, MaxPacketSize+1))
	if n := c.Get(1, make([]byte, 2000)); n != 0 {
		t.Errorf("oversized packet cached (%d bytes)", n)
	}
	c.Store(2, []byte{1, 2, 3, 4})
	if n := c.Get(2, make([]byte, 2)); n != 0 {
		t.Errorf("Get into a short buffer returned %d", n)
	}
}

func BenchmarkStore(b *testing.B) {
	c := New(512)
	p := make([]byte, 1200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Store(uint16(i), p)
	}
}
