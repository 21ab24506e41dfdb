package clips

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"conclave/internal/client/ivf"
)

// TestLayers: the clips have the sizes, frame rate, key frames and bit
// rates the load test assumes, and the same frames at the same times.
func TestLayers(t *testing.T) {
	var frames int
	var pts []uint64
	total := 0
	for i, l := range Layers {
		r, err := ivf.NewReader(bytes.NewReader(l.IVF))
		if err != nil {
			t.Fatalf("%s: %v", l.RID, err)
		}
		h := r.Header
		if h.FourCC != "VP80" || int(h.Width) != l.Width || int(h.Height) != l.Height {
			t.Errorf("%s: %s %dx%d, want VP80 %dx%d", l.RID, h.FourCC, h.Width, h.Height, l.Width, l.Height)
		}
		n, keys, bytes := 0, 0, 0
		var times []uint64
		for {
			f, ts, err := r.ReadFrame(nil)
			if err != nil {
				break
			}
			if f[0]&1 == 0 {
				keys++
				if n%60 != 0 {
					t.Errorf("%s: key frame at frame %d", l.RID, n)
				}
			}
			times = append(times, ts)
			n++
			bytes += len(f)
		}
		total += len(l.IVF)
		dur := time.Duration(uint64(n) * uint64(h.TimebaseNum) * uint64(time.Second) / uint64(h.TimebaseDen))
		if dur != 4*time.Second || keys != 2 {
			t.Errorf("%s: %d frames (%v), %d key frames; want 4 s at 30 frames/s with 2 key frames", l.RID, n, dur, keys)
		}
		rate := int(float64(bytes*8) / dur.Seconds())
		if rate < l.Bitrate*8/10 || rate > l.Bitrate*13/10 {
			t.Errorf("%s: %d bit/s, want about %d", l.RID, rate, l.Bitrate)
		}
		if i == 0 {
			frames, pts = n, times
		} else if n != frames || !slices.Equal(times, pts) {
			t.Errorf("%s: frames or time stamps differ from layer q", l.RID)
		}
	}
	if total > 2<<20 {
		t.Errorf("the clips take %d bytes; keep them under 2 MiB", total)
	}
	for _, s := range Sources() {
		if _, _, err := s.NextFrame(nil); err != nil {
			t.Error(err)
		}
	}
}
