package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// TunnelCheck is issue 13's cost of a tunnel's first request: what an app
// with HTTPS_PROXY pays when it opens a connection (CONNECT, Pare's TLS
// handshake with a certificate minted for the host on first use) against
// a request on a connection it keeps, next to the same through a blind
// tunnel (row 7). One request at a time, so each latency is that request's.
type TunnelCheck struct {
	// Minted: the first request of the first tunnel to a host in a fresh
	// Pare (the leaf is minted), after a plain request of the same shape
	// warmed the decision and the connection to the vendor: what is left
	// over a new tunnel with a cached leaf is the mint.
	Minted    []time.Duration
	Processes int
	// MintMean and Mints are Pare's own pare_tunnel_certificate_mint_duration_seconds.
	MintMean time.Duration
	Mints    int
	// New tunnel per request (the leaf cached) and requests on a kept
	// tunnel; Pare (row 8) and the bare tunnel (row 7), rounds taking turns.
	Cases []*TunnelCase
	Err   string
}

// TunnelCase is one way of sending the check's requests.
type TunnelCase struct {
	Row        int
	NewTunnel  bool
	Sample     *Sample
	CPUSeconds float64 // of the row's measured process over the case's requests
}

// Case returns the case of row and newTunnel, or nil.
func (t *TunnelCheck) Case(row int, newTunnel bool) *TunnelCase {
	for _, c := range t.Cases {
		if c.Row == row && c.NewTunnel == newTunnel {
			return c
		}
	}
	return nil
}

// tunnelHosts are the payloads whose hosts the mint samples open a first
// tunnel to (each a contract host with its own leaf).
var tunnelHosts = []string{"checkout.json", "ticket.json", "attendees 1 KiB"}

func (r *runner) tunnelCheck(ctx context.Context, payloads string) (*TunnelCheck, error) {
	ws, err := LoadWorkloads(payloads, []int{1 << 10})
	if err != nil {
		return nil, err
	}
	byName := func(name string) *Workload {
		for i := range ws {
			if ws[i].Name == name {
				return &ws[i]
			}
		}
		return nil
	}
	t := &TunnelCheck{Processes: 3}
	n := 400
	if r.cfg.Quick {
		t.Processes, n = 1, 20
	}
	var last *instanceProcs
	defer func() {
		if last != nil {
			r.ps.stop(last.all...)
		}
	}()
	var mintSum, mintCount float64
	for range t.Processes {
		if last != nil {
			r.ps.stop(last.all...)
		}
		in := &instanceProcs{}
		last = in
		if err := r.startRow(ctx, RowDropIn, in); err != nil {
			return nil, err
		}
		plain := newClient(in.target, in.stubAddr, r.roots, 1)
		for _, name := range tunnelHosts {
			w := byName(name)
			if w == nil {
				return nil, fmt.Errorf("no payload %s", name)
			}
			if s := plain.run(ctx, w, 1, 3); s.Errors > 0 {
				plain.close()
				return nil, fmt.Errorf("warm-up %s: %s", name, s.FirstError)
			}
			tun := newClientVia(viaTunnel, in.target, in.stubAddr, in.roots, 1)
			s := tun.run(ctx, w, 1, 1)
			tun.close()
			if s.Errors > 0 {
				plain.close()
				return nil, fmt.Errorf("first tunnel to %s: %s", w.Host, s.FirstError)
			}
			t.Minted = append(t.Minted, s.Latencies[0])
		}
		plain.close()
		sum, count := readMetric(ctx, in.admin, "pare_tunnel_certificate_mint_duration_seconds_sum"),
			readMetric(ctx, in.admin, "pare_tunnel_certificate_mint_duration_seconds_count")
		mintSum, mintCount = mintSum+sum, mintCount+count
	}
	if mintCount > 0 {
		t.Mints = int(mintCount)
		t.MintMean = time.Duration(mintSum / mintCount * float64(time.Second))
	}
	slices.Sort(t.Minted)

	bare := &instanceProcs{}
	defer func() { r.ps.stop(bare.all...) }()
	if err := r.startRow(ctx, RowTunnel, bare); err != nil {
		return nil, err
	}
	w := byName("checkout.json")
	type runCase struct {
		c  *TunnelCase
		in *instanceProcs
		cl *client
	}
	var cases []*runCase
	for _, in := range []*instanceProcs{last, bare} {
		row := RowDropIn
		if in == bare {
			row = RowTunnel
		}
		for _, fresh := range []bool{true, false} {
			cl := newClientVia(viaTunnel, in.target, in.stubAddr, cmp.Or(in.roots, r.roots), 1)
			if fresh {
				// A new connection, CONNECT and full TLS handshake per
				// request: no keep-alive, no session resumption.
				cl.hc.Transport.(*http.Transport).DisableKeepAlives = true
			}
			defer cl.close()
			if s := cl.runSeq(ctx, w, sequence{enforcing: enforces(row)}, 1, 5, time.Time{}); s.Errors > 0 {
				return nil, fmt.Errorf("%s warm-up: %s", RowName(row), s.FirstError)
			}
			c := &TunnelCase{Row: row, NewTunnel: fresh, Sample: &Sample{}}
			t.Cases = append(t.Cases, c)
			cases = append(cases, &runCase{c: c, in: in, cl: cl})
		}
	}
	parts := rounds(n, 1)
	r.logf("tunnel check: %d processes × %d first tunnels; %d requests per case in %d rounds", t.Processes, len(tunnelHosts), n, len(parts))
	for i, part := range parts {
		for j := range cases {
			rc := cases[(i+j)%len(cases)]
			cpu0, err := cpuOf(rc.in.measured)
			if err != nil {
				return nil, err
			}
			s := rc.cl.runSeq(ctx, w, sequence{enforcing: enforces(rc.c.Row)}, 1, part, time.Time{})
			cpu1, err := cpuOf(rc.in.measured)
			if err != nil {
				return nil, err
			}
			if s.Errors > 0 {
				return nil, fmt.Errorf("%s (new tunnel %v): %d errors: %s", RowName(rc.c.Row), rc.c.NewTunnel, s.Errors, s.FirstError)
			}
			rc.c.Sample.merge(s)
			rc.c.CPUSeconds += cpu1 - cpu0
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	for _, rc := range cases {
		slices.Sort(rc.c.Sample.Latencies)
	}
	return t, nil
}

// readMetric is the value of one unlabelled sample of a Prometheus
// exposition at admin's /metrics (0 when absent).
func readMetric(ctx context.Context, admin, name string) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var x float64
			if _, err := fmt.Sscan(v, &x); err == nil {
				return x
			}
		}
	}
	return 0
}

// OK reports whether the check ran and measured every case.
func (t *TunnelCheck) OK() bool {
	if t == nil || t.Err != "" || len(t.Minted) == 0 {
		return false
	}
	for _, c := range t.Cases {
		if c.Sample == nil || len(c.Sample.Latencies) == 0 {
			return false
		}
	}
	return len(t.Cases) == 4
}
