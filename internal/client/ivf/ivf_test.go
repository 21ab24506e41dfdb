package ivf

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"conclave/internal/client/media"
)

func TestReadClip(t *testing.T) {
	r, err := NewReader(bytes.NewReader(media.VideoIVF))
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.FourCC != "VP80" || r.Header.Width != media.VideoWidth || r.Header.Height != media.VideoHeight {
		t.Fatalf("header %+v", r.Header)
	}
	var buf []byte
	n := 0
	for {
		f, _, err := r.ReadFrame(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		buf = f
		n++
	}
	if n != int(r.Header.Frames) {
		t.Fatalf("read %d frames, header says %d", n, r.Header.Frames)
	}
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.ivf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, Header{FourCC: "VP80", Width: 4, Height: 2, TimebaseNum: 1, TimebaseDen: 90000})
	if err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{{1, 2, 3}, {4}, {}}
	for i, fr := range frames {
		if err := w.WriteFrame(fr, uint64(i*3000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, _ := os.ReadFile(path)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Frames != 3 || r.Header.TimebaseDen != 90000 {
		t.Fatalf("header %+v", r.Header)
	}
	for i, want := range frames {
		got, pts, err := r.ReadFrame(nil)
		if err != nil || !bytes.Equal(got, want) || pts != uint64(i*3000) {
			t.Fatalf("frame %d: %v %v %v", i, got, pts, err)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add(media.VideoIVF[:200])
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for range 100 {
			if _, _, err := r.ReadFrame(nil); err != nil {
				return
			}
		}
	})
}
