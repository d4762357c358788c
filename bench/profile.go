package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// profileRun is one CPU profile the harness takes: a fresh row instance
// under one payload at concurrency 16.
type profileRun struct {
	row     int
	payload string
}

// profileRuns are the profiles of a full run: Pare on checkout.json (the
// one printed whole), on ticket.json (the card guard's share where the
// contract has it scan: Zendesk redacts), the two other front ends on
// checkout.json (what limits each), and the baseline build when there is
// one (where a difference to it comes from).
var profileRuns = []profileRun{
	{RowPare, "checkout.json"},
	{RowPare, "ticket.json"},
	{RowExtProc, "checkout.json"},
	{RowDropIn, "checkout.json"},
	{RowBaseline, "checkout.json"},
}

// CPUGroup is a part of a process's CPU (see CPUGroups).
type CPUGroup struct {
	Name  string
	Match *regexp.Regexp // a function name of the part
	// Inner parts claim a sample with their frame anywhere in its stack;
	// the others claim it by the innermost frame that matches one of them.
	Inner bool
}

// CPUGroups split each profile into parts that add up to the whole. A
// sample belongs to the first inner part, in this order, with a frame in
// its stack: the work the transports call (card guard, decision, filters,
// ledger, the vendor leg) is counted as that work wherever it was called
// from. Otherwise it belongs to the part of its innermost frame that
// matches one: so a gRPC read called by the ext_proc handler is gRPC's, an
// allocation in the handler's own code is the handler's. What matches
// nothing is "other".
var CPUGroups = []CPUGroup{
	{"card guard", regexp.MustCompile(`^github\.com/pare-dev/pare/filters\.[^ ]*[cC]ard|^github\.com/pare-dev/pare/internal/pipeline\.(guard|originalHasCard|\(\*scanReader\))`), true},
	{"decision (engine)", regexp.MustCompile(`^github\.com/pare-dev/pare/internal/engine\.\(\*Engine\)`), true},
	{"minimisation (filters)", regexp.MustCompile(`^github\.com/pare-dev/pare/filters\.`), true},
	{"ledger (encoding, write, fsync, chain, Merkle tree, checkpoints)", regexp.MustCompile(`^github\.com/pare-dev/pare/internal/ledger\.`), true},
	{"vendor leg (HTTP client, TLS out)", regexp.MustCompile(`^github\.com/pare-dev/pare/internal/proxy\.\(\*Proxy\)\.forward|^net/http\.\(\*(http2clientStream|http2ClientConn|http2clientConnReadLoop|http2Transport|Transport|persistConn)\)`), true},
	{"TLS, other than the vendor leg (the app side in drop-in mode)", regexp.MustCompile(`^crypto/tls\.`), false},
	{"gRPC and protobuf (ext_proc transport)", regexp.MustCompile(`^google\.golang\.org/(grpc|protobuf)`), false},
	{"HTTP server, app side (net/http)", regexp.MustCompile(`^net/http\.`), false},
	{"pipeline and front-end code (input, outbound, records, answers)", regexp.MustCompile(`^github\.com/pare-dev/pare/internal/(pipeline|proxy|extproc)\.`), false},
	{"garbage collector (background)", regexp.MustCompile(`^runtime\.(gcBgMarkWorker|bgsweep|bgscavenge)`), false},
	{"other (scheduler, network poller, metrics)", nil, false},
}

// groupOf is the index in CPUGroups of the part a stack (innermost frame
// first) belongs to.
func groupOf(funcs []string) int {
	for i, g := range CPUGroups {
		if g.Inner && slices.ContainsFunc(funcs, g.Match.MatchString) {
			return i
		}
	}
	for _, f := range funcs {
		for i, g := range CPUGroups {
			if !g.Inner && g.Match != nil && g.Match.MatchString(f) {
				return i
			}
		}
	}
	return len(CPUGroups) - 1
}

// ProfileShare is what one profile says: the CPU of a row's process under
// one payload, split into CPUGroups.
type ProfileShare struct {
	Row     int
	Payload string
	Total   time.Duration // CPU in the profile
	RPS     float64       // load during the profile
	Shares  []float64     // per CPUGroups entry, 0-1
	Err     string
}

// Share returns the share of the named group (-1 when unknown).
func (p *ProfileShare) Share(name string) float64 {
	for i, g := range CPUGroups {
		if g.Name == name && i < len(p.Shares) {
			return p.Shares[i]
		}
	}
	return -1
}

// profiles takes the CPU profiles of profileRuns that this run's rows and
// payloads allow; the first one's `pprof -top` is returned whole.
func (r *runner) profiles(ctx context.Context, ws []Workload, seconds int) (top, file string, shares []*ProfileShare, err error) {
	for _, pr := range profileRuns {
		if !r.has(pr.row) {
			continue
		}
		var w *Workload
		for i := range ws {
			if ws[i].Name == pr.payload {
				w = &ws[i]
			}
		}
		if w == nil {
			continue
		}
		t, f, sh, err := r.profile(ctx, pr.row, w, seconds, top == "")
		if err != nil {
			if ctx.Err() != nil {
				return top, file, shares, err
			}
			r.logf("profile %s / %s: %v", RowName(pr.row), pr.payload, err)
			sh = &ProfileShare{Row: pr.row, Payload: pr.payload, Err: err.Error()}
		}
		if top == "" && t != "" {
			top, file = t, f
		}
		shares = append(shares, sh)
	}
	return top, file, shares, nil
}

// profile takes a CPU profile of a fresh instance of row through its admin
// /debug/pprof/profile while w runs at concurrency 16, and splits it into
// CPUGroups. withTop: also `go tool pprof -top` of it.
func (r *runner) profile(ctx context.Context, row int, w *Workload, seconds int, withTop bool) (string, string, *ProfileShare, error) {
	in := &instanceProcs{}
	defer func() { r.ps.stop(in.all...) }()
	if err := r.startRow(ctx, row, in); err != nil {
		return "", "", nil, err
	}
	const conc = 16
	cl := newClientVia(in.mode, in.target, in.stubAddr, cmp.Or(in.roots, r.roots), conc)
	defer cl.close()
	seq := sequence{enforcing: enforces(row)}
	if s := cl.runSeq(ctx, w, seq, conc, 500, time.Time{}); s.Errors > 0 { // warm-up
		return "", "", nil, fmt.Errorf("warm-up: %d errors: %s", s.Errors, s.FirstError)
	}
	until := time.Now().Add(time.Duration(seconds)*time.Second + 2*time.Second)
	done := make(chan *Sample, 1)
	go func() { done <- cl.runSeq(ctx, w, seq, conc, 1<<30, until) }()
	r.logf("profiling %s for %ds under %s at c=%d", RowName(row), seconds, w.Name, conc)
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", in.admin, seconds)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: time.Duration(seconds+30) * time.Second}).Do(req)
	if err != nil {
		<-done
		return "", "", nil, err
	}
	prof, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := <-done
	if err != nil {
		return "", "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", nil, fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, oneLine(string(prof), 200))
	}
	if s.Errors > 0 {
		return "", "", nil, fmt.Errorf("%d errors under load: %s", s.Errors, s.FirstError)
	}
	file := filepath.Join(os.TempDir(), fmt.Sprintf("pare-cpu-row%d-%s-%s.pprof", row, slug(w.Name), time.Now().Format("20060102-150405")))
	if err := os.WriteFile(file, prof, 0o644); err != nil {
		return "", "", nil, err
	}
	sh, err := shareOf(ctx, r.binOf(row), file)
	if err != nil {
		return "", file, nil, err
	}
	sh.Row, sh.Payload, sh.RPS = row, w.Name, s.RPS()
	if !withTop {
		return "", file, sh, nil
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "load during the profile: %d requests, %.0f req/s, %d errors\n\n", s.Requests, s.RPS(), s.Errors)
	for _, args := range [][]string{{"-top", "-nodecount=25"}, {"-top", "-cum", "-nodecount=25"}} {
		cmd := exec.CommandContext(ctx, goTool(), append(append([]string{"tool", "pprof"}, args...), r.binOf(row), file)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return "", file, sh, errors.Join(err, errors.New(oneLine(string(b), 300)))
		}
		out.Write(b)
		out.WriteString("\n")
	}
	return out.String(), file, sh, nil
}

// binOf is the binary row runs.
func (r *runner) binOf(row int) string {
	if row == RowBaseline {
		return r.base
	}
	return r.pare
}

// shareOf splits the CPU profile in file (of binary bin) into CPUGroups,
// from the stacks `go tool pprof -traces` prints.
func shareOf(ctx context.Context, bin, file string) (*ProfileShare, error) {
	out, err := exec.CommandContext(ctx, goTool(), "tool", "pprof", "-traces", bin, file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces: %w", err)
	}
	traces, err := parseTraces(string(out))
	if err != nil {
		return nil, err
	}
	sh := &ProfileShare{Shares: make([]float64, len(CPUGroups))}
	var total time.Duration
	sums := make([]time.Duration, len(CPUGroups))
	for _, t := range traces {
		total += t.value
		sums[groupOf(t.funcs)] += t.value
	}
	if total == 0 {
		return nil, errors.New("empty profile")
	}
	sh.Total = total
	for i := range sums {
		sh.Shares[i] = float64(sums[i]) / float64(total)
	}
	return sh, nil
}

// trace is one stack of a CPU profile and the CPU time spent in it.
type trace struct {
	value time.Duration
	funcs []string // innermost first, inlined frames included
}

// parseTraces reads `go tool pprof -traces`: a header, then stacks
// separated by "-----------+---..." lines, each starting with the value
// ("10ms") before its innermost function and continuing one function a
// line.
func parseTraces(out string) ([]trace, error) {
	var ts []trace
	var cur *trace
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-----------+") {
			cur = nil
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(line, " ") {
			continue // header lines ("File: proxy") start at the margin
		}
		if cur == nil {
			if len(f) < 2 {
				return nil, fmt.Errorf("pprof -traces: unexpected line %q", line)
			}
			d, err := time.ParseDuration(f[0])
			if err != nil {
				return nil, fmt.Errorf("pprof -traces: value in %q: %w", line, err)
			}
			ts = append(ts, trace{value: d})
			cur = &ts[len(ts)-1]
			f = f[1:]
		}
		cur.funcs = append(cur.funcs, f[0])
	}
	if len(ts) == 0 {
		return nil, errors.New("pprof -traces: no samples")
	}
	return ts, nil
}

func slug(s string) string {
	return regexp.MustCompile(`[^a-zA-Z0-9.]+`).ReplaceAllString(s, "-")
}
