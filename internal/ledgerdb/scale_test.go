package ledgerdb

// The fleet at scale, as ratios measured in one run (issue 15):
//
//   - shipping throughput relative to local append throughput: N sidecar
//     processes append R records each to their own ledgers at once (the
//     baseline), then ship them to one PostgreSQL at once;
//   - shipping lag at steady load: the N processes append at a steady
//     rate while they ship, the lag sampled every 100 ms;
//   - a subject's fleet-wide report over a database of N×R records
//     against one of 10,000, with the same records of that subject in
//     both (the goal: an index lookup, nearly flat), and a full central
//     verification's rate.
//
// The sidecars are this test binary run again as child processes
// (PARE_LEDGERDB_CHILD), each with the real ledger writer and Shipper —
// the proxy's HTTP path is not what is measured. In the full run
// PostgreSQL has fsync on, as the ledger does.
//
//	go test ./internal/ledgerdb -run TestPostgres/FleetScaleQuick -v     # 3 x 2,000, part of the default run
//	PARE_FLEET_SCALE=full go test ./internal/ledgerdb -run TestFleetScale -v -timeout 60m   # 20 x 50,000

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pgtest"
)

const childEnv = "PARE_LEDGERDB_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	os.Exit(m.Run())
}

// benchSubject has the same records in every database the report is
// timed over: one request (a disclosure and its outcome) per this many
// requests of each sidecar, at most 20 in all.
const benchSubject = "u-bench"

type scale struct {
	sidecars, records int // per sidecar
	rounds            int // append and ship take turns, records/rounds each time
	small             int // records of the small database
	steady            time.Duration
	rate              int // records/s per sidecar at steady load
	reports           int // timed reports per database
}

var (
	fullScale  = scale{sidecars: 20, records: 50000, rounds: 5, small: 10000, steady: 30 * time.Second, rate: 200, reports: 40}
	quickScale = scale{sidecars: 3, records: 2000, rounds: 2, small: 1000, steady: 3 * time.Second, rate: 100, reports: 5}
)

// childResult is what a sidecar process reports on its stdout.
type childResult struct {
	Records uint64    `json:"records"`
	Seconds float64   `json:"seconds"`
	Lag     []float64 `json:"lag_records,omitempty"`
	LagSec  []float64 `json:"lag_seconds,omitempty"`
	Err     string    `json:"err,omitempty"`
}

// scaleRecord is a disclosure or outcome as the proxy writes them, about
// one of 100,000 people, or about benchSubject.
func scaleRecord(rng *rand.Rand, i int, bench bool) []*ledger.Record {
	subject := "u-" + strconv.Itoa(rng.IntN(100000))
	if bench {
		subject = benchSubject
	}
	vendors := [][3]string{{"stripe", "Stripe (contract PSP-2024-03)", "payment"}, {"zendesk", "Zendesk (contract SUP-2024-07)", "support"},
		{"mailchimp", "Mailchimp (contract MKT-2024-11)", "marketing"}}
	v := vendors[i%len(vendors)]
	id := fmt.Sprintf("%024x", rng.Uint64())
	return []*ledger.Record{
		{Kind: ledger.KindDisclosure, DecisionID: id, Vendor: v[0], Recipient: v[1], Host: "api." + v[0] + ".example",
			Method: "POST", Path: "/v1/payment_intents", PathHash: "5e8f0c1d2a3b4c5d", Purpose: v[2], Subject: subject,
			Service: "billing", Revision: "05940fbeb2cd51f0a3b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3",
			FieldsSent:    []string{"amount", "currency", "customer/email", "customer/name", "metadata/order_id", "items/*/sku"},
			FieldsRemoved: []string{"customer/phone", "customer/address", "(key)"}, FieldsRemovedCount: 4,
			Transformed: []string{"receipt_email"}, Transforms: map[string]string{"receipt_email": "hmac"}, Status: 200,
			BytesIn: 812, BytesOut: 433},
		{Kind: ledger.KindOutcome, DecisionID: id, Vendor: v[0], Purpose: v[2], Subject: subject, Service: "billing",
			Revision: "05940fbeb2cd51f0a3b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3", Outcome: "200", Status: 200},
	}
}

// childMain is one sidecar. Its settings come from the environment.
func childMain(mode string) int {
	env := func(k string) string { return os.Getenv("PARE_LEDGERDB_" + k) }
	path, dsn := env("PATH"), env("DSN")
	n, _ := strconv.Atoi(env("RECORDS"))
	benchEvery, _ := strconv.Atoi(env("BENCH_EVERY"))
	rate, _ := strconv.Atoi(env("RATE"))
	dur, _ := time.ParseDuration(env("DURATION"))
	seed, _ := strconv.ParseUint(env("SEED"), 10, 64)
	round, _ := strconv.Atoi(env("ROUND"))
	rounds, _ := strconv.Atoi(env("ROUNDS"))
	seed = seed*1000 + uint64(round)
	res, err := runChild(mode, path, dsn, n, benchEvery, rate, dur, seed, recordClock(n, round, max(rounds, 1)))
	if err != nil {
		res.Err = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		return 1
	}
	return 0
}

func childSigner(path string) (note.Signer, error) {
	s, _, _, err := ledger.LoadOrCreateKey(filepath.Join(filepath.Dir(path), "ledger.key"))
	return s, err
}

// recordClock stamps records a few minutes apart from the start of
// September, so a sidecar's records (n in each of rounds) span the months
// around now and fill several partitions.
func recordClock(n, round, rounds int) func() time.Time {
	var mu sync.Mutex
	step := 90 * 24 * time.Hour / time.Duration(max(n*rounds, 1))
	t := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(round*n) * step)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(step)
		return t
	}
}

func runChild(mode, path, dsn string, n, benchEvery, rate int, dur time.Duration, seed uint64, clock func() time.Time) (childResult, error) {
	var res childResult
	signer, err := childSigner(path)
	if err != nil {
		return res, err
	}
	switch mode {
	case "append":
		// As fast as the ledger takes them, from 16 concurrent requests
		// (the proxy's group commit at work).
		l, err := ledger.Open(path, ledger.Options{Signer: signer, Logger: quiet(), Now: clock})
		if err != nil {
			return res, err
		}
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				for i := w; i < n/2; i += 16 {
					for _, r := range scaleRecord(rng, i, benchEvery > 0 && i%benchEvery == benchEvery/2) {
						if err := l.Append(context.Background(), r); err != nil {
							mu.Lock()
							firstErr = err
							mu.Unlock()
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		res.Seconds = time.Since(start).Seconds()
		res.Records = l.Stats().Records
		if err := l.Close(); err != nil {
			return res, err
		}
		return res, firstErr
	case "ship":
		// Catch up with a ledger no writer has open: how fast shipping
		// goes when it is behind.
		origin, err := originOf(path)
		if err != nil {
			return res, err
		}
		s, err := New(Options{Path: path, DSN: dsn, Origin: origin, Signer: signer, Retain: -1, Logger: quiet()})
		if err != nil {
			return res, err
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		if err := s.Drain(ctx); err != nil {
			return res, err
		}
		res.Seconds = time.Since(start).Seconds()
		res.Records = s.Stats().Records
		return res, nil
	case "steady":
		l, err := ledger.Open(path, ledger.Options{Signer: signer, Logger: quiet()})
		if err != nil {
			return res, err
		}
		s, err := New(Options{Path: path, DSN: dsn, Origin: l.Origin(), Head: l.Head, Signer: signer, Retain: -1, Logger: quiet()})
		if err != nil {
			return res, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		rng := rand.New(rand.NewPCG(seed, 1))
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		sample := time.NewTicker(100 * time.Millisecond)
		sent := 0
		for time.Since(start) < dur {
			select {
			case <-tick.C:
				want := int(time.Since(start).Seconds() * float64(rate))
				for ; sent < want; sent += 2 {
					for _, r := range scaleRecord(rng, sent/2, false) {
						if err := l.Append(context.Background(), r); err != nil {
							cancel()
							return res, err
						}
					}
				}
			case <-sample.C:
				if time.Since(start) < 2*time.Second {
					continue // warming up
				}
				head, _ := l.Head()
				st := s.Stats()
				res.Lag = append(res.Lag, float64(head)-float64(st.Shipped))
				res.LagSec = append(res.LagSec, st.LagSeconds)
			}
		}
		tick.Stop()
		sample.Stop()
		cancel()
		<-done
		res.Records = uint64(sent)
		res.Seconds = time.Since(start).Seconds()
		return res, l.Close()
	}
	return res, fmt.Errorf("unknown mode %q", mode)
}

func originOf(path string) (string, error) {
	es, err := ledger.ReadCheckpointLog(ledger.CheckpointLogName(path))
	if err != nil || len(es) == 0 {
		return "", fmt.Errorf("checkpoint log: %v", err)
	}
	cp, err := ledger.ParseCheckpoint([]byte(es[0].Checkpoint))
	if err != nil {
		return "", err
	}
	return cp.Origin, nil
}

// children runs one child process per ledger path at once and returns
// their results and the wall time of the slowest.
func children(t *testing.T, mode string, paths []string, env ...string) ([]childResult, time.Duration) {
	t.Helper()
	results := make([]childResult, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	start := time.Now()
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+mode, "PARE_LEDGERDB_PATH="+p, "PARE_LEDGERDB_SEED="+strconv.Itoa(i+1))
			cmd.Env = append(cmd.Env, env...)
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if jerr := json.Unmarshal(out, &results[i]); jerr != nil && err == nil {
				err = fmt.Errorf("%s: %v", out, jerr)
			}
			if err == nil && results[i].Err != "" {
				err = fmt.Errorf("%s", results[i].Err)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s sidecar %d: %v", mode, i, err)
		}
	}
	return results, wall
}

func ledgerPaths(t *testing.T, n int) []string {
	var out []string
	for range n {
		out = append(out, filepath.Join(t.TempDir(), "ledger.jsonl"))
	}
	return out
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestFleetScale is the full run, with a server of its own (fsync on);
// the quick one runs in the default suite as TestPostgres/FleetScaleQuick.
func TestFleetScale(t *testing.T) {
	if os.Getenv("PARE_FLEET_SCALE") != "full" {
		t.Skip("PARE_FLEET_SCALE=full runs the 20 x 50,000 measurement (several minutes)")
	}
	testFleetScale(t, pgtest.Start(t, "fsync=on", "max_connections=100"), fullScale)
}

func testFleetScale(t *testing.T, srv *pgtest.Server, sc scale) {
	mode := "quick"
	if sc == fullScale {
		mode = "full, PostgreSQL with fsync on"
	}
	fleet := newDB(t, srv, "scale_fleet")
	small := newDB(t, srv, "scale_small")
	steady := newDB(t, srv, "scale_steady")
	// One benchSubject request per sidecar and round.
	perRound := sc.records / sc.rounds
	env := []string{"PARE_LEDGERDB_RECORDS=" + strconv.Itoa(perRound), "PARE_LEDGERDB_BENCH_EVERY=" + strconv.Itoa(perRound/2),
		"PARE_LEDGERDB_ROUNDS=" + strconv.Itoa(sc.rounds)}

	// 1. and 2. Local append (the baseline) and shipping the same records
	// to one database, all sidecars at once, taking turns: the load other
	// tenants put on a shared machine drifts over seconds, and measured
	// one after the other that drift shows up as a difference between
	// them.
	paths := ledgerPaths(t, sc.sidecars)
	var total, shipped uint64
	var appWall, shipWall time.Duration
	var roundRatios []float64
	for round := range sc.rounds {
		renv := append(env, "PARE_LEDGERDB_ROUND="+strconv.Itoa(round))
		app, aw := children(t, "append", paths, renv...)
		shp, sw := children(t, "ship", paths, append(renv, "PARE_LEDGERDB_DSN="+fleet)...)
		var a, sh uint64
		for i := range app {
			a += app[i].Records
			sh += shp[i].Records
		}
		if sh != a {
			t.Fatalf("round %d: shipped %d of %d records", round, sh, a)
		}
		total, shipped, appWall, shipWall = total+a, shipped+sh, appWall+aw, shipWall+sw
		roundRatios = append(roundRatios, (float64(sh)/sw.Seconds())/(float64(a)/aw.Seconds()))
	}
	appendRate := float64(total) / appWall.Seconds()
	shipRate := float64(shipped) / shipWall.Seconds()

	// The small database: the same records of benchSubject among
	// sc.small records in all (one sidecar, benchSubject as often).
	smallPath := ledgerPaths(t, 1)
	smallEnv := []string{"PARE_LEDGERDB_RECORDS=" + strconv.Itoa(sc.small),
		"PARE_LEDGERDB_BENCH_EVERY=" + strconv.Itoa(max(sc.small/2/(sc.sidecars*sc.rounds), 1))}
	children(t, "append", smallPath, smallEnv...)
	children(t, "ship", smallPath, append(smallEnv, "PARE_LEDGERDB_DSN="+small)...)

	// 3. A subject's report over each, alternating, and verification.
	ctx := context.Background()
	bigConn, smallConn := connect(t, fleet), connect(t, small)
	for _, c := range []*pgx.Conn{bigConn, smallConn} {
		if _, err := c.Exec(ctx, "ANALYZE"); err != nil {
			t.Fatal(err)
		}
	}
	report := func(c *pgx.Conn) (time.Duration, int) {
		start := time.Now()
		recs, err := Query(ctx, c, ledger.Filter{Subject: benchSubject})
		if err != nil {
			t.Fatal(err)
		}
		rep := ledger.BuildReportWith(recs, ledger.ReportOptions{Subject: benchSubject})
		return time.Since(start), rep.Disclosures
	}
	var tBig, tSmall []time.Duration
	var nBig, nSmall int
	for range sc.reports {
		d, n := report(bigConn)
		tBig, nBig = append(tBig, d), n
		d, n = report(smallConn)
		tSmall, nSmall = append(tSmall, d), n
	}
	if nBig != nSmall || nBig == 0 {
		t.Fatalf("%s has %d disclosures in the big database, %d in the small one: the comparison needs the same", benchSubject, nBig, nSmall)
	}
	var rows int64
	if err := bigConn.QueryRow(ctx, `SELECT count(*) FROM pare_ledger_records`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	var dbBytes int64
	if err := bigConn.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&dbBytes); err != nil {
		t.Fatal(err)
	}
	var localBytes int64
	for _, p := range paths {
		files, _ := ledger.Files(p)
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				localBytes += fi.Size()
			}
		}
	}
	cfg, _ := pgx.ParseConfig(fleet)
	vstart := time.Now()
	res, err := Verify(ctx, cfg, VerifyOptions{})
	if err != nil || !res.OK() {
		t.Fatalf("verify: %v %v", err, res.Problems)
	}
	verifyRate := float64(res.Records) / time.Since(vstart).Seconds()

	// 4. Lag at a steady load, in another database.
	spaths := ledgerPaths(t, sc.sidecars)
	st, _ := children(t, "steady", spaths, "PARE_LEDGERDB_DSN="+steady, "PARE_LEDGERDB_RATE="+strconv.Itoa(sc.rate),
		"PARE_LEDGERDB_DURATION="+sc.steady.String())
	var lag, lagSec []float64
	for _, r := range st {
		lag = append(lag, r.Lag...)
		lagSec = append(lagSec, r.LagSec...)
	}

	t.Logf("fleet scale (%s): %d sidecar processes x %d records, PostgreSQL 15, this machine's %d CPUs shared",
		mode, sc.sidecars, sc.records, runtime.NumCPU())
	t.Logf("local append:    %d records in %.1fs: %.0f records/s (16 concurrent appenders per sidecar)", total, appWall.Seconds(), appendRate)
	sort.Float64s(roundRatios)
	t.Logf("shipping:        %d records in %.1fs: %.0f records/s = %.2fx local append (rounds %.2f-%.2f)", shipped, shipWall.Seconds(),
		shipRate, shipRate/appendRate, roundRatios[0], roundRatios[len(roundRatios)-1])
	t.Logf("steady load:     %d records/s per sidecar (%d in all) for %s: lag p50 %.0f / p99 %.0f / max %.0f records; p50 %.0f / p99 %.0f / max %.0f ms",
		sc.rate, sc.rate*sc.sidecars, sc.steady, percentile(lag, .5), percentile(lag, .99), percentile(lag, 1),
		1000*percentile(lagSec, .5), 1000*percentile(lagSec, .99), 1000*percentile(lagSec, 1))
	t.Logf("subject report:  %d disclosures; over %d records median %s, over %d records median %s: %.2fx",
		nBig, rows, median(tBig), sc.small, median(tSmall), float64(median(tBig))/float64(median(tSmall)))
	t.Logf("central verify:  %d records, %d checkpoints: %.0f records/s", res.Records, res.Checkpoints, verifyRate)
	t.Logf("size:            %.0f bytes/record in the database (rows, indexes, checkpoints), %.0f in the local files",
		float64(dbBytes)/float64(rows), float64(localBytes)/float64(total))
}
