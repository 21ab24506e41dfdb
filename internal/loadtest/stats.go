package loadtest

import (
	"sync/atomic"
	"time"

	"conclave/internal/client"
	"conclave/internal/metrics"
)

// histogram counts durations in buckets: 10 µs wide below 10 ms, 1 ms
// wide below 1 s, 100 ms wide below 60 s, and one bucket above. It is
// safe for concurrent use and allocates nothing.
type histogram struct {
	counts [histBuckets]atomic.Uint64
}

const (
	histFine    = 1000 // 0-10 ms by 10 µs
	histMedium  = 990  // 10 ms-1 s by 1 ms
	histCoarse  = 590  // 1-60 s by 100 ms
	histBuckets = histFine + histMedium + histCoarse + 1
)

func histBucket(d time.Duration) int {
	us := int64(d / time.Microsecond)
	switch {
	case us < 0:
		return 0
	case us < 10_000:
		return int(us / 10)
	case us < 1_000_000:
		return histFine + int((us-10_000)/1000)
	case us < 60_000_000:
		return histFine + histMedium + int((us-1_000_000)/100_000)
	}
	return histBuckets - 1
}

// histUpper is the upper bound of bucket i.
func histUpper(i int) time.Duration {
	switch {
	case i < histFine:
		return time.Duration(i+1) * 10 * time.Microsecond
	case i < histFine+histMedium:
		return 10*time.Millisecond + time.Duration(i-histFine+1)*time.Millisecond
	case i < histBuckets-1:
		return time.Second + time.Duration(i-histFine-histMedium+1)*100*time.Millisecond
	}
	return time.Minute
}

func (h *histogram) record(d time.Duration) { h.counts[histBucket(d)].Add(1) }

// snapshot copies the counts.
func (h *histogram) snapshot() []uint64 {
	out := make([]uint64, histBuckets)
	for i := range h.counts {
		out[i] = h.counts[i].Load()
	}
	return out
}

// Quantiles summarises durations, in milliseconds.
type Quantiles struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// quantiles summarises the counts recorded between two snapshots; each
// figure is the upper bound of its bucket.
func quantiles(before, after []uint64) Quantiles {
	diff := make([]uint64, len(after))
	for i := range after {
		diff[i] = after[i] - before[i]
	}
	return bucketQuantiles(diff, func(i int) float64 { return ms(histUpper(i)) })
}

// bucketQuantiles summarises counts by bucket; upper gives a bucket's
// upper bound in milliseconds, which stands for all its counts.
func bucketQuantiles(counts []uint64, upper func(i int) float64) Quantiles {
	var q Quantiles
	for _, c := range counts {
		q.Count += c
	}
	if q.Count == 0 {
		return q
	}
	at := func(p float64) float64 {
		rank := uint64(p*float64(q.Count-1)) + 1
		var seen uint64
		for i, c := range counts {
			seen += c
			if seen >= rank {
				return upper(i)
			}
		}
		return upper(len(counts) - 1)
	}
	q.P50, q.P90, q.P99, q.Max = at(0.50), at(0.90), at(0.99), at(1)
	return q
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// receiveCounts are what one participant's sinks counted.
type receiveCounts struct {
	frames    atomic.Uint64 // stamped frames received (decrypted)
	lost      atomic.Uint64 // frames missing between two of the same layer
	unstamped atomic.Uint64 // decrypted frames without a valid stamp
	tracks    atomic.Int64  // remote tracks that delivered a stamped frame
}

// trackSink is the FrameSink of one remote track: it reads each frame's
// stamp, records the delay and counts frames missing from the sequence.
type trackSink struct {
	counts *receiveCounts
	delays *histogram

	started bool
	layer   uint8
	seq     uint32
}

// maxGap bounds the frames one gap may count as lost: more is a restart
// (a new publisher session), not loss.
const maxGap = 1000

// WriteFrame implements client.FrameSink.
func (k *trackSink) WriteFrame(f client.RemoteFrame) error {
	_, st, err := ParseStamp(f.Data)
	if err != nil {
		k.counts.unstamped.Add(1)
		return nil
	}
	k.delays.record(time.Since(time.Unix(0, st.Sent))) // a measurement: the real clock

	if !k.started {
		k.counts.tracks.Add(1)
	} else if st.Layer == k.layer {
		// Frames of one layer are numbered one by one; a switch to
		// another layer starts a new run.
		if gap := int64(st.Seq) - int64(k.seq) - 1; gap > 0 && gap < maxGap {
			k.counts.lost.Add(uint64(gap))
		} else if gap < 0 {
			return nil // late or repeated: not counted again
		}
	}
	k.started, k.layer, k.seq = true, st.Layer, st.Seq
	k.counts.frames.Add(1)
	return nil
}

// Close implements client.FrameSink.
func (k *trackSink) Close() error { return nil }

// rtpCounts sums a session's per-track counters.
type rtpCounts struct {
	packets, bytes, expected, frames, undecryptable uint64
}

func sumStats(stats []client.TrackStats) rtpCounts {
	var c rtpCounts
	for _, st := range stats {
		c.packets += st.Packets
		c.bytes += st.PacketBytes
		c.expected += st.PacketsExpected
		c.frames += st.Frames
		c.undecryptable += st.TransformErrors
	}
	return c
}

func (c rtpCounts) sub(d rtpCounts) rtpCounts {
	return rtpCounts{packets: c.packets - d.packets, bytes: c.bytes - d.bytes, expected: c.expected - d.expected,
		frames: c.frames - d.frames, undecryptable: c.undecryptable - d.undecryptable}
}

// delayOverflow stands for the server delays beyond the last bucket.
const delayOverflow = 10 * time.Second

// delayQuantiles summarises the server delay histogram between two
// readings; each figure is the upper bound of its bucket.
func delayQuantiles(before, after metrics.DelayHistogram) Quantiles {
	if len(before.Counts) != len(after.Counts) {
		before.Counts = make([]uint64, len(after.Counts))
	}
	diff := make([]uint64, len(after.Counts))
	for i := range after.Counts {
		if after.Counts[i] >= before.Counts[i] {
			diff[i] = after.Counts[i] - before.Counts[i]
		}
	}
	return bucketQuantiles(diff, func(i int) float64 {
		if i < len(metrics.DelayBuckets) {
			return metrics.DelayBuckets[i] * 1000
		}
		return ms(delayOverflow)
	})
}
