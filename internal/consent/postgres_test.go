package consent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/pgtest"
)

// pgSource starts a real PostgreSQL with the schema and a Postgres source
// listening on it.
func pgSource(t *testing.T, opt PostgresOptions) (*pgtest.Server, *Postgres) {
	t.Helper()
	db := pgtest.Start(t)
	db.Exec(PostgresSchema)
	p := openPG(t, db, opt)
	return db, p
}

func openPG(t *testing.T, db *pgtest.Server, opt PostgresOptions) *Postgres {
	t.Helper()
	p, err := OpenPostgres(context.Background(), db.DSN, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.Close() })
	waitUntil(t, "the listener is listening", func() bool { return p.isListening() })
	return p
}

func (p *Postgres) isListening() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listening
}

func (p *Postgres) queryCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queries
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func grant(db *pgtest.Server, subject, purpose, at string) {
	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time, evidence_action, evidence_where, evidence_policy_version)
		VALUES ($1, $2, 'granted', $3, 'checked ''Send me product news''', 'signup form', '2026-09')`, subject, purpose, at)
}

func withdraw(db *pgtest.Server, subject, purpose, at string) {
	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time, evidence_action)
		VALUES ($1, $2, 'withdrawn', $3, 'clicked unsubscribe')`, subject, purpose, at)
}

func pgStatus(t *testing.T, p *Postgres, subject, purpose string) string {
	t.Helper()
	cs, err := p.Lookup(context.Background(), subject)
	if err != nil {
		t.Fatalf("lookup %s: %v", subject, err)
	}
	for _, c := range cs {
		if c.Purpose == purpose {
			return c.Status
		}
	}
	return "none"
}

// TestPostgresNotify: answers are cached, and a withdrawal committed in the
// table takes effect at once, by notification, although the cache's TTL is
// an hour.
func TestPostgresNotify(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t)
	db.Exec(PostgresSchema)
	// Before the source starts, so that no late notification of these
	// inserts drops what the test expects to be cached.
	grant(db, "u-1", "marketing", "2026-10-01T10:00:00Z")
	grant(db, "u-2", "marketing", "2026-10-01T10:00:00Z")
	p := openPG(t, db, PostgresOptions{TTL: time.Hour})

	if got := pgStatus(t, p, "u-1", "marketing"); got != StatusGranted {
		t.Fatalf("u-1 marketing %s, want granted", got)
	}
	cs, _ := p.Lookup(context.Background(), "u-1")
	if cs[0].Evidence.Action != "checked 'Send me product news'" || !cs[0].Time.Equal(time.Date(2026, 10, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("consent %+v", cs[0])
	}
	pgStatus(t, p, "u-2", "marketing")
	n := p.queryCount()
	pgStatus(t, p, "u-1", "marketing")
	pgStatus(t, p, "u-2", "marketing")
	if p.queryCount() != n {
		t.Fatal("cached answers were queried again")
	}

	withdraw(db, "u-1", "marketing", "2026-11-01T10:00:00Z")
	waitUntil(t, "the withdrawal seen", func() bool { return pgStatus(t, p, "u-1", "marketing") == StatusWithdrawn })
	n = p.queryCount()
	pgStatus(t, p, "u-2", "marketing")
	if p.queryCount() != n {
		t.Fatal("u-1's change dropped u-2's cached answer")
	}

	// Unknown, empty and absurd subjects.
	if cs, err := p.Lookup(context.Background(), "nobody"); err != nil || cs == nil || len(cs) != 0 {
		t.Fatalf("unknown subject: %v %v", cs, err)
	}
	if _, err := p.Lookup(context.Background(), strings.Repeat("x", 2000)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("long subject: %v", err)
	}

	// TRUNCATE notifies with an empty payload: everything is dropped.
	db.Exec("TRUNCATE pare_consents")
	waitUntil(t, "the truncation seen", func() bool { return pgStatus(t, p, "u-2", "marketing") == "none" })
}

// TestPostgresListenerLost: while the listener is down, notifications are
// lost, so nothing may be answered from the cache: a withdrawal committed
// meanwhile must be seen.
func TestPostgresListenerLost(t *testing.T) {
	t.Parallel()
	db, p := pgSource(t, PostgresOptions{TTL: time.Hour, RetryDelay: time.Hour})
	grant(db, "u-1", "marketing", "2026-10-01T10:00:00Z")
	if got := pgStatus(t, p, "u-1", "marketing"); got != StatusGranted {
		t.Fatalf("u-1 marketing %s", got)
	}
	db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", ListenerApplicationName)
	withdraw(db, "u-1", "marketing", "2026-11-01T10:00:00Z")
	waitUntil(t, "the withdrawal seen without the listener", func() bool { return pgStatus(t, p, "u-1", "marketing") == StatusWithdrawn })
	if p.isListening() {
		t.Fatal("the listener should still be down (RetryDelay 1h)")
	}
	n := p.queryCount()
	pgStatus(t, p, "u-1", "marketing")
	pgStatus(t, p, "u-1", "marketing")
	if p.queryCount() != n+2 {
		t.Fatalf("%d queries for 2 lookups without a listener, want 2 (no caching)", p.queryCount()-n)
	}
}

// TestPostgresDown: with the database down, lookups fail with
// ErrUnavailable (the proxy refuses consent-gated requests), and once it is
// back the listener reconnects and changes are picked up again.
func TestPostgresDown(t *testing.T) {
	t.Parallel()
	db, p := pgSource(t, PostgresOptions{TTL: time.Hour, ErrorTTL: -1, Timeout: time.Second, RetryDelay: 100 * time.Millisecond})
	grant(db, "u-1", "marketing", "2026-10-01T10:00:00Z")
	pgStatus(t, p, "u-1", "marketing")

	db.Stop()
	waitUntil(t, "the listener noticed", func() bool { return !p.isListening() })
	if _, err := p.Lookup(context.Background(), "u-1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lookup with the database down: %v, want ErrUnavailable (no stale cached grant)", err)
	}

	db.Restart()
	waitUntil(t, "the listener back", func() bool { return p.isListening() })
	if got := pgStatus(t, p, "u-1", "marketing"); got != StatusGranted {
		t.Fatalf("after restart %s", got)
	}
	withdraw(db, "u-1", "marketing", "2026-11-01T10:00:00Z")
	waitUntil(t, "the withdrawal seen after the restart", func() bool { return pgStatus(t, p, "u-1", "marketing") == StatusWithdrawn })
}

// TestPostgresRefusesBadRows: a row that could not be accounted for fails
// the whole lookup, as in the HTTP source.
func TestPostgresRefusesBadRows(t *testing.T) {
	t.Parallel()
	db, p := pgSource(t, PostgresOptions{})
	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time) VALUES ('u-1', 'marketing', 'granted', now())`)
	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time, evidence_action) VALUES ('u-2', 'marketing', 'pending', now(), 'x')`)
	for subject, want := range map[string]string{"u-1": "evidence.action is required", "u-2": `status must be "granted" or "withdrawn"`} {
		_, err := p.Lookup(context.Background(), subject)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrUnavailable saying %q", subject, err, want)
		}
	}
}

func TestOpenPostgresErrors(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t)
	if _, err := OpenPostgres(context.Background(), db.DSN, PostgresOptions{}); err == nil || !strings.Contains(err.Error(), "PostgresSchema") {
		t.Fatalf("no table: %v", err)
	}
	_, err := OpenPostgres(context.Background(), "postgres://pare:hunter2@[bad", PostgresOptions{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad DSN: %v (must not echo the password)", err)
	}
}
