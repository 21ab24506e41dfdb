package sfu

import (
	"sync"
	"time"

	"conclave/internal/clock"
)

// Active speaker detection. Each microphone track's packets carry the
// sender's audio level in the clear (RFC 6464 header extension; SFrame
// encrypts only the payload): the server sees, as metadata, how loud each
// participant is. A SpeakerDetector, one per room, samples the levels every
// SpeakerConfig.Interval, smooths them per participant, and names a new
// dominant speaker only when another participant has been louder than the
// current one for SpeakerConfig.Hold.

// SpeakerConfig tunes a SpeakerDetector; zero values take the defaults.
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
	// Clock runs the sampling (default clock.System).
	Clock clock.Clock
}

// SpeakerDetector finds a room's dominant speaker.
type SpeakerDetector struct {
	cfg      SpeakerConfig
	onChange func(participant string)
	level    func(*Publisher) (float64, bool) // loudness since the last sample

	mu       sync.Mutex
	pubs     map[*Publisher]*speakerState
	dominant *Publisher
	leader   *Publisher // challenger
	since    time.Time  // when the challenger started leading
	stop     func()     // ends Start's sampling; nil when not started
	stopped  bool
}

type speakerState struct {
	level float64
}

// NewSpeakerDetector returns a detector that calls onChange with the id of
// each new dominant speaker. Start runs it; tests call Sample instead.
func NewSpeakerDetector(cfg SpeakerConfig, onChange func(participant string)) *SpeakerDetector {
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.Hold <= 0 {
		cfg.Hold = time.Second
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = 40
	}
	if cfg.Smoothing <= 0 || cfg.Smoothing > 1 {
		cfg.Smoothing = 0.3
	}
	cfg.Clock = clock.Or(cfg.Clock)
	return &SpeakerDetector{cfg: cfg, onChange: onChange, level: microphoneLevel,
		pubs: map[*Publisher]*speakerState{}}
}

// Start samples every Interval on the clock until Stop.
func (s *SpeakerDetector) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.stop != nil {
		return
	}
	s.stop = clock.Every(s.cfg.Clock, s.cfg.Interval, s.Sample)
}

// Stop ends sampling.
func (s *SpeakerDetector) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		if s.stop != nil {
			s.stop()
		}
	}
}

// Add watches a publisher's microphone.
func (s *SpeakerDetector) Add(p *Publisher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pubs[p] == nil {
		s.pubs[p] = &speakerState{}
	}
}

// Remove stops watching a publisher.
func (s *SpeakerDetector) Remove(p *Publisher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pubs, p)
	if s.leader == p {
		s.leader = nil
	}
	if s.dominant == p {
		s.dominant = nil
	}
}

// microphoneLevel is the mean loudness of a publisher's microphone since
// the last sample; false when no packet carried a level.
func microphoneLevel(p *Publisher) (float64, bool) {
	var best float64
	any := false
	for _, t := range p.Tracks() {
		if t.source != "microphone" || t.audio.ext == 0 {
			continue
		}
		l, n := t.takeAudioLevel()
		if t.muted.Load() {
			l, n = 0, 1
		}
		if n > 0 {
			any = true
			best = max(best, l)
		}
	}
	return best, any
}

// Sample takes one sample of every publisher's level and updates the
// dominant speaker.
func (s *SpeakerDetector) Sample() {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	var loudest *Publisher
	var top float64
	for p, st := range s.pubs {
		l, ok := s.level(p)
		if !ok {
			l = 0 // no packets: silent (DTX or muted)
		}
		st.level += s.cfg.Smoothing * (l - st.level)
		if st.level >= s.cfg.Threshold && (loudest == nil || st.level > top) {
			loudest, top = p, st.level
		}
	}
	var changed *Publisher
	var previous *Publisher
	switch {
	case loudest == nil || loudest == s.dominant:
		s.leader = nil
	case s.dominant == nil:
		// Nobody holds the floor: the first voice takes it at once.
		previous, s.dominant, changed = nil, loudest, loudest
		s.leader = nil
	case s.leader != loudest:
		s.leader, s.since = loudest, now
	case now.Sub(s.since) >= s.cfg.Hold:
		previous, s.dominant, changed = s.dominant, loudest, loudest
		s.leader = nil
	}
	s.mu.Unlock()
	if changed != nil {
		if previous != nil {
			previous.SetActiveSpeaker(false)
		}
		changed.SetActiveSpeaker(true)
		if s.onChange != nil {
			s.onChange(changed.participant)
		}
	}
}

// Dominant returns the current dominant speaker's participant id, or "".
func (s *SpeakerDetector) Dominant() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dominant == nil {
		return ""
	}
	return s.dominant.participant
}
