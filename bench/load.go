package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Sample is the outcome of one batch of requests at one concurrency.
type Sample struct {
	Requests    int
	Errors      int    // answers other than the one expected (200, or Pare's refusal) and transport errors
	FirstError  string // one of them, for the report
	Elapsed     time.Duration
	Latencies   []time.Duration // sorted, successful requests only
	VendorBytes int64           // body bytes the stub received, summed
}

// merge adds o, a batch of the same cell, to s: requests, errors and busy
// time add up, latencies are pooled (unsorted: the caller sorts once, after
// the last batch).
func (s *Sample) merge(o *Sample) {
	s.Requests += o.Requests
	s.Errors += o.Errors
	if s.FirstError == "" {
		s.FirstError = o.FirstError
	}
	s.Elapsed += o.Elapsed
	s.Latencies = append(s.Latencies, o.Latencies...)
	s.VendorBytes += o.VendorBytes
}

// RPS is requests per second over the batch.
func (s *Sample) RPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Elapsed.Seconds()
}

// Quantile returns the q-quantile latency (nearest rank).
func (s *Sample) Quantile(q float64) time.Duration {
	n := len(s.Latencies)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(float64(n)*q-1e-9)) - 1
	i = min(max(i, 0), n-1)
	return s.Latencies[i]
}

// client sends the workload one of four ways: to the vendor stub directly
// over TLS (proxy == ""); through a proxy in plain HTTP, absolute-form, as
// an app with HTTP_PROXY set does; through a proxy's CONNECT tunnel with
// https:// URLs, as an app with HTTPS_PROXY set does (tunnel: TLS inside the
// tunnel, verified against roots); or as Envoy with Pare's ext_proc filter
// (ext: see extprocClient).
type client struct {
	hc     *http.Client
	proxy  string
	tunnel bool
	ext    *extprocClient
}

// clientMode says how a client reaches its target.
type clientMode int

const (
	viaPlain   clientMode = iota // HTTP_PROXY (or the stub directly when there is no proxy)
	viaTunnel                    // HTTPS_PROXY: CONNECT, TLS inside
	viaExtproc                   // Envoy's side of ext_proc, then the vendor
)

func newClient(proxy, stub string, roots *x509.CertPool, conc int) *client {
	return newClientVia(viaPlain, proxy, stub, roots, conc)
}

// newClientVia builds a client of mode. roots verify the vendor's
// certificate (direct and ext_proc) or the one inside the tunnel (Pare's CA
// when it intercepts, the stub's through a blind tunnel).
func newClientVia(mode clientMode, proxy, stub string, roots *x509.CertPool, conc int) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 4 * conc
	tr.MaxIdleConnsPerHost = conc
	tr.DisableCompression = true
	// HTTP/1.1 both ways, one keep-alive connection per worker: the direct
	// client differs from the proxied ones only by the hop (and TLS).
	// Through a tunnel the same: one tunnel per worker, kept, carrying
	// request after request.
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	switch {
	case mode == viaExtproc:
		return &client{ext: newExtprocClient(proxy, stub, roots, conc)}
	case proxy != "":
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})
	default:
		tr.Proxy = nil
		d := &net.Dialer{Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, stub)
		}
	}
	return &client{hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, proxy: proxy, tunnel: mode == viaTunnel}
}

func (c *client) close() {
	if c.ext != nil {
		c.ext.close()
		return
	}
	c.hc.CloseIdleConnections()
}

func (c *client) url(r *request) string {
	if c.proxy != "" && !c.tunnel {
		return "http://" + r.Host + r.Path
	}
	return "https://" + r.Host + r.Path
}

// do sends one request and reads the whole response.
func (c *client) do(ctx context.Context, r *request) (status int, vendorBytes int64, msg string, err error) {
	if c.ext != nil {
		return c.ext.do(ctx, r)
	}
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, c.url(r), body)
	if err != nil {
		return 0, 0, "", err
	}
	for _, h := range r.appHeaders() {
		req.Header.Set(h[0], h[1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		msg = r.Method + " " + r.Host + r.Path + ": " + string(b)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, 0, msg, err
	}
	vb, _ := strconv.ParseInt(resp.Header.Get(ReceivedHeader), 10, 64)
	return resp.StatusCode, vb, msg, nil
}

// appHeaders are the headers the app sends with r, besides the framing
// (content-length) its HTTP client adds.
func (r *request) appHeaders() [][2]string {
	h := make([][2]string, 0, 6)
	if r.ContentType != "" {
		h = append(h, [2]string{"Content-Type", r.ContentType})
	}
	h = append(h, [2]string{"Accept", "application/json"}, [2]string{"Authorization", "Bearer bench-token"},
		[2]string{"X-Data-Purpose", r.Purpose}, [2]string{"X-Data-Subject", r.Subject})
	if r.GPC {
		h = append(h, [2]string{"X-Data-GPC", "1"})
	}
	return h
}

// sequence says which requests of a workload a client sends: the mix
// realistic or identical (see Mix), from which index, and whether the
// target enforces a policy (Pare: its answers are the requests' Expect;
// anything else answers 200).
type sequence struct {
	realistic, enforcing bool
	start                int
}

// run sends n requests with conc workers, each worker one request at a time
// over keep-alive connections.
func (c *client) run(ctx context.Context, w *Workload, conc, n int) *Sample {
	return c.runSeq(ctx, w, sequence{}, conc, n, time.Time{})
}

// runSeq sends n requests of w's seq with conc workers; a request counts as
// successful when it gets the answer it should.
func (c *client) runSeq(ctx context.Context, w *Workload, seq sequence, conc, n int, until time.Time) *Sample {
	s := &Sample{}
	var sent atomic.Int64
	var (
		next   atomic.Int64
		mu     sync.Mutex
		wg     sync.WaitGroup
		vbytes atomic.Int64
	)
	lats := make([][]time.Duration, conc)
	start := time.Now()
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				if !until.IsZero() && time.Now().After(until) {
					return
				}
				r := w.request(seq.start+int(k-1), seq.realistic)
				want := http.StatusOK
				if seq.enforcing {
					want = r.Expect
				}
				sent.Add(1)
				t0 := time.Now()
				status, vb, msg, err := c.do(ctx, r)
				d := time.Since(t0)
				if err == nil && status == want {
					lats[i] = append(lats[i], d)
					vbytes.Add(vb)
					continue
				}
				mu.Lock()
				s.Errors++
				if s.FirstError == "" {
					if err != nil {
						s.FirstError = err.Error()
					} else {
						s.FirstError = fmt.Sprintf("HTTP %d, want %d: %s", status, want, msg)
					}
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	s.Elapsed = time.Since(start)
	s.Requests = int(sent.Load())
	for _, l := range lats {
		s.Latencies = append(s.Latencies, l...)
	}
	slices.Sort(s.Latencies)
	s.VendorBytes = vbytes.Load()
	return s
}
