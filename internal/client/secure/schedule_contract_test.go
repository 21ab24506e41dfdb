package secure

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"conclave/internal/e2ee"
)

// The key schedule's timings are the contract's (the "schedule" section of
// internal/e2ee/testdata/vectors.json), which the browser's tests read too
// (web/static/js/e2ee/vectors.test.mjs).
func TestScheduleContract(t *testing.T) {
	data, err := os.ReadFile("../../e2ee/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Schedule struct {
			RotationDebounceMs         int `json:"rotationDebounceMs"`
			SwitchDelayMs              int `json:"switchDelayMs"`
			KeyWaitMs                  int `json:"keyWaitMs"`
			RetentionMs                int `json:"retentionMs"`
			MaxRatchetAhead            int `json:"maxRatchetAhead"`
			KeyRequestAnswerIntervalMs int `json:"keyRequestAnswerIntervalMs"`
			AnnounceGraceMs            int `json:"announceGraceMs"`
			ViewGraceMs                int `json:"viewGraceMs"`
			KeyRequestAfterMs          struct {
				Native int `json:"native"`
			} `json:"keyRequestAfterMs"`
			KeyRequestRepeatMs struct {
				Native int `json:"native"`
			} `json:"keyRequestRepeatMs"`
		} `json:"schedule"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	s := v.Schedule
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// A Config with no timings set takes the defaults.
	cfg := Config{Device: mustDevice(t)}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"rotation debounce", cfg.RotationDebounce, ms(s.RotationDebounceMs)},
		{"switch delay", cfg.SwitchDelay, ms(s.SwitchDelayMs)},
		{"key wait", cfg.KeyWait, ms(s.KeyWaitMs)},
		{"retention", cfg.Retention, ms(s.RetentionMs)},
		{"key request after", cfg.KeyRequestAfter, ms(s.KeyRequestAfterMs.Native)},
		// The native client repeats a request every KeyRequestAfter.
		{"key request repeat", cfg.KeyRequestAfter, ms(s.KeyRequestRepeatMs.Native)},
		{"key request answers", resendInterval, ms(s.KeyRequestAnswerIntervalMs)},
		{"announce grace", AnnounceGrace, ms(s.AnnounceGraceMs)},
		{"view grace", ViewGrace, ms(s.ViewGraceMs)},
	} {
		if c.got != c.want || c.want == 0 {
			t.Errorf("%s: %v, the contract says %v", c.name, c.got, c.want)
		}
	}
	if e2ee.MaxRatchetAhead != s.MaxRatchetAhead {
		t.Errorf("ratchet steps ahead: %d, the contract says %d", e2ee.MaxRatchetAhead, s.MaxRatchetAhead)
	}
}
