package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pgtest"
	"github.com/pare-dev/pare/policies"
)

// The fleet's ledger in PostgreSQL (serve --ledger-sink), with the real
// binary and a real database: see internal/ledgerdb for the shipper's own
// tests.

// shipRequest is a disclosure about subject, to Zendesk or Stripe.
func shipRequest(t testing.TB, i int, subject string) request {
	r := ticketRequest(t)
	if i%3 == 0 {
		r = paymentRequest(t)
	}
	return r.without("X-Data-Subject").with("X-Data-Subject", subject)
}

// sendLoad sends n requests from workers goroutines, subjects u-0..u-4,
// and returns how many were answered 200. Errors (a killed sidecar) stop
// a worker.
func sendLoad(t testing.TB, p *proxyProc, workers, n int) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				resp, err := p.try(shipRequest(t, i, fmt.Sprintf("u-%d", i%5)))
				if err != nil {
					return
				}
				if resp.Status != 200 {
					// Refused (a policy timeout on a loaded machine, say):
					// recorded all the same, and shipped.
					continue
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok
}

// localLines are a ledger's records as its files hold them, by seq; its
// origin is read from its checkpoint log.
func localLines(t testing.TB, path string) (string, map[int64][]byte) {
	t.Helper()
	entries, err := ledger.ReadCheckpointLog(ledger.CheckpointLogName(path))
	if err != nil || len(entries) == 0 {
		t.Fatalf("checkpoint log of %s: %v", path, err)
	}
	cp, err := ledger.ParseCheckpoint([]byte(entries[0].Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	files, err := ledger.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]byte{}
	for _, f := range files {
		for _, line := range bytes.Split(bytes.TrimSuffix(readFile(t, f), []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var r struct {
				Seq int64 `json:"seq"`
			}
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[r.Seq] = line
		}
	}
	return cp.Origin, out
}

// dbRows are the lines the database holds for origin; a seq twice fails.
func dbRows(t testing.TB, dsn, origin string) map[int64][]byte {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT seq, line FROM pare_ledger_records WHERE origin = $1`, origin)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]byte{}
	for rows.Next() {
		var seq int64
		var line []byte
		if err := rows.Scan(&seq, &line); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[seq]; dup {
			t.Fatalf("%s seq %d is in the database twice", origin, seq)
		}
		out[seq] = line
	}
	return out
}

// wantShippedAll: the database holds exactly the ledger's records.
func wantShippedAll(t testing.TB, dsn, path string) string {
	t.Helper()
	origin, local := localLines(t, path)
	db := dbRows(t, dsn, origin)
	if len(db) != len(local) {
		t.Fatalf("%s: %d records in the files, %d in the database", origin, len(local), len(db))
	}
	for seq, l := range local {
		if !bytes.Equal(l, db[seq]) {
			t.Fatalf("%s seq %d: the database's line differs from the file's", origin, seq)
		}
	}
	return origin
}

func pubkey(t testing.TB, stateDir string) string {
	t.Helper()
	out, errOut, code := runCLI(t, "ledger", "pubkey", "--state-dir", stateDir)
	if code != 0 {
		t.Fatalf("ledger pubkey: %d %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

// TestShipFleet: three sidecars ship to one database at once, one of them
// killed with SIGKILL mid-shipment and restarted on its ledger. The
// database ends up with every record of every sidecar once, central
// verification passes with their keys, and the fleet's report for a
// person is the report of the union of the sidecars' ledgers. A deleted
// row is then found, and the report refused.
func TestShipFleet(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t)
	stub := startStub(t)
	// The schema by an owner's role first, as a company whose sidecars may
	// not create tables would; the sidecars find it current.
	out, errOut, code := runCLI(t, "ledger", "migrate", "--dsn", db.DSN)
	if code != 0 || !strings.Contains(out, "ok: schema version 1 (was 0)") {
		t.Fatalf("ledger migrate: %d %s%s", code, out, errOut)
	}
	args := []string{"--ledger-sink", db.DSN, "--checkpoint-every", "25", "--ledger-max-bytes", "32KiB"}
	var ps []*proxyProc
	for range 3 {
		ps = append(ps, startProxy(t, proxyConfig{Stub: stub, Args: args}))
	}
	var wg sync.WaitGroup
	for _, p := range ps[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); sendLoad(t, p, 4, 60) }()
	}
	// The first sidecar is killed while it ships: once the database has
	// some of its records, and requests are still coming.
	wg.Add(1)
	go func() { defer wg.Done(); sendLoad(t, ps[0], 4, 400) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, b := ps[0].adminGet(t, "/metrics")
		if metricValue(b, "pare_ledger_ship_records_total") >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first sidecar shipped nothing within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ps[0].Kill()
	wg.Wait()
	ps[0] = startProxy(t, proxyConfig{Stub: stub, Ledger: ps[0].Ledger, StateDir: ps[0].StateDir, Args: args})
	sendLoad(t, ps[0], 2, 20)
	var keys []string
	for _, p := range ps {
		p.Stop(t) // drains: the last records and the final checkpoint are shipped
		keys = append(keys, "--pubkey", pubkey(t, p.StateDir))
	}
	var origins []string
	paths := map[string]string{}
	for _, p := range ps {
		o := wantShippedAll(t, db.DSN, p.Ledger)
		origins = append(origins, o)
		paths[o] = p.Ledger
	}
	sort.Strings(origins)

	out, errOut, code = runCLI(t, append([]string{"ledger", "verify", "--dsn", db.DSN}, keys...)...)
	if code != 0 || !strings.Contains(out, "ok: 3 instances") || !strings.Contains(out, "signatures verified") {
		t.Fatalf("verify --dsn: %d\n%s%s", code, out, errOut)
	}

	// The fleet's report for a person is the report of the union of the
	// sidecars' ledgers.
	cs, err := contract.LoadFS(policies.FS, "contracts")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := contract.NewCatalog(cs)
	if err != nil {
		t.Fatal(err)
	}
	since, until := time.Now().Add(-time.Hour).UTC().Truncate(time.Second), time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	for _, subject := range []string{"u-1", "u-3"} {
		var union []ledger.Record
		for _, o := range origins {
			files, err := ledger.Files(paths[o])
			if err != nil {
				t.Fatal(err)
			}
			recs, err := ledger.Query(files, ledger.Filter{Subject: subject, Since: since, Until: until})
			if err != nil {
				t.Fatal(err)
			}
			union = append(union, recs...)
		}
		want := ledger.BuildReportWith(union, ledger.ReportOptions{Subject: subject, Since: since, Until: until,
			Catalog: cat, Audience: ledger.AudienceStaff})
		if want.Disclosures == 0 || len(want.Recipients) < 2 {
			t.Fatalf("%s: the local ledgers hold %d disclosures to %d recipients: the comparison would prove little", subject, want.Disclosures, len(want.Recipients))
		}
		out, errOut, code := runCLI(t, append([]string{"ledger", "report", "--dsn", db.DSN, "--subject", subject, "--format", "json",
			"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339)}, keys...)...)
		if code != 0 {
			t.Fatalf("report --dsn: %d %s", code, errOut)
		}
		var got ledger.Report
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		// query --dsn lists the same records, from the indexes alone.
		qout, qerr, qcode := runCLI(t, "ledger", "query", "--dsn", db.DSN, "--subject", subject, "--json", "--verify=false",
			"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339))
		if n := strings.Count(qout, "\n"); qcode != 0 || n != len(union) {
			t.Fatalf("query --dsn: %d, %d records, want %d: %s", qcode, n, len(union), qerr)
		}
		got.Generated = time.Time{}
		gj, _ := json.Marshal(&got)
		wj, _ := json.Marshal(want)
		if !bytes.Equal(gj, wj) {
			t.Fatalf("%s: the fleet's report differs from the union of the local ones:\nfleet %s\nlocal %s", subject, gj, wj)
		}
	}

	// A row deleted from the database: verification names the gap, and no
	// report is given from it.
	db.Exec(`DELETE FROM pare_ledger_records WHERE origin = $1 AND seq = 7`, origins[1])
	out, errOut, code = runCLI(t, append([]string{"ledger", "verify", "--dsn", db.DSN}, keys...)...)
	if code != 1 || !strings.Contains(errOut, "seq 7 gap") {
		t.Fatalf("verify --dsn after a deleted row: %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCLI(t, "ledger", "report", "--dsn", db.DSN, "--subject", "u-1", "--format", "json")
	if code != 1 || !strings.Contains(errOut, "does not verify") {
		t.Fatalf("report --dsn from a damaged database: %d %s", code, errOut)
	}
	_, errOut, code = runCLI(t, "ledger", "verify", "--dsn", "postgres://pare@"+closedAddr(t)+"/postgres?sslmode=disable&connect_timeout=2")
	if code != 2 {
		t.Fatalf("verify --dsn of an unreachable database: %d %s", code, errOut)
	}
}

// TestShipOutage: PostgreSQL stops under a sidecar with retention on. The
// sidecar stays ready and answers, its metrics show the lag and the
// errors, nothing unshipped is deleted; once the database is back the
// sidecar catches up and deletes what is shipped, and the ledger's own
// verify passes on what remains (the signed shipped marker) while a local
// report refuses to answer from it.
func TestShipOutage(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t)
	p := startProxy(t, proxyConfig{Args: []string{"--ledger-sink", db.DSN, "--ledger-retain", "0s",
		"--checkpoint-every", "10", "--ledger-max-bytes", "8KiB"}})
	metric := func(name string) float64 {
		_, b := p.adminGet(t, "/metrics")
		return metricValue(b, name)
	}
	rotated := func() int {
		files, err := ledger.Files(p.Ledger)
		if err != nil {
			t.Fatal(err)
		}
		return len(files) - 1
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 30s: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n := sendLoad(t, p, 2, 20); n != 20 {
		t.Fatalf("%d of 20 answered", n)
	}
	until("shipped and rotated files deleted", func() bool {
		return metric("pare_ledger_ship_records_total") >= 40 && metric("pare_ledger_ship_lag_records") == 0 && rotated() == 0
	})

	db.Stop()
	if n := sendLoad(t, p, 2, 30); n != 30 {
		t.Fatalf("%d of 30 answered while the database is down", n)
	}
	if code, body := p.adminGet(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d while the database is down: %s", code, body)
	}
	until("lag and errors reported", func() bool {
		return metric("pare_ledger_ship_lag_records") > 0 && metric("pare_ledger_ship_lag_seconds") > 0 &&
			metric("pare_ledger_ship_errors_total") > 0
	})
	if rotated() == 0 {
		t.Fatal("no rotated file while the database is down: the test would prove nothing about retention")
	}
	held := rotated()
	time.Sleep(300 * time.Millisecond)
	if rotated() < held {
		t.Fatal("a rotated file was deleted while the database could not have it")
	}

	db.Restart()
	until("caught up and shipped files deleted", func() bool {
		return metric("pare_ledger_ship_lag_records") == 0 && metric("pare_ledger_ship_lag_seconds") == 0 && rotated() == 0 &&
			metric("pare_ledger_ship_files_deleted_total") >= float64(held)
	})
	key := pubkey(t, p.StateDir)
	out, errOut, code := runCLI(t, "ledger", "verify", "--pubkey", key, p.Ledger)
	if code != 0 || !strings.Contains(out, "shipped to postgres://127.0.0.1:") {
		t.Fatalf("local verify after retention: %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCLI(t, "ledger", "report", "--subject", "u-1", "--format", "json", p.Ledger)
	if code != 1 || !strings.Contains(errOut, "--dsn") {
		t.Fatalf("a local report from a ledger whose oldest records were shipped away: %d %s", code, errOut)
	}
	p.Stop(t)
	origin, _ := localLines(t, p.Ledger)
	if _, err := os.Stat(ledger.ShippedName(p.Ledger)); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, "ledger", "verify", "--dsn", db.DSN, "--pubkey", key)
	if code != 0 {
		t.Fatalf("verify --dsn: %d %s", code, errOut)
	}
	rows := dbRows(t, db.DSN, origin)
	_, local := localLines(t, p.Ledger)
	for seq, l := range local {
		if !bytes.Equal(rows[seq], l) {
			t.Fatalf("seq %d: the database's line differs from the file's", seq)
		}
	}
	if len(rows) != 100 {
		t.Fatalf("%d records in the database, want 100 (50 requests)", len(rows))
	}
}
