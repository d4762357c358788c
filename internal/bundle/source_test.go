package bundle

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/pare-dev/pare/internal/bundleserver"
	"github.com/pare-dev/pare/internal/engine"
)

// policies are two versions of the real policy: A is the repository's, B
// sends Zendesk one field less. Both are built once (building runs the Rego
// tests).
type policies struct {
	key          testKey
	a, b         []byte
	revA, revB   string
	unsigned     []byte // A without its signature
	wrongKey     []byte // A signed by another key
	broken       []byte // correctly signed, does not compile
	brokenReason string
}

var (
	policiesOnce sync.Once
	testPolicies policies
)

func testBundles(t testing.TB) policies {
	t.Helper()
	policiesOnce.Do(func() {
		p := policies{key: newECKey(t)}
		p.a = build(t, os.DirFS(policiesDir), p.key)
		b := dirFS(t)
		zd := b["contracts/zendesk.yaml"]
		zd.Data = append(bytes.Clone(zd.Data), []byte("# version B\n")...)
		p.b = build(t, b, p.key)
		ca, _ := Read(p.a, verifier(t, p.key), 0)
		cb, _ := Read(p.b, verifier(t, p.key), 0)
		p.revA, p.revB = ca.Revision, cb.Revision
		if p.revA == p.revB || p.revA == "" {
			t.Fatalf("revisions %q %q: the test needs two policies", p.revA, p.revB)
		}
		p.unsigned = edit(t, p.a, func(es []entry) []entry {
			var out []entry
			for _, e := range es {
				if e.hdr.Name != "/.signatures.json" {
					out = append(out, e)
				}
			}
			return out
		})
		p.wrongKey = build(t, os.DirFS(policiesDir), newECKey(t))
		broken := dirFS(t)
		broken["egress.rego"].Data = append(bytes.Clone(broken["egress.rego"].Data), []byte("\nx if { no_such_rule }\n")...)
		pol, err := engine.Load(context.Background(), dirFS(t), engine.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, broken, pol.Files, WriteOptions{Key: p.key.signing, Revision: pol.Revision, BuiltAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		p.broken, p.brokenReason = buf.Bytes(), "egress.rego:"
		testPolicies = p
	})
	if testPolicies.a == nil {
		t.Fatal("building the test bundles failed")
	}
	return testPolicies
}

// harness is an engine driven by a Source.
type harness struct {
	eng  *engine.Engine
	src  *Source
	log  *logBuffer
	dir  string
	reg  *prometheus.Registry
	stop func()

	mu       sync.Mutex
	reported []string // "ok <rev>" or "err <reason>"
}

type sourceConfig struct {
	url      string
	dir      string
	keys     []testKey
	longPoll bool
	tweak    func(*SourceOptions)
	noRun    bool
}

func newHarness(t *testing.T, c sourceConfig) *harness {
	t.Helper()
	eng, err := engine.New(engine.Options{HMACKey: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	h := &harness{eng: eng, log: &logBuffer{}, dir: c.dir, reg: prometheus.NewRegistry()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("source log:\n%s", h.log)
		}
	})
	opt := SourceOptions{
		URL:          c.url,
		Verification: verifier(t, c.keys...),
		Dir:          c.dir,
		MinDelay:     time.Second, MaxDelay: time.Second,
		Logger:     h.log.logger(),
		Registerer: h.reg,
	}
	if c.longPoll {
		opt.LongPollTimeout = 30 * time.Second
	}
	if c.tweak != nil {
		c.tweak(&opt)
	}
	h.src, err = NewSource(eng, opt, func(p *engine.Policy, err error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			h.reported = append(h.reported, "err "+err.Error())
			return
		}
		h.reported = append(h.reported, "ok "+p.Revision)
	})
	if err != nil {
		t.Fatal(err)
	}
	h.stop = func() {}
	if !c.noRun {
		h.run(t)
	}
	return h
}

func (h *harness) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.src.Run(ctx); close(done) }()
	var once sync.Once
	h.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(h.stop)
}

func (h *harness) revision() string {
	if p := h.eng.Policy(); p != nil {
		return p.Revision
	}
	return ""
}

func (h *harness) waitRevision(t *testing.T, rev string) {
	t.Helper()
	waitFor(t, "revision "+short(rev)+" active", 15*time.Second, func() bool { return h.revision() == rev })
}

func (h *harness) failures(reason string) float64 {
	return testutil.ToFloat64(h.src.failures.WithLabelValues(reason))
}

func (h *harness) persisted(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, persistedBundle))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSourceLongPollUpdate(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	srv := startServer(t, true)
	srv.Set(pol.a)
	h := newHarness(t, sourceConfig{url: srv.URL, keys: []testKey{pol.key}, longPoll: true})
	h.waitRevision(t, pol.revA)
	waitFor(t, "A persisted", 5*time.Second, func() bool { return h.src.Status().Persisted })
	if !bytes.Equal(h.persisted(t), pol.a) {
		t.Fatal("the persisted bundle is not the active one")
	}

	// Long polling: the next request waits at the server, and a new bundle
	// is answered at once (well within the 1s..1s poll delay it would
	// otherwise wait, let alone a full poll interval).
	waitFor(t, "a long poll waiting", 5*time.Second, func() bool { r, _, _ := srv.Stats(); return r >= 2 })
	srv.Set(pol.b)
	h.waitRevision(t, pol.revB)
	waitFor(t, "B persisted", 5*time.Second, func() bool { return bytes.Equal(h.persisted(t), pol.b) })

	st := h.src.Status()
	if st.Revision != pol.revB || st.ETag == "" || st.LastSuccess == nil || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	if v := testutil.ToFloat64(h.src.lastSuccess); v <= 0 {
		t.Fatalf("last success gauge %v", v)
	}
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(`
# HELP pare_policy_bundle_failures_total Bundle polls or bundles that did not lead to a current policy, by reason (download, invalid, persist); the policy in force stays.
# TYPE pare_policy_bundle_failures_total counter
pare_policy_bundle_failures_total{reason="download"} 0
pare_policy_bundle_failures_total{reason="invalid"} 0
pare_policy_bundle_failures_total{reason="persist"} 0
`), "pare_policy_bundle_failures_total"); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reported) != 2 || h.reported[0] != "ok "+pol.revA || h.reported[1] != "ok "+pol.revB {
		t.Fatalf("reported %v", h.reported)
	}
}

func TestSourceETagPolling(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	srv := startServer(t, false)
	srv.Set(pol.a)
	h := newHarness(t, sourceConfig{url: srv.URL, keys: []testKey{pol.key}})
	h.waitRevision(t, pol.revA)
	// Unchanged: the server answers 304 to the ETag; nothing is recompiled.
	waitFor(t, "two 304s", 10*time.Second, func() bool { _, nm, _ := srv.Stats(); return nm >= 2 })
	if len(h.reported) != 1 {
		t.Fatalf("reported %v: an unchanged bundle was activated again", h.reported)
	}
	srv.Set(pol.b)
	h.waitRevision(t, pol.revB)
}

// TestSourceRefusesBadBundles publishes what must never become the policy:
// each is refused, counted and logged with its reason, the policy in force
// stays and is still the persisted one, and a good bundle after them is
// taken.
func TestSourceRefusesBadBundles(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	srv := startServer(t, true)
	srv.Set(pol.a)
	h := newHarness(t, sourceConfig{url: srv.URL, keys: []testKey{pol.key}, longPoll: true})
	h.waitRevision(t, pol.revA)

	bad := []struct {
		name, why string
		raw       []byte
	}{
		{"unsigned", "bundle missing .signatures.json", pol.unsigned},
		{"wrongly signed", "verification key corresponding to ID", pol.wrongKey},
		{"does not compile", pol.brokenReason, pol.broken},
		{"not a bundle", "archive read failed", []byte("<html>maintenance</html>")},
	}
	for _, b := range bad {
		before := h.failures(ReasonInvalid)
		srv.Set(b.raw)
		waitFor(t, b.name+" refused, the log saying "+b.why, 15*time.Second, func() bool { return strings.Contains(h.log.String(), b.why) })
		if h.failures(ReasonInvalid) <= before {
			t.Fatalf("%s: refusal not counted", b.name)
		}
		if got := h.revision(); got != pol.revA {
			t.Fatalf("%s: revision %s active, want A", b.name, short(got))
		}
		if !bytes.Equal(h.persisted(t), pol.a) {
			t.Fatalf("%s: the persisted bundle changed", b.name)
		}
	}
	if !strings.Contains(h.log.String(), "policy bundle refused: keeping policy "+short(pol.revA)) {
		t.Fatalf("log:\n%s", h.log)
	}
	srv.Set(pol.b)
	h.waitRevision(t, pol.revB)
	if h.failures(ReasonDownload) != 0 {
		t.Errorf("%v download failures counted for refused bundles", h.failures(ReasonDownload))
	}
}

// TestSourceServerDown: a sidecar restarted while the bundle server is down
// comes up on the persisted bundle before any poll, keeps it while the server
// stays down, and takes the server's new bundle once it is back.
func TestSourceServerDown(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	srv := startServer(t, false)
	srv.Set(pol.a)
	dir := t.TempDir()
	first := newHarness(t, sourceConfig{url: srv.URL, dir: dir, keys: []testKey{pol.key}})
	first.waitRevision(t, pol.revA)
	waitFor(t, "A persisted", 5*time.Second, func() bool { return first.src.Status().Persisted })
	first.stop()

	// During operation: the server goes away; the policy stays, the metric
	// counts and the log says so.
	second := newHarness(t, sourceConfig{url: srv.URL, dir: dir, keys: []testKey{pol.key}, noRun: true})
	if err := second.src.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if second.revision() != pol.revA {
		t.Fatal("the persisted bundle was not restored")
	}
	second.run(t)
	waitFor(t, "a 304 for the restored ETag", 10*time.Second, func() bool { return second.src.Status().LastSuccess != nil })
	srv.Stop()
	waitFor(t, "download failures counted", 15*time.Second, func() bool { return second.failures(ReasonDownload) >= 2 })
	if second.revision() != pol.revA {
		t.Fatal("the policy changed while the server was down")
	}
	if !strings.Contains(second.log.String(), "bundle server unavailable: keeping policy "+short(pol.revA)) {
		t.Fatalf("log:\n%s", second.log)
	}
	second.stop()

	// At start: down from the beginning.
	third := newHarness(t, sourceConfig{url: srv.URL, dir: dir, keys: []testKey{pol.key}, noRun: true})
	if err := third.src.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	third.run(t)
	waitFor(t, "download failures counted", 15*time.Second, func() bool { return third.failures(ReasonDownload) >= 1 })
	if third.revision() != pol.revA {
		t.Fatal("no policy while the server is down")
	}
	// Back, with a new bundle.
	srv.Set(pol.b)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	third.waitRevision(t, pol.revB)
	waitFor(t, "recovery logged", 5*time.Second, func() bool { return strings.Contains(third.log.String(), "policy bundle current again") })
}

// TestSourceRestoreRefuses: the persisted bundle is verified again when read
// back; without a good one there is no policy until the server answers.
func TestSourceRestoreRefuses(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	other := newECKey(t)

	dir := t.TempDir()
	h := newHarness(t, sourceConfig{url: "http://127.0.0.1:1/b.tar.gz", dir: dir, keys: []testKey{pol.key}, noRun: true})
	if err := h.src.Restore(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no persisted bundle: err %v, want fs.ErrNotExist", err)
	}

	tampered := edit(t, pol.a, replaceFile("contracts/mailchimp.yaml", func(b []byte) []byte {
		return bytes.Replace(b, []byte("marketing: true"), []byte("marketing: false"), 1)
	}))
	cases := []struct {
		name string
		raw  []byte
		keys []testKey
		want string
	}{
		{"tampered on disk", tampered, []testKey{pol.key}, "contracts/mailchimp.yaml: digest mismatch"},
		{"signed by a key no longer trusted", pol.a, []testKey{other}, "verification key corresponding to ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, persistedBundle), c.raw, 0o600); err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, sourceConfig{url: "http://127.0.0.1:1/b.tar.gz", dir: dir, keys: c.keys, noRun: true})
			err := h.src.Restore(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if h.eng.Policy() != nil || h.failures(ReasonInvalid) != 1 {
				t.Fatalf("policy %v, invalid failures %v", h.eng.Policy(), h.failures(ReasonInvalid))
			}
		})
	}
}

// TestSourceNoPolicyUntilFirstBundle: fail closed from the start.
func TestSourceNoPolicyUntilFirstBundle(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	srv := startServer(t, false)
	srv.Fail(http.StatusServiceUnavailable)
	h := newHarness(t, sourceConfig{url: srv.URL, keys: []testKey{pol.key}})
	waitFor(t, "download failures", 10*time.Second, func() bool { return h.failures(ReasonDownload) >= 2 })
	if h.eng.Policy() != nil {
		t.Fatal("a policy is active without a bundle")
	}
	if !strings.Contains(h.log.String(), "no policy is active: every request is refused") {
		t.Fatalf("log:\n%s", h.log)
	}
	srv.Set(pol.a)
	h.waitRevision(t, pol.revA)
}

// TestSourceSizeBound: a server answering with a gzip bomb is refused
// without the sidecar inflating it.
func TestSourceSizeBound(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	srv := startServer(t, true)
	bomb := pack(t, []entry{{hdr: tarHeader("/a.rego"), data: make([]byte, 64<<20)}})
	srv.Set(bomb)
	h := newHarness(t, sourceConfig{url: srv.URL, keys: []testKey{pol.key}, longPoll: true,
		tweak: func(o *SourceOptions) { o.MaxBytes = 1 << 20 }})
	waitFor(t, "bomb refused", 10*time.Second, func() bool { return h.failures(ReasonInvalid) >= 1 })
	if !strings.Contains(h.log.String(), "bundle too large") {
		t.Fatalf("log:\n%s", h.log)
	}
	srv.Set(pol.a)
	h.waitRevision(t, pol.revA)
}

// TestSourceTLSAndToken: an https bundle server with its own CA and a bearer
// token read from a file (and re-read: a rotated token is used).
func TestSourceTLSAndToken(t *testing.T) {
	t.Parallel()
	pol := testBundles(t)
	bs := bundleserver.Handler(false)
	bs.Set(pol.a)
	ts := httptest.NewUnstartedServer(bs)
	ts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusting client's handshakes fail, as they should
	ts.StartTLS()
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sourceConfig{url: ts.URL + "/bundles/pare.tar.gz", keys: []testKey{pol.key},
		tweak: func(o *SourceOptions) { o.CACert, o.TokenFile = ca, token }})
	h.waitRevision(t, pol.revA)
	if _, _, auth := bs.Stats(); auth != "Bearer s3cret-1" {
		t.Fatalf("Authorization %q", auth)
	}
	if err := os.WriteFile(token, []byte("s3cret-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated token used", 10*time.Second, func() bool { _, _, auth := bs.Stats(); return auth == "Bearer s3cret-2" })

	// Without the CA the server is not trusted: no policy.
	untrusting := newHarness(t, sourceConfig{url: ts.URL + "/bundles/pare.tar.gz", keys: []testKey{pol.key}})
	waitFor(t, "TLS failure counted", 10*time.Second, func() bool { return untrusting.failures(ReasonDownload) >= 1 })
	if untrusting.eng.Policy() != nil {
		t.Fatal("policy from an untrusted server")
	}
}

func TestNewSourceRefusesBadOptions(t *testing.T) {
	pol := testBundles(t)
	vc := verifier(t, pol.key)
	eng, _ := engine.New(engine.Options{})
	cases := []struct {
		name string
		opt  SourceOptions
		want string
	}{
		{"no key", SourceOptions{URL: "http://b/x", Dir: t.TempDir()}, "verification key is required"},
		{"no dir", SourceOptions{URL: "http://b/x", Verification: vc}, "directory"},
		{"ftp", SourceOptions{URL: "ftp://b/x", Verification: vc, Dir: t.TempDir()}, "scheme must be http or https"},
		{"password refused, and redacted", SourceOptions{URL: "https://u:hunter2@b/x", Verification: vc, Dir: t.TempDir()}, "https://u:xxxxx@b/x\": must not carry credentials"},
		{"sub-second delay", SourceOptions{URL: "http://b/x", Verification: vc, Dir: t.TempDir(), MinDelay: 500 * time.Millisecond, MaxDelay: time.Second}, "whole seconds"},
		{"min over max", SourceOptions{URL: "http://b/x", Verification: vc, Dir: t.TempDir(), MinDelay: 5 * time.Second, MaxDelay: time.Second}, "max polling delay must be >= min"},
		{"missing CA file", SourceOptions{URL: "https://b/x", Verification: vc, Dir: t.TempDir(), CACert: "/nonexistent/ca.pem"}, "bundle CA certificates"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewSource(eng, c.opt, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if strings.Contains(c.opt.URL, "hunter2") && strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the password is in the error")
			}
		})
	}
}

func TestSourceMetricsLint(t *testing.T) {
	pol := testBundles(t)
	h := newHarness(t, sourceConfig{url: "http://127.0.0.1:1/b.tar.gz", keys: []testKey{pol.key}, noRun: true})
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 2 {
		t.Fatalf("%d metric families registered, want 2", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestSourceRefusesRollback: whoever controls the bundle server cannot take
// the fleet back to an older bundle, although it is validly signed; a new
// build of the old policy is taken.
func TestSourceRefusesRollback(t *testing.T) {
	t.Parallel()
	pol := testBundles(t) // A was built before B
	srv := startServer(t, true)
	srv.Set(pol.b)
	dir := t.TempDir()
	h := newHarness(t, sourceConfig{url: srv.URL, dir: dir, keys: []testKey{pol.key}, longPoll: true})
	h.waitRevision(t, pol.revB)
	waitFor(t, "B persisted", 5*time.Second, func() bool { return h.src.Status().Persisted })

	srv.Set(pol.a)
	waitFor(t, "the rollback refused", 15*time.Second, func() bool { return strings.Contains(h.log.String(), "refusing a rollback") })
	if h.revision() != pol.revB || !bytes.Equal(h.persisted(t), pol.b) {
		t.Fatal("rolled back to A")
	}
	h.stop()

	// Nor across a restart: the persisted B is what an older bundle is
	// compared with.
	again := newHarness(t, sourceConfig{url: srv.URL, dir: dir, keys: []testKey{pol.key}, longPoll: true, noRun: true})
	if err := again.src.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	again.run(t)
	waitFor(t, "the rollback refused after a restart", 15*time.Second, func() bool { return strings.Contains(again.log.String(), "refusing a rollback") })
	if again.revision() != pol.revB {
		t.Fatal("rolled back to A after a restart")
	}

	// Going back on purpose: build A again.
	srv.Set(build(t, os.DirFS(policiesDir), pol.key))
	again.waitRevision(t, pol.revA)

	// A bundle without built_at is refused too (not built by bundle build).
	var buf bytes.Buffer
	p, err := engine.Load(context.Background(), dirFS(t), engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(&buf, dirFS(t), p.Files, WriteOptions{Key: pol.key.signing, Revision: p.Revision}); err != nil {
		t.Fatal(err)
	}
	srv.Set(buf.Bytes())
	waitFor(t, "a bundle without built_at refused", 15*time.Second, func() bool { return strings.Contains(again.log.String(), "has no built_at") })
}
