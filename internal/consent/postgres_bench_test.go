package consent

import (
	"context"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/pgtest"
)

// BenchmarkPostgresLookup: what a consent-gated request pays for its lookup
// from the cache (the common case while the listener is up) and from the
// table (after a change, or while the listener is down), against a real
// local PostgreSQL. Compare the two in one run.
func BenchmarkPostgresLookup(b *testing.B) {
	db := pgtest.Start(b)
	db.Exec(PostgresSchema)
	grant(db, "u-1", "marketing", "2026-10-01T10:00:00Z")
	p, err := OpenPostgres(context.Background(), db.DSN, PostgresOptions{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done; p.Close() })
	for !p.isListening() {
		time.Sleep(10 * time.Millisecond)
	}
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.Lookup(context.Background(), "u-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("query", func(b *testing.B) {
		for b.Loop() {
			p.invalidate("u-1")
			if _, err := p.Lookup(context.Background(), "u-1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
