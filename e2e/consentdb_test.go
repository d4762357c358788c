package e2e

import (
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/pgtest"
)

// TestPromiseConsentDatabase: promise 2 with the consents in a real
// PostgreSQL table (--consents-dsn). A withdrawal committed in the table is
// enforced at once (the cache TTL here is an hour: only the notification
// can explain it), and with the database down consent-gated requests are
// refused 503 while others go on.
func TestPromiseConsentDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.Start(t)
	db.Exec(consent.PostgresSchema)
	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time, evidence_action, evidence_where)
		VALUES ('u-123', 'marketing', 'granted', '2026-10-01T10:00:00Z', 'checked ''Send me product news''', 'signup form /register')`)
	p := startProxy(t, proxyConfig{Args: []string{"--consents-dsn", db.DSN, "--consent-ttl", "1h"}})

	allowed(t, p, memberRequest(t, "u-123"))
	refused(t, p, memberRequest(t, "u-456"), 403, "consent_required")

	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time, evidence_action, evidence_where)
		VALUES ('u-123', 'marketing', 'withdrawn', '2026-11-01T10:00:00Z', 'clicked unsubscribe', 'newsletter footer')`)
	untilRefused(t, p, memberRequest(t, "u-123"), 403, "consent_required")

	db.Stop()
	untilRefused(t, p, memberRequest(t, "u-456"), 503, "consent_unavailable")
	refused(t, p, memberRequest(t, "u-123"), 503, "consent_unavailable")
	allowed(t, p, paymentRequest(t)) // needs no consent

	db.Restart()
	db.Exec(`INSERT INTO pare_consents (subject, purpose, status, time, evidence_action, evidence_where)
		VALUES ('u-456', 'marketing', 'granted', '2026-11-02T10:00:00Z', 'checked ''Send me product news''', 'settings')`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		p.Stub.Reset()
		resp := p.do(t, memberRequest(t, "u-456"))
		if resp.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("u-456's grant not enforced after the database came back: %d %s", resp.Status, resp.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	refused(t, p, memberRequest(t, "u-123"), 403, "consent_required")
}

// untilRefused sends r until it is refused with status and code (a change
// reaches the sidecar by notification, a few milliseconds after the commit).
// Whatever is allowed meanwhile must be allowed legitimately: the test only
// waits for the change, it does not excuse a late one beyond 10s.
func untilRefused(t testing.TB, p *proxyProc, r request, status int, code string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.Stub.Reset()
		resp := p.do(t, r)
		if resp.Status == status {
			wantRefusal(t, resp, status, code)
			wantNothingReceived(t, p.Stub)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not refused %d %s within 10s: %d %s", status, code, resp.Status, resp.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
