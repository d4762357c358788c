package proxy

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Body memory. A request's body is held twice at most — as the app sent it
// and as it leaves — so its cost is known before a byte is read: twice its
// Content-Length (twice the body limit when the length is not declared).
// The budget bounds the bytes all requests may hold at once; a request that
// does not fit waits for one that does. This is what keeps many concurrent
// large bodies from taking the sidecar's memory: they queue instead.
type budget struct {
	sem   *semaphore.Weighted
	total int64
}

func newBudget(total int64) *budget {
	return &budget{sem: semaphore.NewWeighted(total), total: total}
}

// acquire charges n bytes (capped at the whole budget, so one maximal body
// can always pass) and returns the function that gives them back.
func (b *budget) acquire(ctx context.Context, n int64) (func(), error) {
	if n <= 0 {
		return func() {}, nil
	}
	if n > b.total {
		n = b.total
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { b.sem.Release(n) }) }, nil
}

// Buffers are pooled: allocating a fresh 10 MiB slice per request, and
// growing it by doubling, was a tenth of Pare's CPU on large bodies.
var bodyBufs sync.Pool

const maxPooled = 16 << 20

func getBuf(n int) *[]byte {
	if v, ok := bodyBufs.Get().(*[]byte); ok && cap(*v) >= n {
		*v = (*v)[:0]
		return v
	}
	b := make([]byte, 0, n)
	return &b
}

func putBuf(b *[]byte) {
	if b != nil && cap(*b) <= maxPooled {
		bodyBufs.Put(b)
	}
}

// heldBufs are a request's pooled buffers. The handler and, when a body is
// sent, the transport each hold a reference: the transport may close a
// request body after RoundTrip returns, so the buffers go back to the pool
// only when both are done with them.
type heldBufs struct {
	refs atomic.Int32
	bufs []*[]byte
}

func (h *heldBufs) add(b *[]byte) { h.bufs = append(h.bufs, b) }

func (h *heldBufs) release() {
	if h.refs.Add(-1) == 0 {
		for _, b := range h.bufs {
			putBuf(b)
		}
		h.bufs = nil
	}
}

// releasingBody is a request body that releases its buffers' reference on
// Close.
type releasingBody struct {
	io.Reader
	once sync.Once
	held *heldBufs
}

func (r *releasingBody) Close() error {
	r.once.Do(r.held.release)
	return nil
}
