// Package clips holds the pre-encoded camera of `conclave loadtest`: one
// VP8 clip per simulcast layer, the same 4 seconds of ffmpeg's testsrc2
// pattern at 30 frames/s with a key frame every 2 seconds, so that the
// layers stay in step when played together. README.md says how they were
// made; generate.sh makes them again.
package clips

import (
	"bytes"
	_ "embed"

	"conclave/internal/client"
)

//go:generate sh generate.sh

// The clips, lowest layer first, in IVF containers.
var (
	//go:embed q.ivf
	Q []byte
	//go:embed h.ivf
	H []byte
	//go:embed f.ivf
	F []byte
)

// Layer describes one clip.
type Layer struct {
	RID           string
	Width, Height int
	Bitrate       int // target of the encoder, bits per second
	IVF           []byte
}

// Layers are the three clips, lowest first, with the RIDs the browser
// gives its simulcast encodings.
var Layers = []Layer{
	{RID: "q", Width: 320, Height: 180, Bitrate: 150_000, IVF: Q},
	{RID: "h", Width: 640, Height: 360, Bitrate: 500_000, IVF: H},
	{RID: "f", Width: 1280, Height: 720, Bitrate: 1_700_000, IVF: F},
}

// Sources returns a fresh looping source per layer, lowest first, for
// client.Options.CameraLayers.
func Sources() []client.FrameSource {
	out := make([]client.FrameSource, len(Layers))
	for i, l := range Layers {
		s, err := client.NewIVFSource(bytes.NewReader(l.IVF))
		if err != nil {
			panic("clips: embedded layer " + l.RID + ": " + err.Error())
		}
		out[i] = s
	}
	return out
}
