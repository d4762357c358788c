package e2e

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/idptest"
)

// --- Promise 6 with the company's identity provider (--legal-jwks): who
// asks and who approves are tokens the provider signed, verified by the
// policy; a name anyone can type is no approval.

const (
	idpIssuer   = "https://idp.webinar-co.example"
	idpAudience = "pare-legal"
)

func newIDP(t testing.TB, kid string) *idptest.Provider {
	t.Helper()
	p, err := idptest.New(kid, idpIssuer, idpAudience)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func legalJWKSArgs(source string, more ...string) []string {
	return append([]string{"--legal-jwks", source, "--legal-jwt-audience", idpAudience, "--legal-jwt-issuer", idpIssuer}, more...)
}

func TestPromiseLegalIdentityTokens(t *testing.T) {
	t.Parallel()
	idp, stranger := newIDP(t, "idp-1"), newIDP(t, "idp-1") // the stranger signs with the provider's key id
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, idptest.JWKS(idp), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyConfig{Args: legalJWKSArgs(jwks)})
	const annaID, piotrID = "anna.legal@webinar-co.example", "piotr.dpo@webinar-co.example"
	anna, piotr := idp.Token(annaID, nil), idp.Token(piotrID, nil)
	legal := func(requester, approver string) request {
		return legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117", "X-Data-Requester", requester, "X-Legal-Approver", approver)
	}

	for name, approver := range map[string]string{
		"expired":                        idp.Token(piotrID, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}),
		"wrong audience":                 idp.Token(piotrID, map[string]any{"aud": "crm"}),
		"wrong issuer":                   idp.Token(piotrID, map[string]any{"iss": "https://evil.example"}),
		"no expiry":                      idp.Token(piotrID, map[string]any{"exp": nil}),
		"wrong signature":                stranger.Token(piotrID, nil),
		"the requester's own token":      anna,
		"another token of the requester": idp.Token(annaID, map[string]any{"jti": "second-login"}),
	} {
		t.Run(name, func(t *testing.T) {
			refused(t, p, legal(anna, approver), 403, "approver_required")
		})
	}
	// Names, as before the provider: not tokens at all.
	refused(t, p, legal(annaID, piotrID), 400, "bad_request")
	refused(t, p, legal(anna, piotrID), 400, "bad_request")
	// A verified approver beside a requester who is not: refused too.
	refused(t, p, legal(stranger.Token(annaID, nil), piotr), 403, "approver_required")
	refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117", "X-Legal-Approver", piotr), 403, "approver_required")

	id, body := allowed(t, p, legal(anna, piotr))
	if !bytes.Contains(body, []byte(`"reference"`)) {
		t.Errorf("the court received %s", body)
	}
	p.Stop(t)
	recs := readLedger(t, p.Ledger)
	d := kindOf(t, recordsOf(recs, id), "disclosure")
	if d.Requester != annaID || d.Approver != piotrID || d.LegalBasis != "SUBP-2026-0117" {
		t.Errorf("ledger requester %q approver %q basis %q; want the tokens' subjects", d.Requester, d.Approver, d.LegalBasis)
	}
	raw := readFile(t, p.Ledger)
	for _, tok := range []string{anna, piotr} {
		if bytes.Contains(raw, []byte(tok[strings.LastIndexByte(tok, '.')+1:])) || bytes.Contains(raw, []byte(tok[:20])) {
			t.Fatal("a token is in the ledger")
		}
	}
	if logs := p.logs.String(); strings.Contains(logs, anna[:40]) || strings.Contains(logs, piotr[:40]) {
		t.Fatal("a token is in the logs")
	}
}

// jwksService is the identity provider's JWKS endpoint: it serves doc, or
// fails while doc is nil.
type jwksService struct {
	mu  sync.Mutex
	doc []byte
}

func (s *jwksService) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.doc == nil {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(s.doc)
}

func (s *jwksService) set(doc []byte) {
	s.mu.Lock()
	s.doc = doc
	s.mu.Unlock()
}

// The provider's keys from its URL: while it has never answered, legal
// requests are refused 503 identity_unavailable and everything else goes
// on; once it answers they pass; a rotation is followed.
func TestPromiseLegalIdentityProviderDown(t *testing.T) {
	t.Parallel()
	old, rotated := newIDP(t, "k-2026-01"), newIDP(t, "k-2026-02")
	svc := &jwksService{}
	hs := httptest.NewServer(svc)
	t.Cleanup(hs.Close)
	p := startProxy(t, proxyConfig{Args: legalJWKSArgs(hs.URL+"/.well-known/jwks.json", "--legal-jwks-refresh", "1s")})
	legal := func(idp *idptest.Provider) request {
		return legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117",
			"X-Data-Requester", idp.Token("anna", nil), "X-Legal-Approver", idp.Token("piotr", nil))
	}
	refused(t, p, legal(old), 503, "identity_unavailable")
	allowed(t, p, ticketRequest(t))
	if _, m := p.adminGet(t, "/metrics"); metricValue(m, "pare_legal_jwks_keys") != 0 || metricValue(m, "pare_legal_jwks_refresh_failures_total") < 1 {
		t.Errorf("metrics while the provider is down:\n%s", grepLines(m, "pare_legal_"))
	}
	if code, _ := p.adminGet(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d: the sidecar serves everything but legal requests", code)
	}

	svc.set(idptest.JWKS(old))
	waitStatus(t, p, func() request { return legal(old) }, http.StatusOK)
	if _, m := p.adminGet(t, "/metrics"); metricValue(m, "pare_legal_jwks_keys") != 1 {
		t.Errorf("metrics with keys:\n%s", grepLines(m, "pare_legal_"))
	}
	svc.set(idptest.JWKS(rotated))
	waitStatus(t, p, func() request { return legal(rotated) }, http.StatusOK)
	refused(t, p, legal(old), 403, "approver_required")
}

// waitStatus sends mk() until the proxy answers status (the keys are
// refreshed in the background), failing after a generous deadline.
func waitStatus(t *testing.T, p *proxyProc, mk func() request, status int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp := p.do(t, mk())
		if resp.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d %s, want %d", resp.Status, resp.Body, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func grepLines(b []byte, prefix string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
