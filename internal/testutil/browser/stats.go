package browser

import "fmt"

// StatsJS is a JavaScript expression that resolves to a summary of the
// inbound-rtp statistics of every peer connection in window.__pcs (which the
// page instrumentation fills): one object per inbound RTP stream, with the
// fields of [Inbound]. Closed peer connections are left out.
const StatsJS = `(async () => {
  const out = [];
  const pcs = window.__pcs || [];
  for (let i = 0; i < pcs.length; i++) {
    const pc = pcs[i];
    if (pc.signalingState === 'closed') continue;
    let report;
    try { report = await pc.getStats(); } catch (e) { continue; }
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out.push({
        pc: i,
        kind: s.kind || '',
        ssrc: s.ssrc || 0,
        trackIdentifier: s.trackIdentifier || '',
        mid: s.mid || '',
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        packetsReceived: s.packetsReceived || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0,
        bytesReceived: s.bytesReceived || 0,
      });
    });
  }
  return out;
})()`

// Inbound summarises one inbound RTP stream of a page, as [StatsJS] reports
// it. Video-only fields are zero for audio and the reverse.
type Inbound struct {
	PC               int     `json:"pc"` // index in window.__pcs
	Kind             string  `json:"kind"`
	SSRC             uint32  `json:"ssrc"`
	TrackIdentifier  string  `json:"trackIdentifier"`
	Mid              string  `json:"mid"`
	FramesDecoded    int64   `json:"framesDecoded"`
	FrameWidth       int     `json:"frameWidth"`
	FrameHeight      int     `json:"frameHeight"`
	PacketsReceived  int64   `json:"packetsReceived"`
	TotalAudioEnergy float64 `json:"totalAudioEnergy"`
	BytesReceived    int64   `json:"bytesReceived"`
}

// String formats the stream for test logs.
func (in Inbound) String() string {
	if in.Kind == "audio" {
		return fmt.Sprintf("pc%d audio mid=%s track=%s packets=%d bytes=%d energy=%.3g",
			in.PC, in.Mid, in.TrackIdentifier, in.PacketsReceived, in.BytesReceived, in.TotalAudioEnergy)
	}
	return fmt.Sprintf("pc%d %s mid=%s track=%s packets=%d bytes=%d decoded=%d %dx%d",
		in.PC, in.Kind, in.Mid, in.TrackIdentifier, in.PacketsReceived, in.BytesReceived,
		in.FramesDecoded, in.FrameWidth, in.FrameHeight)
}

// InboundStats evaluates [StatsJS] in the page.
func (p *Page) InboundStats() ([]Inbound, error) {
	var out []Inbound
	if err := p.Eval(StatsJS, &out); err != nil {
		return nil, fmt.Errorf("inbound stats: %w", err)
	}
	return out, nil
}
