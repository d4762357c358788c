package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/bundleserver"
	"github.com/pare-dev/pare/internal/ledger"
)

// writeKeyPair writes an ECDSA key pair as PEM files, as an operator keeps
// them: the private key for CI, the public key for every sidecar.
func writeKeyPair(t testing.TB, dir, name string) (priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

var builtRevision = regexp.MustCompile(`: revision ([0-9a-f]{64}), `)

// buildBundle runs `proxy bundle build` and returns the bundle and its revision.
func buildBundle(t testing.TB, policies, key, out string) ([]byte, string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, "bundle", "build", policies, "--signing-key", key, "-o", out, "--source-revision", "e2e")
	if code != 0 {
		t.Fatalf("proxy bundle build %s: exit %d\n%s%s", policies, code, stdout, stderr)
	}
	m := builtRevision.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("proxy bundle build printed no revision: %q", stdout)
	}
	return readFile(t, out), m[1]
}

// policiesWithoutTests copies the policies without their Rego tests, which
// pin the bundled contracts' fields, so that a test can change a contract.
func policiesWithoutTests(t testing.TB) string {
	t.Helper()
	dir := copyPolicies(t)
	tests, _ := filepath.Glob(filepath.Join(dir, "*_test.rego"))
	for _, f := range tests {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func editFile(t testing.TB, path, old, new string) {
	t.Helper()
	b := string(readFile(t, path))
	if !strings.Contains(b, old) {
		t.Fatalf("%s no longer contains %q; update this test", path, old)
	}
	writeAtomic(t, path, []byte(strings.Replace(b, old, new, 1)))
}

// TestBundleFleet runs the real binary on a signed bundle from a real bundle
// server: the bundle built by `proxy bundle build` becomes the policy (its
// revision in /debug/policy, pare_policy_info and the ledger), a new bundle
// is picked up and changes what the vendor receives, a wrongly signed
// bundle is refused and the policy in force stays, and a restart while the
// bundle server is down comes up on the persisted bundle.
func TestBundleFleet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, pub := writeKeyPair(t, dir, "ci")
	otherKey, _ := writeKeyPair(t, dir, "attacker")

	a, revA := buildBundle(t, filepath.Join(repoRoot, "policies"), key, filepath.Join(dir, "a.tar.gz"))
	polB := policiesWithoutTests(t)
	editFile(t, filepath.Join(polB, "contracts", "zendesk.yaml"), "        - ticket/priority\n", "")
	b, revB := buildBundle(t, polB, key, filepath.Join(dir, "b.tar.gz"))
	// C would send Zendesk the requester's phone: signed with a key the
	// sidecars do not trust, it must never be enforced.
	polC := policiesWithoutTests(t)
	editFile(t, filepath.Join(polC, "contracts", "zendesk.yaml"), "        - ticket/priority\n", "        - ticket/priority\n        - ticket/requester/phone\n")
	editFile(t, filepath.Join(polC, "contracts", "zendesk.yaml"), "contact: [ticket/requester/email]", "contact: [ticket/requester/email, ticket/requester/phone]")
	c, revC := buildBundle(t, polC, otherKey, filepath.Join(dir, "c.tar.gz"))
	if revA == revB || revB == revC {
		t.Fatal("the three policies must differ")
	}

	srv, err := bundleserver.Start("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.Set(a)
	bundleDir := filepath.Join(dir, "persisted")
	args := []string{"--bundle", srv.URL, "--bundle-key", pub, "--bundle-dir", bundleDir,
		"--bundle-long-poll", "20s", "--bundle-min-delay", "1s", "--bundle-max-delay", "1s"}
	stub := startStub(t)
	p := startProxy(t, proxyConfig{Stub: stub, Args: args})

	// A is enforced, and named the same everywhere.
	if got := p.revision(t); got != revA {
		t.Fatalf("/debug/policy revision %s, want the bundle's %s", got, revA)
	}
	_, exp := p.adminGet(t, "/metrics")
	if v := metricValue(exp, "pare_policy_info", `revision="`+revA+`"`); v != 1 {
		t.Fatalf("pare_policy_info{revision=A} = %v", v)
	}
	sendTicket := func(wantPriority bool, wantRev string) {
		t.Helper()
		stub.Reset()
		id := wantOK(t, p.do(t, ticketRequest(t)))
		got := onlyReceived(t, stub)
		if has := strings.Contains(string(got.Body), `"priority"`); has != wantPriority {
			t.Fatalf("priority sent: %v, want %v (revision %s)\n%s", has, wantPriority, wantRev[:12], got.Body)
		}
		if strings.Contains(string(got.Body), "+48 601") {
			t.Fatalf("the phone number left: %s", got.Body)
		}
		recs := waitLedger(t, p.Ledger, func(rs []ledger.Record) bool { return len(recordsOf(rs, id)) > 0 })
		if rec := kindOf(t, recordsOf(recs, id), ledger.KindDisclosure); rec.Revision != wantRev {
			t.Fatalf("ledger revision %s, want %s", rec.Revision, wantRev)
		}
	}
	sendTicket(true, revA)

	// B is published: picked up (long polling: at once), and enforced.
	srv.Set(b)
	if got := p.waitRevisionNot(t, revA); got != revB {
		t.Fatalf("revision %s after publishing B, want %s", got, revB)
	}
	sendTicket(false, revB)
	code, body := p.adminGet(t, "/debug/bundle")
	var st struct {
		Revision string         `json:"revision"`
		Metadata map[string]any `json:"metadata"`
		ETag     string         `json:"etag"`
	}
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.Revision != revB || st.ETag == "" || st.Metadata["source_revision"] != "e2e" {
		t.Fatalf("/debug/bundle %d %s", code, body)
	}

	// C, wrongly signed: refused, counted, logged; B stays.
	srv.Set(c)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, exp := p.adminGet(t, "/metrics")
		if metricValue(exp, "pare_policy_bundle_failures_total", `reason="invalid"`) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wrongly signed bundle was not counted as refused:\n%s", p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := p.revision(t); got != revB {
		t.Fatalf("revision %s after a wrongly signed bundle, want B %s", got, revB)
	}
	if !p.waitLog(t, "policy bundle refused: keeping policy "+revB[:12]) {
		t.Fatalf("no refusal in the log:\n%s", p.logs)
	}
	sendTicket(false, revB)
	p.Stop(t)

	// The bundle server goes down; a restarted sidecar comes up on the
	// persisted B, not on nothing and not on the built-in policy.
	srv.Stop()
	p2 := startProxy(t, proxyConfig{Stub: stub, Args: args})
	if got := p2.revision(t); got != revB {
		t.Fatalf("restarted with the server down: revision %s, want the persisted %s", got, revB)
	}
	p = p2
	sendTicket(false, revB)
	if !p2.waitLog(t, "bundle server unavailable: keeping policy "+revB[:12]) {
		t.Fatalf("the log does not say the server is down:\n%s", p2.logs)
	}
}

// TestBundleNoPolicyUntilFirst: a sidecar on a bundle that it has never
// received is not ready and refuses everything (no built-in fallback).
func TestBundleNoPolicyUntilFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, pub := writeKeyPair(t, dir, "ci")
	p := startProxy(t, proxyConfig{NoReady: true, Args: []string{
		"--bundle", "http://" + closedAddr(t) + "/pare.tar.gz", "--bundle-key", pub,
		"--bundle-dir", filepath.Join(dir, "persisted")}})
	if code, _ := p.adminGet(t, "/readyz"); code != 503 {
		t.Fatalf("/readyz %d without a bundle, want 503", code)
	}
	wantRefusal(t, p.do(t, ticketRequest(t)), 503, "no_policy")
	wantNothingReceived(t, p.Stub)
}

// TestBundleCLI: `proxy bundle build` refuses to sign what a sidecar would
// refuse or what fails its Rego tests (and writes nothing), and
// `proxy check --config` checks the keys of a bundle config.
func TestBundleCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, pub := writeKeyPair(t, dir, "ci")
	out := filepath.Join(dir, "b.tar.gz")

	if _, stderr, code := runCLI(t, "bundle", "build", filepath.Join(repoRoot, "policies"), "-o", out); code != 2 || !strings.Contains(stderr, "--signing-key") {
		t.Errorf("without a signing key: exit %d, %s", code, stderr)
	}
	// A policy author's mistake: the contract no longer validates.
	bad := copyPolicies(t)
	editFile(t, filepath.Join(bad, "contracts", "zendesk.yaml"), "  role: support\n", "  role: support\n  colour: blue\n")
	if _, stderr, code := runCLI(t, "bundle", "build", bad, "--signing-key", key, "-o", out); code != 1 || !strings.Contains(stderr, "contracts/zendesk.yaml:") {
		t.Errorf("invalid contract: exit %d, %s", code, stderr)
	}
	// A contract change its Rego tests do not expect.
	failing := copyPolicies(t)
	editFile(t, filepath.Join(failing, "contracts", "zendesk.yaml"), "        - ticket/priority\n", "")
	if _, stderr, code := runCLI(t, "bundle", "build", failing, "--signing-key", key, "-o", out); code != 1 || !strings.Contains(stderr, "Rego tests failed") {
		t.Errorf("failing Rego tests: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a bundle was written for a policy that was refused: %v", err)
	}

	cfg := filepath.Join(dir, "serve.yaml")
	for _, c := range []struct {
		key  string
		code int
		want string
	}{
		{pub, 0, "policy from the bundle"},
		{key, 1, "is not a public key"},
	} {
		writeAtomic(t, cfg, []byte("bundle: https://bundles.example/pare.tar.gz\nbundle_key: ["+c.key+"]\n"))
		stdout, stderr, code := runCLI(t, "check", "--config", cfg)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("check --config with bundle_key %s: exit %d, %s%s", filepath.Base(c.key), code, stdout, stderr)
		}
	}
}
