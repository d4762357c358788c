package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/vendorstub"
)

// Rows of the comparison, numbered as in issue 4.
const (
	RowFloor        = 1 // the vendor stub, called directly
	RowReverseProxy = 2 // bare httputil.ReverseProxy
	RowPare         = 3 // proxy serve
	RowOPA          = 4 // small proxy + OPA server
	RowExtProc      = 5 // Pare's ext_proc server
	// RowRealistic is Pare sent the mix workload's realistic requests
	// (distinct resources and subjects), beside row 3 sent its identical
	// requests, in the same cells: issue 12's comparison.
	RowRealistic = 6
	// RowTunnel is the bare proxy answering CONNECT with a blind tunnel
	// to the stub: the floor of HTTPS_PROXY (the app's TLS passes
	// through unread).
	RowTunnel = 7
	// RowDropIn is Pare in drop-in mode: the app sends https:// through
	// CONNECT (HTTPS_PROXY) and trusts Pare's CA; Pare terminates the TLS,
	// runs the pipeline and originates TLS to the vendor (issue 13).
	RowDropIn = 8
	// RowBaseline is row 3 with Pare built from another revision
	// (--baseline REV): a before/after comparison in one run.
	RowBaseline = 9
)

// AllRows are the rows a run measures by default (row 9 joins them when a
// baseline is given).
var AllRows = []int{RowFloor, RowReverseProxy, RowPare, RowOPA, RowExtProc, RowRealistic, RowTunnel, RowDropIn}

// RowName names a row in reports.
func RowName(row int) string {
	switch row {
	case RowFloor:
		return "1 stub direct (floor)"
	case RowReverseProxy:
		return "2 bare ReverseProxy"
	case RowPare:
		return "3 Pare"
	case RowOPA:
		return "4 proxy + OPA server"
	case RowExtProc:
		return "5 Pare ext_proc"
	case RowRealistic:
		return "6 Pare, realistic requests"
	case RowTunnel:
		return "7 bare CONNECT tunnel"
	case RowDropIn:
		return "8 Pare, HTTPS_PROXY"
	case RowBaseline:
		return "9 Pare, baseline build"
	}
	return fmt.Sprintf("row %d", row)
}

//go:embed opapattern.rego
var opaPatternRego []byte

// Config is one harness run.
type Config struct {
	Quick       bool
	Rows        []int    // rows to run (default AllRows)
	Concurrency []int    // default 1, 16, 64 (quick: 4)
	Sizes       []int    // attendee array sizes (default FullSizes; quick: QuickSizes)
	Scale       float64  // multiplies the request counts (default 1)
	PayloadDir  string   // shared/payloads
	RepoDir     string   // module root: where Pare and OPA are built from
	SelfBin     string   // a binary with the stub, revproxy and opaproxy subcommands (cmd/bench)
	ProxyBin    string   // Pare's binary; built from RepoDir when empty
	OPABin      string   // OPA's binary; built from the module pinned in go.mod when empty
	Baseline    string   // a git revision of RepoDir: row 9 runs Pare built from it ("": no row 9)
	BaselineBin string   // row 9's binary, prebuilt (Baseline then only names it)
	Policies    string   // Pare's --policies ("": bundled); row 4 loads its contracts/ (default RepoDir/policies)
	WorkDir     string   // temporary files (default: a new temp dir, removed at the end)
	LedgerDir   string   // where Pare's ledgers go (default WorkDir)
	Only        []string // run only the payloads whose names start with one of these
	Checks      bool     // run the 413 and tunnel checks and (full mode) the memory and decision checks
	Profile     int      // seconds of CPU profile of Pare under checkout.json at c=16 (0: none)
	Log         io.Writer
}

// Cell is one row × payload × concurrency measurement.
type Cell struct {
	Row        int
	Payload    string
	Conc       int
	NA         string  // why the row did not run this payload
	Sample     *Sample // nil when NA
	CPUSeconds float64 // user+system CPU of the row's server processes during the batch
	// Pare only: decisions made and their mean time during the batch, from
	// pare_policy_decision_duration_seconds.
	Decisions    float64
	DecisionMean time.Duration
	// Pare only: ledger records made durable and fsyncs during the batch
	// (group commit: fsyncs per record).
	LedgerRecords, LedgerFsyncs float64
	FsyncMean                   time.Duration

	decisionSum, fsyncSum, fsyncCount float64 // accumulated over the cell's turns

	// RoundRPS is the throughput of each round (see measurePayload). Rows
	// took turns within a round, so round i of two rows ran under about the
	// same machine load: the spread of their per-round ratios shows how
	// much the run's overall ratio owes to noise.
	RoundRPS []float64
	// RoundP99 is the p99 latency of each round, for the same purpose.
	RoundP99 []time.Duration
	// RoundCPU is the CPU seconds per request of the row's server
	// processes in each round, for the same purpose.
	RoundCPU []float64
}

// Instance is one set of row processes, started fresh for one payload and
// used for all its concurrencies.
type Instance struct {
	Row       int
	Payload   string
	PeakRSSKB int64 // sum over the row's processes of VmHWM
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int
	Model     string
	MemTotal  string
	GoVersion string
	Kernel    string
}

// Results of a run.
type Results struct {
	Quick       bool
	Command     string
	Machine     Machine
	Started     time.Time
	Elapsed     time.Duration
	Rows        []int
	Concurrency []int
	Workloads   []Workload // bodies dropped after the run
	Cells       []*Cell
	Instances   []*Instance
	RowNA       map[int]string // rows that did not run at all
	Memory      *MemoryCheck
	Decision    *DecisionCheck
	Limit       *LimitCheck
	Profile     string // go tool pprof -top of Pare
	ProfileFile string
	// Profiles split the CPU of each profiled front end (and of Pare under
	// a payload its card guard scans) into parts: see profileRuns.
	Profiles []*ProfileShare
	Tunnel   *TunnelCheck
	Baseline string // the revision row 9 was built from
	Errors   int    // non-200 responses and transport errors over all cells
}

// Cell returns the cell for row, payload and concurrency, or nil.
func (r *Results) Cell(row int, payload string, conc int) *Cell {
	for _, c := range r.Cells {
		if c.Row == row && c.Payload == payload && c.Conc == conc {
			return c
		}
	}
	return nil
}

// Instance returns the instance of row for payload, or nil.
func (r *Results) Instance(row int, payload string) *Instance {
	for _, in := range r.Instances {
		if in.Row == row && in.Payload == payload {
			return in
		}
	}
	return nil
}

type runner struct {
	cfg      Config
	ps       *procSet
	pki      vendorstub.PKI
	roots    *x509.CertPool
	pare     string                     // binary
	opa      string                     // binary
	base     string                     // row 9's binary
	flags    map[string]map[string]bool // binary -> the flags its serve command knows
	rego     string                     // opapattern.rego path
	hmac     string                     // hmac key file
	consents string                     // the mix's subjects and their consent histories, for Pare's --consents
	rowNA    map[int]string
	nextID   int
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, format+"\n", args...)
	}
}

// Run runs the benchmark. Every process it starts is killed before it returns.
func Run(ctx context.Context, cfg Config) (res *Results, err error) {
	if len(cfg.Rows) == 0 {
		cfg.Rows = AllRows
	}
	if len(cfg.Concurrency) == 0 {
		cfg.Concurrency = []int{1, 16, 64}
		if cfg.Quick {
			cfg.Concurrency = []int{4}
		}
	}
	if cfg.Sizes == nil {
		cfg.Sizes = FullSizes
		if cfg.Quick {
			cfg.Sizes = QuickSizes
		}
	}
	if cfg.Scale <= 0 {
		cfg.Scale = 1
	}
	if cfg.Baseline != "" && !slices.Contains(cfg.Rows, RowBaseline) {
		cfg.Rows = append(slices.Clone(cfg.Rows), RowBaseline)
	}
	if cfg.SelfBin == "" {
		return nil, errors.New("bench: Config.SelfBin is required")
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "pare-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	r := &runner{cfg: cfg, ps: &procSet{}, rowNA: map[int]string{}}
	defer r.ps.stopAll()

	res = &Results{Quick: cfg.Quick, Machine: machine(), Started: time.Now(), Rows: cfg.Rows, Concurrency: cfg.Concurrency, RowNA: r.rowNA, Baseline: cfg.Baseline}
	defer func() {
		if res != nil { // nil when Run fails early (a timeout, say)
			res.Elapsed = time.Since(res.Started)
		}
	}()

	if r.pki, err = writeStubPKI(cfg.WorkDir); err != nil {
		return nil, err
	}
	if r.roots, err = caPool(r.pki.CA); err != nil {
		return nil, err
	}
	ws, err := LoadWorkloads(cfg.PayloadDir, cfg.Sizes)
	if err != nil {
		return nil, err
	}
	if len(cfg.Only) > 0 {
		ws = slices.DeleteFunc(ws, func(w Workload) bool {
			return !slices.ContainsFunc(cfg.Only, func(p string) bool { return strings.HasPrefix(w.Name, p) })
		})
		if len(ws) == 0 {
			return nil, fmt.Errorf("bench: no payload matches %q", cfg.Only)
		}
	}
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}

	for i := range ws {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		insts, cells, err := r.measurePayload(ctx, &ws[i])
		res.Instances = append(res.Instances, insts...)
		res.Cells = append(res.Cells, cells...)
		if err != nil {
			return res, err
		}
	}
	for _, c := range res.Cells {
		if c.Sample != nil {
			res.Errors += c.Sample.Errors
		}
	}
	if cfg.Checks && r.has(RowPare) {
		// The memory check sends 1.25 GiB through Pare: full mode only.
		if !cfg.Quick {
			if res.Memory, err = r.memoryCheck(ctx, cfg.PayloadDir); err != nil {
				r.logf("memory check: %v", err)
				res.Memory = &MemoryCheck{Err: err.Error()}
			}
			if res.Decision, err = r.decisionCheck(ctx, cfg.PayloadDir); err != nil {
				r.logf("decision check: %v", err)
				res.Decision = &DecisionCheck{Err: err.Error()}
			}
		}
		if res.Limit, err = r.limitCheck(ctx); err != nil {
			r.logf("413 check: %v", err)
			res.Limit = &LimitCheck{Err: err.Error()}
		}
	}
	if cfg.Checks && r.has(RowDropIn) && r.has(RowTunnel) {
		if res.Tunnel, err = r.tunnelCheck(ctx, cfg.PayloadDir); err != nil {
			r.logf("tunnel check: %v", err)
			res.Tunnel = &TunnelCheck{Err: err.Error()}
		}
	}
	if cfg.Profile > 0 {
		if res.Profile, res.ProfileFile, res.Profiles, err = r.profiles(ctx, ws, cfg.Profile); err != nil {
			r.logf("profile: %v", err)
			res.Profile = "profile failed: " + err.Error()
		}
	}
	for i := range ws {
		ws[i].Body = ws[i].Body[:0:0]
	}
	res.Workloads = ws
	return res, ctx.Err()
}

func (r *runner) has(row int) bool {
	if _, na := r.rowNA[row]; na {
		return false
	}
	for _, x := range r.cfg.Rows {
		if x == row {
			return true
		}
	}
	return false
}

// prepare builds the binaries the rows need; a row whose binary cannot be
// built is reported n/a rather than failing the run.
func (r *runner) prepare(ctx context.Context) error {
	r.hmac = filepath.Join(r.cfg.WorkDir, "hmac.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(r.hmac, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return err
	}
	r.consents = filepath.Join(r.cfg.WorkDir, "consents.json")
	if err := writeConsentsFile(r.consents); err != nil {
		return err
	}
	r.rego = filepath.Join(r.cfg.WorkDir, "opapattern.rego")
	if err := os.WriteFile(r.rego, opaPatternRego, 0o600); err != nil {
		return err
	}
	if r.has(RowPare) || r.has(RowExtProc) || r.has(RowRealistic) || r.has(RowDropIn) {
		r.pare = r.cfg.ProxyBin
		if r.pare == "" {
			r.pare = filepath.Join(r.cfg.WorkDir, "proxy")
			r.logf("building Pare: go build -o %s ./cmd/proxy", r.pare)
			if err := goBuild(ctx, r.cfg.RepoDir, r.pare, "./cmd/proxy"); err != nil {
				for _, row := range []int{RowPare, RowExtProc, RowRealistic, RowDropIn} {
					r.rowNA[row] = "n/a (cmd/proxy does not build)"
				}
				r.logf("Pare does not build, its rows are n/a: %v", err)
			}
		}
	}
	if r.has(RowBaseline) {
		if r.cfg.Baseline == "" {
			r.rowNA[RowBaseline] = "n/a (no --baseline)"
		} else if r.cfg.BaselineBin != "" {
			r.base = r.cfg.BaselineBin
		} else {
			r.base = filepath.Join(r.cfg.WorkDir, "proxy-baseline")
			r.logf("building Pare at %s (row 9)", r.cfg.Baseline)
			if err := buildAtRevision(ctx, r.cfg.RepoDir, r.cfg.Baseline, filepath.Join(r.cfg.WorkDir, "baseline-src"), r.base, "./cmd/proxy"); err != nil {
				r.rowNA[RowBaseline] = "n/a (the baseline does not build)"
				r.logf("the baseline does not build, row 9 is n/a: %v", err)
			}
		}
	}
	if r.has(RowOPA) {
		r.opa = r.cfg.OPABin
		if r.opa == "" {
			var err error
			if r.opa, err = BuildOPA(ctx, r.cfg.RepoDir, r.cfg.Log); err != nil {
				r.rowNA[RowOPA] = "n/a (opa does not build)"
				r.logf("OPA does not build, row 4 is n/a: %v", err)
			}
		}
	}
	return ctx.Err()
}

// unsupported says why row cannot run w ("" when it can).
func (r *runner) unsupported(row int, w *Workload) string {
	if na, ok := r.rowNA[row]; ok {
		return na
	}
	if row == RowOPA && (!w.JSON || w.Mix != nil) {
		return "n/a (JSON only, one route)"
	}
	if row == RowRealistic && w.Mix == nil {
		return "n/a (the mix only)"
	}
	if row == RowBaseline && w.Mix != nil {
		// Another revision may answer the mix's requests otherwise.
		return "n/a (single-request payloads only)"
	}
	return ""
}

// OPA holds a parsed input about 40 times the size of its JSON body (about
// 450 MiB of RSS for one 10 MiB body): cells of row 4 with more body bytes in
// flight than this are skipped rather than risk exhausting the machine's memory.
const (
	opaInFlightLimit = 64 << 20
	opaSkip          = "n/a (skipped: c × body > 64 MiB; OPA needs ~45× the body in RAM)"
)

// requestCount is the number of measured requests per cell for a body size.
func (r *runner) requestCount(size, conc int) int {
	n := 40
	if !r.cfg.Quick {
		switch {
		case size <= 8<<10:
			n = 10000
		case size <= 128<<10:
			n = 1000
		case size <= 2<<20:
			n = 150
		default:
			n = 24
		}
		n = int(float64(n) * r.cfg.Scale)
	}
	return max(n, conc, 1)
}

// maxRounds bounds how many turns the rows take per cell (see measurePayload).
const maxRounds = 10

// rounds splits n requests at concurrency conc into turns of at least 4×conc
// requests each (at most maxRounds).
func rounds(n, conc int) []int {
	k := min(max(n/(4*conc), 1), maxRounds)
	parts := make([]int, k)
	for i := range parts {
		parts[i] = n / k
		if i < n%k {
			parts[i]++
		}
	}
	return parts
}

// rowRun is one row's processes and accumulated cell during measurePayload.
type rowRun struct {
	row    int
	in     *instanceProcs
	failed string
	cell   *Cell
	cl     *client
	seq    sequence // where the row is in its requests: no request is sent twice
}

// measurePayload starts fresh processes for every row that can run w, and
// measures all rows at each concurrency with the rows taking turns: each
// cell's requests are sent in up to maxRounds rounds, and in each round every
// row sends its share, in an order rotated round by round. The load other
// tenants put on a shared machine drifts over seconds; measuring the rows one
// after the other let that drift show up as a difference between rows, while
// taking turns spreads it over all of them alike.
func (r *runner) measurePayload(ctx context.Context, w *Workload) ([]*Instance, []*Cell, error) {
	var runs []*rowRun
	var cells []*Cell
	na := func(row int, why string) {
		for _, c := range r.cfg.Concurrency {
			cells = append(cells, &Cell{Row: row, Payload: w.Name, Conc: c, NA: why})
		}
	}
	defer func() {
		for _, rr := range runs {
			r.ps.stop(rr.in.all...)
		}
	}()
	for _, row := range r.cfg.Rows {
		if why := r.unsupported(row, w); why != "" {
			na(row, why)
			continue
		}
		rr := &rowRun{row: row, in: &instanceProcs{}, seq: sequence{realistic: row == RowRealistic, enforcing: enforces(row)}}
		runs = append(runs, rr)
		if err := r.startRow(ctx, row, rr.in); err != nil {
			if ctx.Err() != nil {
				return nil, cells, ctx.Err()
			}
			rr.failed = "failed: " + oneLine(err.Error(), 200)
			r.logf("%s / %s: %v", RowName(row), w.Name, err)
		}
	}
	fail := func(rr *rowRun, conc int, err error) {
		rr.failed = "failed: " + oneLine(err.Error(), 200)
		r.logf("%s / %s c=%d: %v", RowName(rr.row), w.Name, conc, err)
		r.ps.stop(rr.in.all...)
	}
	for _, conc := range r.cfg.Concurrency {
		n := r.requestCount(len(w.Body), conc)
		var active []*rowRun
		for _, rr := range runs {
			rr.cell = &Cell{Row: rr.row, Payload: w.Name, Conc: conc}
			switch {
			case rr.failed != "":
				rr.cell.NA = rr.failed
			case rr.row == RowOPA && conc*len(w.Body) > opaInFlightLimit:
				rr.cell.NA = opaSkip
			default:
				rr.cl = newClientVia(rr.in.mode, rr.in.target, rr.in.stubAddr, cmp.Or(rr.in.roots, r.roots), conc)
				// Warm-up: open the keep-alive connections and let every
				// process reach its steady state.
				nw := max(conc, n/10)
				warm := rr.cl.runSeq(ctx, w, rr.seq, conc, nw, time.Time{})
				rr.seq.start += nw
				if warm.Errors > 0 {
					rr.cl.close()
					fail(rr, conc, fmt.Errorf("warm-up: %d of %d requests failed: %s", warm.Errors, warm.Requests, warm.FirstError))
					rr.cell.NA = rr.failed
					continue
				}
				rr.cell.Sample = &Sample{}
				active = append(active, rr)
			}
		}
		for i, part := range rounds(n, conc) {
			for j := range active {
				rr := active[(i+j)%len(active)]
				if rr.failed != "" {
					continue
				}
				if err := r.turn(ctx, rr, w, conc, part); err != nil {
					if ctx.Err() != nil {
						return nil, cells, ctx.Err()
					}
					fail(rr, conc, err)
				}
			}
		}
		for _, rr := range runs {
			c := rr.cell
			if c.Sample != nil && rr.failed != "" {
				c.Sample, c.NA = nil, rr.failed
			}
			if c.Sample != nil {
				slices.Sort(c.Sample.Latencies) // merged unsorted, round by round
			}
			if rr.cl != nil {
				rr.cl.close()
				rr.cl = nil
			}
			cells = append(cells, c)
			if s := c.Sample; s != nil {
				if c.Decisions > 0 {
					c.DecisionMean = time.Duration(c.decisionSum / c.Decisions * float64(time.Second))
				}
				if c.fsyncCount > 0 {
					c.FsyncMean = time.Duration(c.fsyncSum / c.fsyncCount * float64(time.Second))
				}
				r.logf("%-22s %-18s c=%-3d n=%-5d %8.0f req/s  p50 %-9s p99 %-9s errors %d",
					RowName(c.Row), w.Name, conc, s.Requests, s.RPS(), fmtDur(s.Quantile(0.5)), fmtDur(s.Quantile(0.99)), s.Errors)
				if c.LedgerRecords > 0 {
					r.logf("  ledger: %.0f records, %.2f fsyncs per record, mean fsync %s", c.LedgerRecords, c.LedgerFsyncs/c.LedgerRecords, fmtDur(c.FsyncMean))
				}
				if s.Errors > 0 {
					r.logf("  first error: %s", oneLine(s.FirstError, 300))
				}
			}
		}
	}
	var insts []*Instance
	for _, rr := range runs {
		if rr.failed != "" {
			continue
		}
		inst := &Instance{Row: rr.row, Payload: w.Name}
		for _, p := range rr.in.measured {
			kb, err := statusKB(p.pid(), "VmHWM")
			if err != nil {
				return insts, cells, err
			}
			inst.PeakRSSKB += kb
		}
		insts = append(insts, inst)
	}
	return insts, cells, nil
}

// turn sends one row's share of a round and adds it to the row's cell.
func (r *runner) turn(ctx context.Context, rr *rowRun, w *Workload, conc, n int) error {
	var d0 pareStats
	if rr.in.admin != "" {
		d0 = readPareStats(ctx, rr.in.admin)
	}
	cpu0, err := cpuOf(rr.in.measured)
	if err != nil {
		return err
	}
	s := rr.cl.runSeq(ctx, w, rr.seq, conc, n, time.Time{})
	rr.seq.start += n
	cpu1, err := cpuOf(rr.in.measured)
	if err != nil {
		return err
	}
	c := rr.cell
	c.Sample.merge(s)
	c.RoundRPS = append(c.RoundRPS, s.RPS())
	c.RoundP99 = append(c.RoundP99, s.Quantile(0.99))
	c.CPUSeconds += cpu1 - cpu0
	if s.Requests > 0 {
		c.RoundCPU = append(c.RoundCPU, (cpu1-cpu0)/float64(s.Requests))
	}
	if rr.in.admin != "" {
		d1 := readPareStats(ctx, rr.in.admin)
		c.Decisions += d1.count - d0.count
		c.decisionSum += d1.sum - d0.sum
		c.LedgerRecords += d1.records - d0.records
		c.LedgerFsyncs += d1.fsyncs - d0.fsyncs
		c.fsyncSum += d1.fsyncSum - d0.fsyncSum
		c.fsyncCount += d1.fsyncCount - d0.fsyncCount
	}
	return ctx.Err()
}

// instanceProcs are the processes of one row instance.
type instanceProcs struct {
	all      []*proc
	measured []*proc // the row's server processes: CPU and memory are theirs
	stubAddr string
	target   string // proxy address; "" = the client calls the stub directly
	admin    string // Pare's admin address
	mode     clientMode
	roots    *x509.CertPool // what the client verifies (nil: the stub's CA)
}

// enforces says whether a row's answers are Pare's (its refusals are
// expected where the mix expects them) rather than always 200.
func enforces(row int) bool {
	switch row {
	case RowPare, RowRealistic, RowExtProc, RowDropIn, RowBaseline:
		return true
	}
	return false
}

func cpuOf(ps []*proc) (float64, error) {
	var sum float64
	for _, p := range ps {
		s, err := cpuSeconds(p.pid())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.name, err)
		}
		sum += s
	}
	return sum, nil
}

// startRow starts a fresh vendor stub and the processes of row.
func (r *runner) startRow(ctx context.Context, row int, in *instanceProcs) error {
	self := r.cfg.SelfBin
	stub, addr, err := r.ps.start(ctx, "stub", self, []string{"stub", "--listen", "127.0.0.1:0", "--cert", r.pki.Cert, "--key", r.pki.Key}, true)
	if err != nil {
		return err
	}
	in.all = append(in.all, stub)
	in.stubAddr = addr
	switch row {
	case RowFloor:
		in.measured = []*proc{stub}
	case RowReverseProxy, RowTunnel:
		p, a, err := r.ps.start(ctx, "revproxy", self, []string{"revproxy", "--listen", "127.0.0.1:0", "--stub", addr, "--ca", r.pki.CA}, true)
		if err != nil {
			return err
		}
		in.all = append(in.all, p)
		in.measured, in.target = []*proc{p}, a
		if row == RowTunnel {
			in.mode = viaTunnel // the stub's certificate, through the tunnel
		}
	case RowPare, RowRealistic, RowDropIn, RowExtProc, RowBaseline:
		bin, sub := r.pare, "serve"
		switch row {
		case RowExtProc:
			sub = "extproc"
		case RowBaseline:
			bin = r.base
		}
		p, listen, admin, err := r.startPareWith(ctx, bin, sub, addr)
		if err != nil {
			return err
		}
		in.all = append(in.all, p)
		in.measured, in.target, in.admin = []*proc{p}, listen, admin
		switch row {
		case RowExtProc:
			in.mode = viaExtproc
		case RowDropIn:
			// Every Pare of the run shares one state directory: the CA
			// the first one generated.
			in.mode = viaTunnel
			if in.roots, err = caPool(filepath.Join(r.stateDir(), "ca.crt")); err != nil {
				return fmt.Errorf("drop-in CA: %w", err)
			}
		}
	case RowOPA:
		opaAddr, err := freePort()
		if err != nil {
			return err
		}
		args := []string{"run", "--server", "--addr", opaAddr, "--skip-version-check",
			"--log-level", "error", "--log-level-request", "error", r.rego, "contracts:" + r.contractsDir()}
		o, _, err := r.ps.start(ctx, "opa", r.opa, args, false)
		if err != nil {
			return err
		}
		in.all = append(in.all, o)
		if err := waitHTTP(ctx, o, "http://"+opaAddr+"/health", 60*time.Second); err != nil {
			return err
		}
		p, a, err := r.ps.start(ctx, "opaproxy", self, []string{"opaproxy", "--listen", "127.0.0.1:0", "--stub", addr, "--ca", r.pki.CA, "--opa", "http://" + opaAddr}, true)
		if err != nil {
			return err
		}
		in.all = append(in.all, p)
		in.measured, in.target = []*proc{p, o}, a
	default:
		return fmt.Errorf("row %d cannot run", row)
	}
	return nil
}

func (r *runner) contractsDir() string {
	if r.cfg.Policies != "" {
		return filepath.Join(r.cfg.Policies, "contracts")
	}
	return filepath.Join(r.cfg.RepoDir, "policies", "contracts")
}

func (r *runner) stateDir() string { return filepath.Join(r.cfg.WorkDir, "pare-state") }

// startPareWith starts bin's sub command (serve, extproc) with the
// harness's settings, less the flags bin does not know (a baseline build
// may predate some), and waits for /readyz.
func (r *runner) startPareWith(ctx context.Context, bin, sub, stubAddr string, extra ...string) (p *proc, listen, admin string, err error) {
	addrs, err := freePorts(2)
	if err != nil {
		return nil, "", "", err
	}
	listen, admin = addrs[0], addrs[1]
	r.nextID++
	args := []string{sub, "--listen", listen, "--admin", admin, "--service", "billing",
		"--ledger", filepath.Join(cmp.Or(r.cfg.LedgerDir, r.cfg.WorkDir), fmt.Sprintf("pare-bench-ledger-%d-%d.jsonl", os.Getpid(), r.nextID)),
		"--hmac-key-file", r.hmac, "--upstream-ca", r.pki.CA, "--log-level", "warn", "--consents", r.consents, "--pprof",
		"--state-dir", r.stateDir()}
	for _, h := range []string{stripeHost, zendeskHost, eventbriteHost, mailchimpHost} {
		args = append(args, "--resolve", h+":443:"+stubAddr)
	}
	if r.cfg.Policies != "" {
		args = append(args, "--policies", r.cfg.Policies)
	}
	args = append(args, extra...)
	// Any build may predate a flag: --proxy-bin and --baseline name
	// other revisions.
	if args, err = r.knownFlags(ctx, bin, sub, args); err != nil {
		return nil, "", "", err
	}
	if p, _, err = r.ps.start(ctx, "pare", bin, args, false); err != nil {
		return nil, "", "", err
	}
	if err := waitHTTP(ctx, p, "http://"+admin+"/readyz", 60*time.Second); err != nil {
		r.ps.stop(p)
		return nil, "", "", err
	}
	return p, listen, admin, nil
}

// knownFlags drops from args (sub first, then --flag value pairs and
// --flag booleans) the flags bin's sub command does not list in its -h.
func (r *runner) knownFlags(ctx context.Context, bin, sub string, args []string) ([]string, error) {
	known, ok := r.flags[bin]
	if !ok {
		out, _ := exec.CommandContext(ctx, bin, sub, "-h").CombinedOutput()
		known = map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if f, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
				known[strings.Fields(f + " ")[0]] = true
			}
		}
		if len(known) == 0 {
			return nil, fmt.Errorf("%s %s -h lists no flags: %s", bin, sub, oneLine(string(out), 200))
		}
		if r.flags == nil {
			r.flags = map[string]map[string]bool{}
		}
		r.flags[bin] = known
	}
	out := []string{args[0]}
	for i := 1; i < len(args); i++ {
		name := strings.TrimPrefix(args[i], "--")
		hasValue := i+1 < len(args) && !strings.HasPrefix(args[i+1], "--")
		if known[name] {
			out = append(out, args[i])
			if hasValue {
				out = append(out, args[i+1])
			}
		} else {
			r.logf("%s does not know --%s: left out", bin, name)
		}
		if hasValue {
			i++
		}
	}
	return out, nil
}

// buildAtRevision builds pkg of repo as it was at rev (git archive into
// src) into out.
func buildAtRevision(ctx context.Context, repo, rev, src, out, pkg string) error {
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", rev)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var aerr, terr strings.Builder
	archive.Stderr, untar.Stderr = &aerr, &terr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return fmt.Errorf("git archive %s: %v: %s", rev, err, oneLine(aerr.String(), 200))
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("tar: %v: %s", err, oneLine(terr.String(), 200))
	}
	return goBuild(ctx, src, out, pkg)
}

// goBuild runs `go build -o out pkg` in dir.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, oneLine(string(b), 400))
	}
	return nil
}

// goTool is the go command on PATH: the one that built and runs this
// harness (runtime.GOROOT is deprecated: it names the build machine's).
func goTool() string { return "go" }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// BuildOPA returns an OPA binary built from the version of
// github.com/open-policy-agent/opa pinned in repo's go.mod, cached in the
// user cache directory (pare-bench/opa-VERSION) across runs.
func BuildOPA(ctx context.Context, repo string, log io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, goTool(), "list", "-m", "-f", "{{.Version}}", "github.com/open-policy-agent/opa")
	cmd.Dir = repo
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m opa: %w", err)
	}
	version := strings.TrimSpace(string(b))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "pare-bench", "opa-"+version)
	if fileExists(out) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if log != nil {
		fmt.Fprintf(log, "building OPA %s (once, cached as %s): go build github.com/open-policy-agent/opa\n", version, out)
	}
	tmp := out + ".tmp"
	if err := goBuild(ctx, repo, tmp, "github.com/open-policy-agent/opa"); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// pareStats are the _count and _sum of Pare's decision histogram, summed
// over its labels, and its ledger's record and fsync counters.
type pareStats struct{ count, sum, records, fsyncs, fsyncSum, fsyncCount float64 }

// readPareStats reads them from Pare's /metrics (zero when it cannot).
func readPareStats(ctx context.Context, admin string) (d pareStats) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return d
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// Labels may hold spaces: take the value after the closing brace.
			j := strings.LastIndexByte(line, '}')
			name, rest = line[:i], strings.TrimSpace(line[j+1:])
		}
		var v float64
		if _, err := fmt.Sscan(rest, &v); err != nil {
			continue
		}
		switch name {
		case "pare_policy_decision_duration_seconds_sum":
			d.sum += v
		case "pare_policy_decision_duration_seconds_count":
			d.count += v
		case "pare_ledger_records_total":
			d.records = v
		case "pare_ledger_fsyncs_total":
			d.fsyncs = v
		case "pare_ledger_fsync_duration_seconds_sum":
			d.fsyncSum = v
		case "pare_ledger_fsync_duration_seconds_count":
			d.fsyncCount = v
		}
	}
	return d
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(v), &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(goTool(), "version").Output(); err == nil {
		m.GoVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	return m
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func fmtDur(d time.Duration) string {
	return fmtMs(float64(d) / float64(time.Millisecond))
}

// fmtMs formats milliseconds with three significant digits.
func fmtMs(ms float64) string {
	a := ms
	if a < 0 {
		a = -a
	}
	switch {
	case a == 0:
		return "0"
	case a < 1:
		return fmt.Sprintf("%.3f", ms)
	case a < 10:
		return fmt.Sprintf("%.2f", ms)
	case a < 100:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}
