package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/vendorstub"
)

// A vendor whose certificate no trusted CA signed is not a vendor: the TLS
// handshake fails, the app gets 502 and nothing — not even headers — was
// sent to the impostor.
func TestUpstreamCertificateNotTrusted(t *testing.T) {
	t.Parallel()
	impostor, err := vendorstub.Start([]string{"webinarco.zendesk.com"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = impostor.Close() })
	p := startProxy(t, proxyConfig{Resolve: map[string]string{"webinarco.zendesk.com": impostor.Addr}})
	ref := wantRefusal(t, p.do(t, ticketRequest(t)), 502, "vendor_unreachable")
	if ref.DecisionID == "" {
		t.Error("no decision id")
	}
	wantNothingReceived(t, impostor)
}

// Rotation by size keeps one chain across files: verify and query read the
// rotated files with the current one.
func TestLedgerRotationKeepsChain(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Args: []string{"--ledger-max-bytes", "4KiB"}})
	const n = 30
	for i := 0; i < n; i++ {
		wantOK(t, p.do(t, ticketRequest(t)))
	}
	p.Stop(t)
	files, _ := filepath.Glob(p.Ledger + ".*")
	var rotated []string
	for _, f := range files {
		// The lock and the checkpoint log live beside the rotated files.
		if !strings.HasSuffix(f, ".lock") && !strings.HasSuffix(f, ".checkpoints") {
			rotated = append(rotated, f)
		}
	}
	if len(rotated) < 2 {
		t.Fatalf("%d rotated files, want several with --ledger-max-bytes 4KiB", len(rotated))
	}
	for _, f := range append(rotated, p.Ledger) {
		if st, err := os.Stat(f); err != nil || st.Size() > 4<<10 {
			t.Errorf("%s: %v, size over 4 KiB", f, err)
		}
	}
	out, stderr, code := runCLI(t, "ledger", "verify", p.Ledger)
	if code != 0 || !strings.Contains(out, "chain intact") {
		t.Fatalf("ledger verify: exit %d\n%s%s", code, out, stderr)
	}
	out, _, code = runCLI(t, "ledger", "query", "--subject", "u-123", "--json", p.Ledger)
	if code != 0 || strings.Count(out, `"kind":"disclosure"`) != n {
		t.Fatalf("ledger query: exit %d, %d disclosures, want %d", code, strings.Count(out, `"kind":"disclosure"`), n)
	}
}

// A policy that returns a malformed decision (a misspelled key) is a policy
// bug: 503 policy_error, and nothing is sent — never a partial send.
func TestMalformedDecisionIs503(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rego := "package egress\n\ndecision := {\"allow\": true, \"vendor\": \"zendesk\", \"fieldz\": [\"ticket\"]}\n"
	if err := os.WriteFile(filepath.Join(dir, "egress.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyConfig{Policies: dir})
	ref := wantRefusal(t, p.do(t, ticketRequest(t)), 503, "policy_error")
	if !strings.Contains(ref.Reason, `unknown key "fieldz"`) {
		t.Errorf("reason %q does not name the bad key", ref.Reason)
	}
	wantNothingReceived(t, p.Stub)
}

// Header size is bounded (64 KiB by default): an oversized header block is
// answered 431 by the server before any decision, and nothing is sent.
func TestHeaderTooLarge(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	r := ticketRequest(t)
	r.Header = append(r.Header, [2]string{"X-Padding", strings.Repeat("a", 100<<10)})
	if got := p.do(t, r); got.Status != 431 {
		t.Fatalf("status %d, want 431", got.Status)
	}
	wantNothingReceived(t, p.Stub)
}
