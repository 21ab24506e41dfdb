package codecs

import (
	"bytes"
	"testing"
)

// vp8Key is the clear prefix of a 640x480 VP8 key frame.
var vp8Key = []byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}

func TestVP8Unmarshal(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    VP8
		wantErr bool
	}{
		{"minimal", []byte{0x10, 0x51}, VP8{HeaderSize: 1, Start: true}, false},
		{"key frame 15-bit id", append([]byte{0x90, 0xe0, 0x81, 0x23, 0x07, 0x40}, vp8Key...),
			VP8{HeaderSize: 6, Start: true, PictureIDBits: 15, PictureID: 0x123, HasTL0PICIDX: true, TL0PICIDX: 7,
				HasTID: true, TID: 1, KeyFrame: true, pictureIDOffset: 2, tl0Offset: 4}, false},
		{"7-bit id, not start", []byte{0x80, 0x80, 0x05, 0xff}, VP8{HeaderSize: 3, PictureIDBits: 7, PictureID: 5, pictureIDOffset: 2}, false},
		{"inter frame", []byte{0x90, 0x80, 0x05, 0x01}, VP8{HeaderSize: 3, Start: true, PictureIDBits: 7, PictureID: 5, pictureIDOffset: 2}, false},
		{"partition 1 no key", []byte{0x31, 0x00}, VP8{HeaderSize: 1, NonReference: true, Start: true, Partition: 1}, false},
		{"keyidx only", []byte{0x80, 0x10, 0x1f, 0x00}, VP8{HeaderSize: 3}, false},
		{"empty", nil, VP8{}, true},
		{"X without ext byte", []byte{0x80}, VP8{}, true},
		{"I without id", []byte{0x80, 0x80}, VP8{}, true},
		{"M without second byte", []byte{0x80, 0x80, 0x80}, VP8{}, true},
		{"L without tl0", []byte{0x80, 0x40}, VP8{}, true},
		{"T without tid", []byte{0x80, 0x20}, VP8{}, true},
	}
	for _, tt := range tests {
		var v VP8
		err := v.Unmarshal(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if !tt.wantErr && v != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, v, tt.want)
		}
	}
}

func TestVP8Rewrite(t *testing.T) {
	tests := []struct {
		in   []byte
		pid  uint16
		tl0  uint8
		want []byte
	}{
		{[]byte{0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0xaa}, 0x7ffe, 9, []byte{0x90, 0xe0, 0xff, 0xfe, 0x09, 0x40, 0xaa}},
		{[]byte{0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0xaa}, 0x8001, 0, []byte{0x90, 0xe0, 0x80, 0x01, 0x00, 0x40, 0xaa}}, // wraps at 2^15
		{[]byte{0x90, 0xc0, 0x05, 0x07, 0xaa}, 0x1ff, 3, []byte{0x90, 0xc0, 0x7f, 0x03, 0xaa}},                          // 7 bits
		{[]byte{0x10, 0xaa}, 0x55, 3, []byte{0x10, 0xaa}},                                                               // nothing to rewrite
	}
	for i, tt := range tests {
		var v VP8
		if err := v.Unmarshal(tt.in); err != nil {
			t.Fatal(err)
		}
		b := append([]byte(nil), tt.in...)
		v.SetPictureID(b, tt.pid)
		v.SetTL0PICIDX(b, tt.tl0)
		if !bytes.Equal(b, tt.want) {
			t.Errorf("%d: got % x, want % x", i, b, tt.want)
		}
	}
}

func TestVP8FrameSize(t *testing.T) {
	tests := []struct {
		in   []byte
		w, h int
		ok   bool
	}{
		{vp8Key, 640, 480, true},
		{[]byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0xc1, 0xb4, 0x40}, 320, 180, true}, // scale bits ignored
		{[]byte{0x51, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}, 0, 0, false},    // inter frame
		{[]byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2b, 0x80, 0x02, 0xe0, 0x01}, 0, 0, false},    // bad start code
		{vp8Key[:9], 0, 0, false},
	}
	for i, tt := range tests {
		w, h, ok := VP8FrameSize(tt.in)
		if w != tt.w || h != tt.h || ok != tt.ok {
			t.Errorf("%d: got %d %d %v, want %d %d %v", i, w, h, ok, tt.w, tt.h, tt.ok)
		}
	}
}

func TestVP9Unmarshal(t *testing.T) {
	// Key picture, non-flexible, L3T3 scalability structure with sizes.
	ss := []byte{0xaa, 0x80, 0x01, 0x00, 0x05, // I,L,B,V; pid 1; TID0 SID0; TL0 5
		0x50,                   // N_S=3 (2+1), Y
		0x00, 0xa0, 0x00, 0x5a, // 160x90
		0x01, 0x40, 0x00, 0xb4, // 320x180
		0x02, 0x80, 0x01, 0x68, // 640x360
	}
	tests := []struct {
		name    string
		in      []byte
		check   func(*VP9) bool
		wantErr bool
	}{
		{"key with SS", ss, func(v *VP9) bool {
			return v.KeyFrame && v.HeaderSize == len(ss) && v.SpatialLayers == 3 && v.HasResolutions &&
				v.Widths[2] == 640 && v.Heights[2] == 360 && v.Widths[0] == 160 && v.TL0PICIDX == 5 && v.PictureID == 1
		}, false},
		{"upper layer inter", []byte{0xe4, 0x81, 0x02, 0x43, 0x06}, func(v *VP9) bool { // I,P,L,E; pid 258; TID2 SID1 D
			return !v.KeyFrame && v.InterPicture && v.End && v.TID == 2 && v.SID == 1 && v.InterLayer && v.PictureID == 0x102 && v.HeaderSize == 5
		}, false},
		{"flexible with two refs", []byte{0xf8, 0x05, 0x20, 0x03, 0x04, 0xff}, func(v *VP9) bool {
			return v.Flexible && v.HeaderSize == 5 && v.TID == 1
		}, false},
		{"G structure", []byte{0x0a, 0x08, 0x02, 0x04, 0x01, 0x00}, func(v *VP9) bool { // B,V; N_S 1, G; 2 groups: 1 ref, 0 refs
			return v.HeaderSize == 6 && v.KeyFrame
		}, false},
		{"empty", nil, nil, true},
		{"flexible refs run off", []byte{0x50, 0x03, 0x03, 0x03}, nil, true},
		{"SS sizes truncated", ss[:12], nil, true},
		{"G truncated", []byte{0x0a, 0x08, 0x02, 0x0c}, nil, true},
	}
	for _, tt := range tests {
		var v VP9
		err := v.Unmarshal(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		if !tt.wantErr && !tt.check(&v) {
			t.Errorf("%s: unexpected %+v", tt.name, v)
		}
	}
}

func FuzzVP8(f *testing.F) {
	f.Add([]byte{0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01})
	f.Add([]byte{0x80, 0x80, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v VP8
		if v.Unmarshal(b) != nil {
			return
		}
		if v.HeaderSize > len(b) {
			t.Fatalf("header size %d beyond %d bytes", v.HeaderSize, len(b))
		}
		c := append([]byte(nil), b...)
		v.SetPictureID(c, v.PictureID)
		v.SetTL0PICIDX(c, v.TL0PICIDX)
		if !bytes.Equal(b, c) {
			t.Fatalf("rewriting the same values changed % x to % x", b, c)
		}
		v.SetPictureID(c, 0x1234)
		var w VP8
		if err := w.Unmarshal(c); err != nil || w.HeaderSize != v.HeaderSize {
			t.Fatalf("rewritten packet does not parse alike: %v", err)
		}
		VP8FrameSize(b[v.HeaderSize:])
	})
}

func FuzzVP9(f *testing.F) {
	f.Add([]byte{0xaa, 0x80, 0x01, 0x00, 0x05, 0x50, 0, 0xa0, 0, 0x5a, 1, 0x40, 0, 0xb4, 2, 0x80, 1, 0x68})
	f.Add([]byte{0xf8, 0x05, 0x20, 0x03, 0x04, 0xff})
	f.Add([]byte{0x0a, 0x08, 0x02, 0x04, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v VP9
		if v.Unmarshal(b) != nil {
			return
		}
		if v.HeaderSize > len(b) || v.SpatialLayers > MaxSpatialLayers {
			t.Fatalf("bad parse %+v of %d bytes", v, len(b))
		}
	})
}
