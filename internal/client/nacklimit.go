package client

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// A browser sends retransmissions within its bandwidth estimate
// (libwebrtc's retransmission rate limiter). Pion's NACK responder resends
// whatever is asked, so that a server that asks again and again for
// packets it cannot take (its socket full) gets ever more of them. The
// client keeps retransmissions of one publish connection under
// retransmitRate packets per second (about 3 Mbit/s: a simulcast camera's
// three layers and a microphone), in bursts of retransmitBurst: NACKed
// sequence numbers beyond that are not answered.
const (
	retransmitRate  = 300
	retransmitBurst = 150
)

// nackLimit trims the NACKs the NACK responder sees to the budget. It
// must read RTCP before the responder (register it first): it edits the
// parsed packets the interceptor attributes hold, which the responder
// reads.
type nackLimit struct {
	interceptor.NoOp

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

type nackLimitFactory struct{}

func (nackLimitFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackLimit{tokens: retransmitBurst}, nil
}

// BindRTCPReader implements interceptor.Interceptor.
func (l *nackLimit) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, err := attr.GetRTCPPackets(b[:n])
		if err != nil {
			return n, attr, nil // the responder will see the same error
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				nack.Nacks = l.trim(nack.Nacks, time.Now())
			}
		}
		return n, attr, nil
	})
}

// trim keeps the requests the budget allows now.
func (l *nackLimit) trim(pairs []rtcp.NackPair, now time.Time) []rtcp.NackPair {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(retransmitBurst, l.tokens+now.Sub(l.last).Seconds()*retransmitRate)
	}
	l.last = now
	var seqs []uint16
	for _, p := range pairs {
		p.Range(func(seq uint16) bool {
			if l.tokens < 1 {
				return false
			}
			l.tokens--
			seqs = append(seqs, seq)
			return true
		})
	}
	if len(seqs) == 0 {
		return nil
	}
	return rtcp.NackPairsFromSequenceNumbers(seqs)
}
