package client

import "sync"

// queue is an unbounded FIFO of functions that never blocks its producers,
// so that Pion callbacks and media goroutines can hand work to the
// session's loops without ever waiting on them.
type queue struct {
	mu     sync.Mutex
	items  []func()
	spare  []func()
	wake   chan struct{}
	closed bool
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

// post adds f; it reports false once the queue is closed.
func (q *queue) post(f func()) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// take returns the pending functions; ok is false when the queue is
// closed and empty.
func (q *queue) take() (fs []func(), ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fs, q.items, q.spare = q.items, q.spare[:0], nil
	return fs, !(q.closed && len(fs) == 0)
}

// recycle gives back a slice returned by take once its functions ran.
func (q *queue) recycle(fs []func()) {
	clear(fs)
	q.mu.Lock()
	if q.spare == nil {
		q.spare = fs[:0]
	}
	q.mu.Unlock()
}

// close stops accepting functions; those already posted still run.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// runAll runs posted functions until the queue is closed and drained.
func (q *queue) runAll() {
	for {
		fs, ok := q.take()
		if !ok {
			return
		}
		if len(fs) == 0 {
			<-q.wake
			continue
		}
		for _, f := range fs {
			f()
		}
		q.recycle(fs)
	}
}
