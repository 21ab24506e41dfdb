package loadtest

import (
	"fmt"
	"strconv"
	"strings"

	"conclave/internal/client"
	"conclave/internal/signal"
)

// A Layout says how many video tracks a subscriber shows and at what
// size: groups of tiles, largest first.
type Layout []Tiles

// Tiles are Count tracks shown at Size.
type Tiles struct {
	Count int
	Size  client.Size
}

// Layout presets. "speaker" is the load of the issue and of LiveKit's
// default: six tracks, one large and five thumbnails. LiveKit renders its
// thumbnails at 356x200 and forwards its lowest layer to them; Conclave's
// server forwards the lowest layer that covers the rendered size within
// 10%, which for the 320x180 layer means at most 355x200, so thumbnails
// are 320x180 here: the same layers travel. The grids are LiveKit's
// (3x3 at 400x225 gets the middle layer here, as there).
var layoutPresets = map[string]string{
	"speaker": "1:1280x720,5:320x180",
	"3x3":     "9:400x225",
	"4x4":     "16:320x180",
	"5x5":     "25:256x144",
}

// ParseLayout reads a preset name (speaker, 3x3, 4x4, 5x5) or a list of
// COUNT:WIDTHxHEIGHT groups, e.g. "1:1280x720,5:320x180".
func ParseLayout(s string) (Layout, error) {
	spec := strings.TrimSpace(s)
	if p, ok := layoutPresets[strings.ToLower(spec)]; ok {
		spec = p
	}
	var l Layout
	total := 0
	for _, g := range strings.Split(spec, ",") {
		g = strings.TrimSpace(g)
		count, size, ok := strings.Cut(g, ":")
		w, h, ok2 := strings.Cut(size, "x")
		n, err1 := strconv.Atoi(count)
		wi, err2 := strconv.Atoi(w)
		hi, err3 := strconv.Atoi(h)
		if !ok || !ok2 || err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("layout %q: %q is not COUNT:WIDTHxHEIGHT (or use a preset: speaker, 3x3, 4x4, 5x5)", s, g)
		}
		if n < 1 || wi < 1 || hi < 1 || wi > signal.MaxTrackSize || hi > signal.MaxTrackSize {
			return nil, fmt.Errorf("layout %q: %q needs a count of at least 1 and sizes from 1 to %d", s, g, signal.MaxTrackSize)
		}
		total += n
		l = append(l, Tiles{Count: n, Size: client.Size{Width: wi, Height: hi}})
	}
	if total > signal.MaxTracks {
		return nil, fmt.Errorf("layout %q shows %d tracks; at most %d", s, total, signal.MaxTracks)
	}
	return l, nil
}

// Tracks is how many tracks the layout shows.
func (l Layout) Tracks() int {
	n := 0
	for _, g := range l {
		n += g.Count
	}
	return n
}

func (l Layout) String() string {
	parts := make([]string, len(l))
	for i, g := range l {
		parts[i] = fmt.Sprintf("%d:%dx%d", g.Count, g.Size.Width, g.Size.Height)
	}
	return strings.Join(parts, ",")
}

// sizes returns the size at which subscriber number sub shows each of n
// publishers (by index): the layout's tiles go to publishers sub, sub+1,
// ... (mod n), so that every publisher is shown large by some
// subscribers and every layer is in use; the others are hidden (0x0).
func (l Layout) sizes(sub, n int) []client.Size {
	out := make([]client.Size, n)
	if n == 0 {
		return out
	}
	k := 0
	for _, g := range l {
		for range g.Count {
			if k == n {
				return out
			}
			out[(sub+k)%n] = g.Size
			k++
		}
	}
	return out
}
