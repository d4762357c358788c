package ledgerdb

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pgtest"
)

// ShipSeveralInstances: three ledgers ship at once into one database
// while they are written; the database ends up holding every record of
// each, byte for byte, once, with their checkpoints, across monthly
// partitions, and central verification passes with the ledgers' keys.
func testShipSeveralInstances(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "fleet")
	s, v := testKey(t)
	var fs []*fixture
	for range 3 {
		f := newFixture(t, s, 3000)
		fs = append(fs, f)
		f.ship(t, dsn, nil)
	}
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 60; k += 10 {
				f.add(i*1000+k, 10)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, f := range fs {
		f.waitShipped(t, dsn)
		sameLines(t, f.lines(), dbLines(t, dsn, f.l.Origin()))
	}
	res := verifyDB(t, dsn, v)
	if !res.OK() || !res.Signed || len(res.Instances) != 3 || res.Records != 3*120 {
		t.Fatalf("verify: %+v", res)
	}
	for _, in := range res.Instances {
		if in.Checked < 20 || in.FirstSeq != 1 || in.LastSeq != 120 {
			t.Errorf("instance %+v", in)
		}
	}
	var parts int
	c := connect(t, dsn)
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_inherits WHERE inhparent = 'pare_ledger_records'::regclass`).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts < 3 { // October, November, December (+ default, + ahead)
		t.Errorf("%d partitions", parts)
	}
	var inDefault int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pare_ledger_records_default`).Scan(&inDefault); err != nil || inDefault != 0 {
		t.Errorf("%d records in the default partition (%v): each month should have its own", inDefault, err)
	}
}

// ShipResumes: a shipper stopped mid-way (as a sidecar killed) and a
// new one started on the same ledger go on from the database's head: no
// record twice, none missing.
func testShipResumes(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "resume")
	s, v := testKey(t)
	f := newFixture(t, s, 3000)
	f.add(0, 30)
	r := f.ship(t, dsn, func(o *Options) { o.Batch = 7 })
	deadline := time.Now().Add(30 * time.Second)
	for r.Stats().Shipped < 20 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r.stop()
	f.add(30, 30)
	// The ledger restarts too, as after kill -9 of the sidecar.
	f.close()
	f.open(3000)
	f.add(60, 5)
	f.ship(t, dsn, func(o *Options) { o.Batch = 7 })
	f.waitShipped(t, dsn)
	sameLines(t, f.lines(), dbLines(t, dsn, f.l.Origin()))
	if res := verifyDB(t, dsn, v); !res.OK() {
		t.Fatalf("verify: %v", res.Problems)
	}
}

// ShipThroughDatabaseRestart: PostgreSQL stops while records are
// written; the shipper reports its lag meanwhile, and catches up when the
// database is back.
func testShipThroughDatabaseRestart(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "restart")
	s, v := testKey(t)
	f := newFixture(t, s, 3000)
	r := f.ship(t, dsn, nil)
	f.add(0, 20)
	f.waitShipped(t, dsn)
	srv.Stop()
	f.add(20, 20)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := r.Stats()
		if st.Errors > 0 && st.Durable > st.Shipped && st.LagSeconds > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lag reported while the database is down: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart()
	f.add(40, 5)
	f.waitShipped(t, dsn)
	sameLines(t, f.lines(), dbLines(t, dsn, f.l.Origin()))
	if res := verifyDB(t, dsn, v); !res.OK() {
		t.Fatalf("verify: %v", res.Problems)
	}
	if st := r.Stats(); st.LagSeconds != 0 || st.Shipped != st.Durable || st.Records != 90 {
		t.Errorf("after catching up: %+v", st)
	}
}

// ShipStops: what needs a person stops shipping (and retention): the
// database holding another history under the origin, or local records
// changed after they were written. Nothing more is shipped.
func testShipStops(t *testing.T, srv *pgtest.Server) {
	s, _ := testKey(t)
	cases := []struct {
		name   string
		before func(t *testing.T, f *fixture, dsn string)
		want   string
		rows   int // rows once stopped: what was shipped, and nothing that does not chain
	}{
		{"the database's head is another history", func(t *testing.T, f *fixture, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_instances SET shipped_hash = repeat('0', 64)`)
		}, "fork", 20},
		{"the database is ahead of the files", func(t *testing.T, f *fixture, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_instances SET shipped_seq = shipped_seq + 50`)
		}, "fork", 20},
		{"a local record changed before it was shipped", func(t *testing.T, f *fixture, dsn string) {
			f.close()
			b, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitAfter(string(b), "\n")
			lines[len(lines)-4] = strings.Replace(lines[len(lines)-4], `"u-`, `"x-`, 1)
			if err := os.WriteFile(f.path, []byte(strings.Join(lines, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			f.l = nil
		}, "does not follow on", 37}, // record 38 was changed: neither it nor what follows is shipped
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := newDB(t, srv, "stops"+string(rune('a'+i)))
			f := newFixture(t, s, 1<<20)
			f.add(0, 10)
			r := f.ship(t, dsn, nil)
			f.waitShipped(t, dsn)
			r.stop()
			f.add(10, 10)
			origin := f.l.Origin()
			tc.before(t, f, dsn)
			opt := Options{Path: f.path, DSN: dsn, Origin: origin, Signer: s, Retain: 0, Poll: 20 * time.Millisecond,
				RetryMax: 100 * time.Millisecond, Logger: quiet()}
			sh, err := New(opt)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); sh.Run(ctx) }()
			deadline := time.Now().Add(20 * time.Second)
			for (sh.Stats().Stopped == "" || len(dbLines(t, dsn, origin)) < tc.rows) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // a few more attempts, which must ship nothing
			cancel()
			<-done
			st := sh.Stats()
			if !strings.Contains(st.Stopped, tc.want) {
				t.Fatalf("stopped %q, want %q", st.Stopped, tc.want)
			}
			lines := dbLines(t, dsn, origin)
			if len(lines) != tc.rows {
				t.Errorf("%d rows after stopping, want %d", len(lines), tc.rows)
			}
			for seq := range lines {
				if seq > uint64(tc.rows) {
					t.Errorf("seq %d shipped", seq)
				}
			}
			t.Logf("stopped: %s", st.Stopped)
		})
	}
}

func testMigrate(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "migrate")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			_, err = Migrate(context.Background(), c)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	c := connect(t, dsn)
	if err := CheckSchema(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pare_ledger_schema`).Scan(&n); err != nil || n != SchemaVersion {
		t.Fatalf("%d versions recorded (%v), want %d", n, err, SchemaVersion)
	}
	execSQL(t, dsn, `INSERT INTO pare_ledger_schema (version) VALUES ($1)`, SchemaVersion+1)
	if _, err := Migrate(context.Background(), c); !errors.Is(err, ErrSchemaNewer) {
		t.Errorf("migrate under a newer schema: %v", err)
	}
	if err := CheckSchema(context.Background(), c); !errors.Is(err, ErrSchemaNewer) {
		t.Errorf("check a newer schema: %v", err)
	}
	empty := newDB(t, srv, "empty")
	if err := CheckSchema(context.Background(), connect(t, empty)); err == nil || !strings.Contains(err.Error(), "no pare ledger schema") {
		t.Errorf("check an empty database: %v", err)
	}
}

// Retention: shipped rotated files are deleted, each after the signed
// marker that accounts for it; the ledger's own verify passes on what
// remains; nothing unshipped is ever deleted, and a file younger than the
// retention time is kept.
func testRetention(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "retention")
	s, v := testKey(t)
	f := newFixture(t, s, 2500)
	f.add(0, 40)
	before, _ := ledger.Files(f.path)
	if len(before) < 5 {
		t.Fatalf("want several rotated files, have %v", before)
	}
	srv.Stop()
	r := f.ship(t, dsn, func(o *Options) { o.Retain = 0 })
	time.Sleep(300 * time.Millisecond)
	if files, _ := ledger.Files(f.path); len(files) != len(before) {
		t.Fatalf("files deleted while the database is down: %v", files)
	}
	srv.Restart()
	f.waitShipped(t, dsn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := ledger.Files(f.path)
		if len(files) == 1 && files[0] == f.path {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated files not deleted once shipped: %v", files)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Stats().FilesDeleted != uint64(len(before)-1) {
		t.Errorf("stats %+v", r.Stats())
	}
	audit := func() *ledger.Evidence {
		files, _ := ledger.Files(f.path)
		marker, err := os.ReadFile(ledger.ShippedName(f.path))
		if err != nil {
			t.Fatal(err)
		}
		res, ev, err := ledger.Audit(files, ledger.AuditOptions{Verifiers: []note.Verifier{v}, Log: ledger.CheckpointLogName(f.path), Shipped: marker})
		if err != nil || !res.OK {
			t.Fatalf("audit: %v %+v", err, res.Bad)
		}
		return ev
	}
	if ev := audit(); !ev.OK || ev.Shipped == nil || !strings.HasPrefix(ev.Shipped.Sink, "postgres://127.0.0.1:") {
		t.Fatalf("local verify after retention: %+v", ev)
	}
	// Files younger than Retain stay.
	r.stop()
	f.add(40, 40)
	kept, _ := ledger.Files(f.path)
	f.ship(t, dsn, func(o *Options) { o.Retain = time.Hour })
	f.waitShipped(t, dsn)
	time.Sleep(300 * time.Millisecond)
	if files, _ := ledger.Files(f.path); len(files) != len(kept) {
		t.Errorf("files younger than the retention time deleted: %v, had %v", files, kept)
	}
	if ev := audit(); !ev.OK {
		t.Fatalf("local verify: %+v", ev)
	}
	if res := verifyDB(t, dsn, v); !res.OK() {
		t.Fatalf("verify: %v", res.Problems)
	}
}

// TwoShippersOneLedger: two shippers of the same ledger (a sidecar
// restarted while the old process still drains, say) never ship a record
// twice: each transaction moves the head only from where it found it.
func testTwoShippersOneLedger(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "twoshippers")
	s, v := testKey(t)
	f := newFixture(t, s, 3000)
	small := func(o *Options) { o.Batch = 3 }
	a, b := f.ship(t, dsn, small), f.ship(t, dsn, small)
	for i := 0; i < 60; i += 5 {
		f.add(i, 5)
		time.Sleep(3 * time.Millisecond)
	}
	f.waitShipped(t, dsn)
	sameLines(t, f.lines(), dbLines(t, dsn, f.l.Origin()))
	if res := verifyDB(t, dsn, v); !res.OK() {
		t.Fatalf("verify: %v", res.Problems)
	}
	if a.Stats().Records+b.Stats().Records != 120 {
		t.Errorf("shipped %d + %d records of 120", a.Stats().Records, b.Stats().Records)
	}
	t.Logf("a shipped %d, b %d; %d + %d conflicts", a.Stats().Records, b.Stats().Records, a.Stats().Errors, b.Stats().Errors)
}
