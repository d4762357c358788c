package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// MemoryCheck is issue 4's memory target: 64 concurrent 10 MiB bodies
// through Pare stay under 1 GiB of RSS.
type MemoryCheck struct {
	Conc, Requests, Errors int
	FirstError             string
	BodyBytes              int
	Elapsed                time.Duration
	StartRSSKB, PeakRSSKB  int64 // Pare's VmRSS when ready, VmHWM at the end
	LimitKB                int64
	Err                    string
}

// OK reports whether the target holds.
func (m *MemoryCheck) OK() bool {
	return m != nil && m.Err == "" && m.Errors == 0 && m.PeakRSSKB > 0 && m.PeakRSSKB < m.LimitKB
}

// memoryCheck sends 2×64 requests of a 10 MiB attendee array, 64 at a time,
// through a fresh Pare and reads its peak RSS.
func (r *runner) memoryCheck(ctx context.Context, payloads string) (*MemoryCheck, error) {
	ws, err := LoadWorkloads(payloads, []int{10 << 20})
	if err != nil {
		return nil, err
	}
	// By size, not position: the mix is appended after the attendee arrays.
	i := slices.IndexFunc(ws, func(w Workload) bool { return w.Nominal == 10<<20 })
	if i < 0 {
		return nil, errors.New("no 10 MiB attendee array")
	}
	w := &ws[i]
	in := &instanceProcs{}
	defer func() { r.ps.stop(in.all...) }()
	if err := r.startRow(ctx, RowPare, in); err != nil {
		return nil, err
	}
	pid := in.measured[0].pid()
	m := &MemoryCheck{Conc: 64, Requests: 128, BodyBytes: len(w.Body), LimitKB: 1 << 20}
	if m.StartRSSKB, err = statusKB(pid, "VmRSS"); err != nil {
		return nil, err
	}
	r.logf("memory check: %d × %s through Pare, %d at a time", m.Requests, SizeLabel(len(w.Body)), m.Conc)
	cl := newClient(in.target, in.stubAddr, r.roots, m.Conc)
	s := cl.run(ctx, w, m.Conc, m.Requests)
	cl.close()
	m.Errors, m.FirstError, m.Elapsed = s.Errors, s.FirstError, s.Elapsed
	if m.PeakRSSKB, err = statusKB(pid, "VmHWM"); err != nil {
		return nil, err
	}
	r.logf("memory check: peak RSS %.0f MiB (start %.0f MiB), %d errors", float64(m.PeakRSSKB)/1024, float64(m.StartRSSKB)/1024, m.Errors)
	return m, nil
}

// LimitCheck is issue 4's "a 413 never costs the whole body": requests whose
// body exceeds --max-body (10 MiB, Pare's default) sent to a fresh Pare.
type LimitCheck struct {
	MaxBody  int64
	Declared int64 // the Content-Length declared
	// Headers only: Content-Length above the limit and no body byte sent.
	HeadersStatus int
	HeadersTime   time.Duration
	// The same, with the body streamed as fast as the socket takes it: body
	// bytes written when the answer arrived (an upper bound of what Pare
	// read: the kernel's socket buffers hold some of it).
	StreamStatus int
	StreamTime   time.Duration
	StreamSent   int64
	// Chunked, no Content-Length: Pare must read up to the limit to know.
	ChunkedStatus int
	ChunkedTime   time.Duration
	ChunkedSent   int64
	Err           string
}

// OK reports whether every oversized request was refused with 413 before its
// body was sent: at once with a declared length, right after the limit when
// chunked.
func (l *LimitCheck) OK() bool {
	return l != nil && l.Err == "" &&
		l.HeadersStatus == http.StatusRequestEntityTooLarge && l.HeadersTime < time.Second &&
		l.StreamStatus == http.StatusRequestEntityTooLarge && l.StreamSent < l.MaxBody &&
		l.ChunkedStatus == http.StatusRequestEntityTooLarge && l.ChunkedSent < l.MaxBody+(16<<20)
}

func (r *runner) limitCheck(ctx context.Context) (*LimitCheck, error) {
	in := &instanceProcs{}
	defer func() { r.ps.stop(in.all...) }()
	if err := r.startRow(ctx, RowPare, in); err != nil {
		return nil, err
	}
	l := &LimitCheck{MaxBody: 10 << 20, Declared: 1 << 30}
	var err error
	if l.HeadersStatus, l.HeadersTime, _, err = oversized(ctx, in.target, l.Declared, false, false); err != nil {
		return nil, fmt.Errorf("headers only: %w", err)
	}
	if l.StreamStatus, l.StreamTime, l.StreamSent, err = oversized(ctx, in.target, l.Declared, false, true); err != nil {
		return nil, fmt.Errorf("streamed: %w", err)
	}
	if l.ChunkedStatus, l.ChunkedTime, l.ChunkedSent, err = oversized(ctx, in.target, l.Declared, true, true); err != nil {
		return nil, fmt.Errorf("chunked: %w", err)
	}
	r.logf("413 check: headers only %d in %s; streamed %d in %s after %s sent; chunked %d in %s after %s sent",
		l.HeadersStatus, l.HeadersTime.Round(time.Microsecond), l.StreamStatus, l.StreamTime.Round(time.Microsecond), SizeLabel(int(l.StreamSent)),
		l.ChunkedStatus, l.ChunkedTime.Round(time.Microsecond), SizeLabel(int(l.ChunkedSent)))
	return l, nil
}

// oversized sends a POST of up to declared body bytes to the proxy at addr
// and returns the status, the time to the response and how many body bytes
// had been written when it arrived.
func oversized(ctx context.Context, addr string, declared int64, chunked, stream bool) (int, time.Duration, int64, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	var h bytes.Buffer
	h.WriteString("POST http://api.stripe.com/v1/payment_intents HTTP/1.1\r\nHost: api.stripe.com\r\n" +
		"Content-Type: application/json\r\nX-Data-Purpose: payment\r\nX-Data-Subject: u-1\r\n")
	if chunked {
		h.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n", declared)
	}
	start := time.Now()
	if _, err := conn.Write(h.Bytes()); err != nil {
		return 0, 0, 0, err
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	if stream {
		go func() {
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			frame := chunk
			if chunked {
				frame = append(fmt.Appendf(nil, "%x\r\n", len(chunk)), chunk...)
				frame = append(frame, "\r\n"...)
			}
			for sent.Load() < declared {
				select {
				case <-stop:
					return
				default:
				}
				_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write(frame); err != nil {
					return
				}
				sent.Add(int64(len(chunk)))
			}
		}()
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	elapsed, n := time.Since(start), sent.Load()
	if err != nil {
		return 0, elapsed, n, fmt.Errorf("no answer after %s with %d body bytes sent: %w", elapsed.Round(time.Millisecond), n, err)
	}
	resp.Body.Close()
	return resp.StatusCode, elapsed, n, nil
}

// DecisionCheck measures issue 4's "decision cost independent of body size"
// per request: one Pare process is sent the smallest and the largest attendee
// array alternately, one at a time, and each request's decision time is read
// from Pare's histogram right after it (at concurrency 1 the change of
// _sum is that request's decision). The per-cell means of the main run
// compare separate processes under separate conditions: after a 10 MiB body
// has streamed through, caches are cold and the client is still pushing the
// next body into the socket while Pare decides. Alternating sizes in one
// process puts both sizes under the same conditions, so what remains is what
// the body's size itself costs the decision.
type DecisionCheck struct {
	Small, Large             string // payload names
	Pairs                    int
	SmallMedian, LargeMedian time.Duration
	Err                      string
}

// Ratio is the large body's median decision time over the small one's.
func (d *DecisionCheck) Ratio() float64 {
	if d == nil || d.SmallMedian <= 0 {
		return 0
	}
	return float64(d.LargeMedian) / float64(d.SmallMedian)
}

func (r *runner) decisionCheck(ctx context.Context, payloads string) (*DecisionCheck, error) {
	ws, err := LoadWorkloads(payloads, []int{1 << 10, 10 << 20})
	if err != nil {
		return nil, err
	}
	var small, large *Workload
	for i := range ws {
		switch ws[i].Nominal {
		case 1 << 10:
			small = &ws[i]
		case 10 << 20:
			large = &ws[i]
		}
	}
	if small == nil || large == nil {
		return nil, errors.New("no 1 KiB and 10 MiB attendee arrays")
	}
	in := &instanceProcs{}
	defer func() { r.ps.stop(in.all...) }()
	if err := r.startRow(ctx, RowPare, in); err != nil {
		return nil, err
	}
	d := &DecisionCheck{Small: small.Name, Large: large.Name, Pairs: 30}
	r.logf("decision check: %d pairs of %s and %s, alternating, through one Pare", d.Pairs, small.Name, large.Name)
	cl := newClient(in.target, in.stubAddr, r.roots, 1)
	defer cl.close()
	one := func(w *Workload) (time.Duration, error) {
		d0 := readPareStats(ctx, in.admin)
		if s := cl.run(ctx, w, 1, 1); s.Errors > 0 {
			return 0, fmt.Errorf("%s: %s", w.Name, s.FirstError)
		}
		d1 := readPareStats(ctx, in.admin)
		if d1.count-d0.count != 1 {
			return 0, fmt.Errorf("%s: %v decisions counted for one request", w.Name, d1.count-d0.count)
		}
		return time.Duration((d1.sum - d0.sum) * float64(time.Second)), nil
	}
	for range 3 { // warm-up: connections, decision cache, pooled buffers
		for _, w := range []*Workload{small, large} {
			if _, err := one(w); err != nil {
				return nil, err
			}
		}
	}
	var smalls, larges []time.Duration
	for i := range d.Pairs {
		order := []*Workload{small, large}
		if i%2 == 1 {
			order[0], order[1] = large, small
		}
		for _, w := range order {
			t, err := one(w)
			if err != nil {
				return nil, err
			}
			if w == small {
				smalls = append(smalls, t)
			} else {
				larges = append(larges, t)
			}
		}
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return (&Sample{Latencies: ds}).Quantile(0.5)
	}
	d.SmallMedian, d.LargeMedian = median(smalls), median(larges)
	return d, nil
}
