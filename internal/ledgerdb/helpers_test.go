package ledgerdb

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pgtest"
)

func testKey(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := ledger.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newDB creates a database of its own on srv and returns its DSN.
func newDB(t testing.TB, srv *pgtest.Server, name string) string {
	t.Helper()
	// Not srv.Exec: it fails the test that started the server, and
	// subtests share it.
	execSQL(t, srv.DSN, "CREATE DATABASE "+name)
	return strings.Replace(srv.DSN, "/postgres?", "/"+name+"?", 1)
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func execSQL(t testing.TB, dsn, sql string, args ...any) int64 {
	t.Helper()
	c := connect(t, dsn)
	tag, err := c.Exec(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	c.Close(context.Background())
	return tag.RowsAffected()
}

// fixture is one sidecar's ledger in a temp dir, rotated every few
// records, checkpointed every 5.
type fixture struct {
	t      testing.TB
	path   string
	signer note.Signer
	l      *ledger.Ledger
	clock  *clock
}

// clock hands out record times an hour apart from the end of October,
// so a few hundred records span several monthly partitions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Hour + 1234567*time.Nanosecond) // nanoseconds a timestamptz drops
	return c.t
}

func newFixture(t testing.TB, s note.Signer, maxBytes int64) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "ledger.jsonl"), signer: s,
		clock: &clock{t: time.Date(2026, 10, 28, 0, 0, 0, 0, time.UTC)}}
	f.open(maxBytes)
	t.Cleanup(func() {
		if f.l != nil {
			_ = f.l.Close()
		}
	})
	return f
}

func (f *fixture) open(maxBytes int64) {
	f.t.Helper()
	l, err := ledger.Open(f.path, ledger.Options{Signer: f.signer, MaxBytes: maxBytes, CheckpointEvery: 5,
		Logger: quiet(), Now: f.clock.now})
	if err != nil {
		f.t.Fatal(err)
	}
	f.l = l
}

func (f *fixture) close() {
	f.t.Helper()
	if err := f.l.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.l = nil
}

// record is the i-th record of a test: disclosures to a few vendors for
// a few subjects, each followed by its outcome.
func testRecord(i int, subject string) []*ledger.Record {
	vendors := []string{"stripe", "zendesk", "mailchimp"}
	v := vendors[i%len(vendors)]
	id := fmt.Sprintf("d-%s-%d", subject, i)
	return []*ledger.Record{
		{Kind: ledger.KindDisclosure, DecisionID: id, Vendor: v, Recipient: strings.ToUpper(v[:1]) + v[1:],
			Host: "api." + v + ".example", Method: "POST", Path: "/v1/x", Purpose: "support", Subject: subject,
			Service: "billing", Revision: "rev", FieldsSent: []string{"email", fmt.Sprintf("field%d", i%4)}, Status: 200},
		{Kind: ledger.KindOutcome, DecisionID: id, Vendor: v, Purpose: "support", Subject: subject, Service: "billing",
			Revision: "rev", Outcome: "200", Status: 200},
	}
}

// add appends n requests' records (2 records each) for subjects u-0..u-6.
func (f *fixture) add(from, n int) {
	f.t.Helper()
	for i := from; i < from+n; i++ {
		for _, r := range testRecord(i, fmt.Sprintf("u-%d", i%7)) {
			if err := f.l.Append(context.Background(), r); err != nil {
				f.t.Fatal(err)
			}
		}
	}
}

// lines are the fixture's records as the files hold them, by seq.
func (f *fixture) lines() map[uint64][]byte {
	f.t.Helper()
	files, err := ledger.Files(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[uint64][]byte{}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			r, err := parseRecord(line)
			if err != nil {
				f.t.Fatal(err)
			}
			out[r.seq] = r.line
		}
	}
	return out
}

// shipper runs a Shipper for f until the test ends (or stop is called).
type runningShipper struct {
	*Shipper
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runningShipper) stop() {
	r.cancel()
	<-r.done
}

func (f *fixture) ship(t testing.TB, dsn string, mod func(*Options)) *runningShipper {
	t.Helper()
	opt := Options{Path: f.path, DSN: dsn, Origin: f.l.Origin(), Head: f.l.Head, Signer: f.signer, Retain: -1,
		Poll: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Service: "billing", Logger: quiet()}
	if mod != nil {
		mod(&opt)
	}
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningShipper{Shipper: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// waitShipped waits until the database holds every durable record of f
// and its latest checkpoint.
func (f *fixture) waitShipped(t testing.TB, dsn string) {
	t.Helper()
	head, hash := f.l.Head()
	cp := f.l.Checkpoint().Size
	c := connect(t, dsn)
	defer c.Close(context.Background())
	deadline := time.Now().Add(60 * time.Second)
	for {
		var seq, cps int64
		var h string
		err := c.QueryRow(context.Background(), `SELECT shipped_seq, shipped_hash, checkpoint_size FROM pare_ledger_instances WHERE origin = $1`,
			f.l.Origin()).Scan(&seq, &h, &cps)
		if err == nil && uint64(seq) == head && h == hash && cps >= cp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not shipped within 60s: database at seq %d (checkpoint %d, err %v), ledger at %d (checkpoint %d)", seq, cps, err, head, cp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dbLines are the lines the database holds for origin, by seq (a second
// row for a seq fails the test).
func dbLines(t testing.TB, dsn, origin string) map[uint64][]byte {
	t.Helper()
	c := connect(t, dsn)
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), `SELECT seq, line FROM pare_ledger_records WHERE origin = $1`, origin)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64][]byte{}
	for rows.Next() {
		var seq int64
		var line []byte
		if err := rows.Scan(&seq, &line); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[uint64(seq)]; dup {
			t.Fatalf("seq %d twice in the database", seq)
		}
		out[uint64(seq)] = line
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameLines fails unless the database holds exactly the local records.
func sameLines(t testing.TB, local, db map[uint64][]byte) {
	t.Helper()
	if len(local) != len(db) {
		t.Fatalf("%d records locally, %d in the database", len(local), len(db))
	}
	for seq, l := range local {
		if !bytes.Equal(l, db[seq]) {
			t.Fatalf("seq %d differs:\nlocal %s\ndb    %s", seq, l, db[seq])
		}
	}
}

func verifyDB(t testing.TB, dsn string, vs ...note.Verifier) *Result {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(context.Background(), cfg, VerifyOptions{Verifiers: vs})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}
