package meeting

import (
	"sync"
	"time"

	"conclave/internal/clock"
)

// Active speaker detection. Each microphone track's packets carry the
// sender's audio level in the clear (RFC 6464 header extension; SFrame
// encrypts only the payload): the media core hands the room, as metadata,
// how loud each microphone was (conn.UpTrack.AudioLevel). A room's
// speakerDetector samples the levels every SpeakerConfig.Interval, smooths
// them per participant, and names a new dominant speaker only when another
// participant has been louder than the current one for SpeakerConfig.Hold.

// SpeakerConfig tunes the detection of a meeting's active speaker; zero
// values take the defaults.
type SpeakerConfig struct {
	// Interval between samples (default 200 ms).
	Interval time.Duration
	// Hold is how long a challenger must lead before it takes over
	// (default 1 s).
	Hold time.Duration
	// Threshold is the smoothed loudness (0 silence .. 127 loudest:
	// 127 minus the level in -dBov) below which a participant counts as
	// silent (default 40, that is -87 dBov: anything but near-silence).
	Threshold float64
	// Smoothing is the weight of a new sample in the moving average
	// (default 0.3).
	Smoothing float64
}

func (c SpeakerConfig) withDefaults() SpeakerConfig {
	if c.Interval <= 0 {
		c.Interval = 200 * time.Millisecond
	}
	if c.Hold <= 0 {
		c.Hold = time.Second
	}
	if c.Threshold <= 0 {
		c.Threshold = 40
	}
	if c.Smoothing <= 0 || c.Smoothing > 1 {
		c.Smoothing = 0.3
	}
	return c
}

// speakerDetector finds a room's dominant speaker among participant ids.
type speakerDetector struct {
	cfg      SpeakerConfig
	clock    clock.Clock
	onChange func(previous, next string)

	mu       sync.Mutex
	voices   map[string]*voice // by participant
	dominant string
	leader   string    // challenger
	since    time.Time // when the challenger started leading
	stop     func()    // ends the sampling; nil when not started
	stopped  bool
}

// voice is one participant's microphone as the detector hears it.
type voice struct {
	level    func() (level float64, ok bool) // loudness since the last sample
	smoothed float64
}

// newSpeakerDetector returns a detector that calls onChange with the
// previous and the new dominant speaker. start runs it on the clock;
// tests call sample.
func newSpeakerDetector(cfg SpeakerConfig, clk clock.Clock, onChange func(previous, next string)) *speakerDetector {
	return &speakerDetector{cfg: cfg.withDefaults(), clock: clock.Or(clk), onChange: onChange, voices: map[string]*voice{}}
}

// start samples every Interval until halt.
func (s *speakerDetector) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.stop != nil {
		return
	}
	s.stop = clock.Every(s.clock, s.cfg.Interval, s.sample)
}

// halt ends sampling.
func (s *speakerDetector) halt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		if s.stop != nil {
			s.stop()
		}
	}
}

// add watches a participant's microphone, read by level (without the
// room's lock: the detector calls it under its own).
func (s *speakerDetector) add(id string, level func() (float64, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.voices[id] == nil {
		s.voices[id] = &voice{level: level}
	}
}

// remove stops watching a participant.
func (s *speakerDetector) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.voices, id)
	if s.leader == id {
		s.leader = ""
	}
	if s.dominant == id {
		s.dominant = ""
	}
}

// sample takes one sample of every participant's level and updates the
// dominant speaker.
func (s *speakerDetector) sample() {
	now := s.clock.Now()
	s.mu.Lock()
	loudest := ""
	var top float64
	for id, v := range s.voices {
		l, ok := v.level()
		if !ok {
			l = 0 // no packets: silent (DTX or muted)
		}
		v.smoothed += s.cfg.Smoothing * (l - v.smoothed)
		if v.smoothed >= s.cfg.Threshold && (loudest == "" || v.smoothed > top) {
			loudest, top = id, v.smoothed
		}
	}
	changed := false
	previous := s.dominant
	switch {
	case loudest == "" || loudest == s.dominant:
		s.leader = ""
	case s.dominant == "":
		// Nobody holds the floor: the first voice takes it at once.
		s.dominant, changed = loudest, true
		s.leader = ""
	case s.leader != loudest:
		s.leader, s.since = loudest, now
	case now.Sub(s.since) >= s.cfg.Hold:
		s.dominant, changed = loudest, true
		s.leader = ""
	}
	next := s.dominant
	s.mu.Unlock()
	if changed && s.onChange != nil {
		s.onChange(previous, next)
	}
}

// current returns the dominant speaker's participant id, or "".
func (s *speakerDetector) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dominant
}
