package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/engine"
)

// Body memory. The budget bounds the body bytes all requests hold at once.
// A request is charged as its body arrives — for the buffer it reads into,
// grown by doubling, and then for the buffer the filtered body is written to
// — never for what it merely declares: a client that announces 10 MiB and
// sends one byte holds 64 KiB, not 20 MiB, so a few such clients cannot
// starve everyone else. A request that cannot get memory waits for
// Config.BodyWait and is then refused with 503 overloaded, which gives back
// what it held: large bodies that all stall half-read cannot block each
// other forever. Slow senders are the front end's business (a minimum read
// rate, see package proxy); their share is freed when it cuts them off.
type budget struct {
	sem   *semaphore.Weighted
	total int64
}

func newBudget(total int64) *budget {
	return &budget{sem: semaphore.NewWeighted(total), total: total}
}

// charge is one request's share of the budget; it only grows, and is given
// back whole by release.
type charge struct {
	b    *budget
	n    atomic.Int64
	once sync.Once
}

// grow charges n more bytes, waiting at most wait. A request's total is
// capped at the whole budget, so one maximal body can always pass.
func (c *charge) grow(ctx context.Context, n int64, wait func(context.Context) (context.Context, context.CancelFunc)) error {
	if room := c.b.total - c.n.Load(); n > room {
		n = room
	}
	if n <= 0 {
		return nil
	}
	if !c.b.sem.TryAcquire(n) {
		wctx, cancel := wait(ctx)
		err := c.b.sem.Acquire(wctx, n)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return &engine.Error{Code: engine.CodeBadRequest, Reason: "the request ended while waiting for body memory", Err: err}
			}
			return &engine.Error{Code: engine.CodeOverloaded, Reason: "the sidecar's body memory is in use by other requests; retry", Err: err}
		}
	}
	c.n.Add(n)
	return nil
}

func (c *charge) release() {
	c.once.Do(func() {
		if n := c.n.Load(); n > 0 {
			c.b.sem.Release(n)
		}
	})
}

// HoldHeaders charges n bytes of a request's decoded headers to the body
// memory for as long as the request lasts, without waiting: ok is false
// when the memory is in use, and the front end refuses the request as
// overloaded. HTTP/2's header compression makes a few bytes on the wire a
// large decoded header list, and a stalled stream holds it; the front end
// that serves HTTP/2 (drop-in mode) bounds each connection's share, and
// this bounds all of them together, with the bodies, by
// --max-body-memory.
func (p *Pipeline) HoldHeaders(n int64) (release func(), ok bool) {
	n = min(n, p.budget.total)
	if n <= 0 {
		return func() {}, true
	}
	if !p.budget.sem.TryAcquire(n) {
		return nil, false
	}
	var once sync.Once
	return func() { once.Do(func() { p.budget.sem.Release(n) }) }, true
}

// chargeOf returns the exchange's charge, creating it on first use.
func (x *Exchange) chargeOf() *charge {
	if x.charged == nil {
		x.charged = &charge{b: x.p.budget}
		x.release = x.charged.release
	}
	return x.charged
}

func (x *Exchange) waitCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, x.p.cfg.BodyWait)
}

// bodyCost is what a body read into a buffer of n bytes is charged: the
// buffer, and the one its filtered form is written to (filteredCap). Both
// are charged while reading, so a request never waits for memory while it
// holds a body it has finished reading.
func bodyCost(n int64) int64 { return n + filteredCap(n) }

// filteredCap is the buffer the filtered form of an n-byte body is written
// to: transforms and re-encoding can make it a little longer.
func filteredCap(n int64) int64 { return n + n/8 + 512 }

// minimizeCharged runs minimize with the filtered body in memory charged to
// the budget. The buffer charged with the body as it was read
// (filteredCap) holds the filtered form of almost every body; transforms
// can make a body grow, though (hmac writes 64 characters for a value of
// one: a container of small values comes out 33 times its size), so a
// filter that outgrows its buffer fails, and is run again in a buffer four
// times larger, charged first, up to what a body of --max-body may be
// charged for its filtered form. A body whose filtered form is larger than
// that is refused 413 body_too_large: what leaves is bounded as what
// arrives is, and no request ever holds more than bodyCost(MaxBody), nor
// more than the whole body memory.
// Rerunning costs a few linear passes, only for such bodies.
func (x *Exchange) minimizeCharged(ctx context.Context, d *engine.Decision) (*minimized, error) {
	n := int64(len(x.body))
	if n == 0 || d.Body != engine.BodyFilter {
		return minimize(nil, d, x.req.Header, x.req.RawQuery, x.body, 0)
	}
	limit := filteredCap(n)
	hard := max(limit, filteredCap(x.p.cfg.MaxBody))
	bound := fmt.Sprintf("what a body of the limit (%d bytes) may become", x.p.cfg.MaxBody)
	for {
		b := getBuf(int(limit))
		m, err := minimize(*b, d, x.req.Header, x.req.RawQuery, x.body, limit)
		if err == nil {
			x.held.add(b)
			return m, nil
		}
		putBuf(b)
		if !errors.Is(err, filters.ErrOutputTooLarge) {
			return nil, err
		}
		// A request never holds more than the whole budget: with a
		// --max-body-memory below what a body of --max-body may cost,
		// the filtered body is bounded by what the budget leaves.
		if room := x.p.budget.total - x.chargeOf().n.Load(); limit+room < hard {
			hard = max(limit, limit+room)
			bound = fmt.Sprintf("what the body memory (%d bytes) leaves for it", x.p.budget.total)
		}
		if limit >= hard {
			// Err is the filter's sentinel, not err: err is the engine's
			// refusal for the smaller bound, whose reason this replaces.
			return nil, &engine.Error{Code: engine.CodeBodyTooLarge, Err: filters.ErrOutputTooLarge, Reason: fmt.Sprintf(
				"the body filtered for %s would be larger than %d bytes, %s: the contract's transforms (64 characters for each hmac value) make it grow",
				d.Vendor, hard, bound)}
		}
		next := min(limit*4, hard)
		if err := x.chargeOf().grow(ctx, next-limit, x.waitCtx); err != nil {
			return nil, err
		}
		x.p.m.bodyRegrown.Inc()
		limit = next
	}
}

// firstRead is the buffer a body of unknown or large length starts in.
const firstRead = 64 << 10

// readBody reads the whole request body, at most MaxBody bytes, into a
// pooled buffer charged to the budget as it grows. A declared length above
// the limit is refused before a byte is read.
func (x *Exchange) readBody(ctx context.Context) error {
	x.bodyRead = true
	r := x.req
	max := x.p.cfg.MaxBody
	if r.ContentLength > max {
		return &engine.Error{Code: engine.CodeBodyTooLarge, Reason: fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, max)}
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	size := int64(firstRead)
	if r.ContentLength > 0 && r.ContentLength < size {
		size = r.ContentLength + 1 // +1: the read that sees EOF needs room
	}
	c := x.chargeOf()
	if err := c.grow(ctx, bodyCost(size), x.waitCtx); err != nil {
		return err
	}
	bp := getBuf(int(size))
	buf := *bp
	for {
		if len(buf) == cap(buf) {
			// Double, within the limit (+1 to see a body that exceeds it).
			next := min(int64(cap(buf))*2, max+1)
			if r.ContentLength+1 > next {
				// A declared length, and the first buffer full: the
				// client is sending, so the body's whole cost is charged
				// in one step. Growing by doubling made every large
				// upload wait several times while holding what it had:
				// 64 concurrent 10 MiB uploads each held a share of the
				// budget, all waited for more, and none finished until
				// --body-wait refused them 503 (the bench's memory
				// check); each also left a trail of smaller buffers for
				// the GC. Now a waiting upload holds one first buffer's
				// cost, the semaphore's queue is first come, first
				// served, and whoever it serves can finish. Bodies of
				// unknown length (chunked) still grow by doubling.
				next = r.ContentLength + 1
			}
			if next <= int64(cap(buf)) {
				next = int64(cap(buf)) + 1
			}
			if err := c.grow(ctx, bodyCost(next)-bodyCost(int64(cap(buf))), x.waitCtx); err != nil {
				putBuf(bp)
				return err
			}
			nb := getBuf(int(next))
			buf = append((*nb)[:0], buf...)
			putBuf(bp) // nothing else refers to the smaller buffer
			bp = nb
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		*bp = buf
		if int64(len(buf)) > max {
			putBuf(bp)
			return &engine.Error{Code: engine.CodeBodyTooLarge, Reason: fmt.Sprintf("the body is larger than the limit of %d bytes", max)}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			putBuf(bp)
			return bodyReadError(err)
		}
	}
	x.held.add(bp)
	x.body = buf
	return nil
}

// bodyReadError classifies a failed body read: the front end's read deadline
// (a sender slower than the minimum rate) is 408 body_timeout.
func bodyReadError(err error) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &engine.Error{Code: engine.CodeBodyTimeout, Reason: "the request body did not arrive in time (the sender is slower than the minimum rate)", Err: err}
	}
	var ee *engine.Error
	if errors.As(err, &ee) {
		return ee
	}
	return &engine.Error{Code: engine.CodeBadRequest, Reason: "the request body could not be read", Err: err}
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

// heldBufs are a request's pooled buffers. The exchange and, when a body is
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
