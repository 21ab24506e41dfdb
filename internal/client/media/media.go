// Package media holds the test clips that `conclave join --test-media`
// publishes: four seconds of VP8 test pattern (320x240, 15 frames/s, a key
// frame every second) and of a 440 Hz Opus tone. README.md says how they
// were made.
package media

import _ "embed"

// VideoIVF is the VP8 test clip in an IVF container.
//
//go:embed clip.ivf
var VideoIVF []byte

// AudioOgg is the Opus test clip in an Ogg container.
//
//go:embed clip.ogg
var AudioOgg []byte

// Size of the test clip's pictures.
const (
	VideoWidth  = 320
	VideoHeight = 240
)
