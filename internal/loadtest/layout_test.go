package loadtest

import (
	"testing"

	"conclave/internal/client"
)

func TestParseLayout(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		tracks int
	}{
		{"speaker", "1:1280x720,5:320x180", 6},
		{" 4X4 ", "16:320x180", 16},
		{"2:640x360, 1:1920x1080", "2:640x360,1:1920x1080", 3},
	}
	for _, tt := range tests {
		l, err := ParseLayout(tt.in)
		if err != nil || l.String() != tt.want || l.Tracks() != tt.tracks {
			t.Errorf("ParseLayout(%q) = %v (%d tracks), %v", tt.in, l, l.Tracks(), err)
		}
	}
	for _, bad := range []string{"", "big", "1:1280", "0:320x180", "1:320x0", "1:99999x10", "65:320x180", "x:1x1", "1:320x180,"} {
		if _, err := ParseLayout(bad); err == nil {
			t.Errorf("ParseLayout(%q) accepted", bad)
		}
	}
}

func TestLayoutSizes(t *testing.T) {
	l, _ := ParseLayout("speaker")
	big, small, none := client.Size{Width: 1280, Height: 720}, client.Size{Width: 320, Height: 180}, client.Size{}
	got := l.sizes(8, 10)
	want := []client.Size{small, small, small, small, none, none, none, none, big, small}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("subscriber 8 of 10 publishers: %v, want %v", got, want)
		}
	}
	if got := l.sizes(3, 1); got[0] != big {
		t.Errorf("one publisher: %v, want it large", got)
	}
	if got := l.sizes(0, 0); len(got) != 0 {
		t.Errorf("no publisher: %v", got)
	}
}
