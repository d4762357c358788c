package identity

import (
	"context"
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

	"github.com/pare-dev/pare/internal/idptest"
)

func newIDP(t testing.TB, kid string) *idptest.Provider {
	t.Helper()
	p, err := idptest.New(kid, "https://idp.example", "pare-legal")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	ok := Options{Source: "keys.json", Audience: "pare-legal", Issuer: "https://idp.example"}
	tests := []struct {
		name string
		edit func(*Options)
		err  string
	}{
		{"file", func(*Options) {}, ""},
		{"https", func(o *Options) { o.Source = "https://idp.example/jwks" }, ""},
		{"http to loopback", func(o *Options) { o.Source = "http://127.0.0.1:8080/jwks" }, ""},
		{"http to localhost", func(o *Options) { o.Source = "http://localhost/jwks" }, ""},
		{"http elsewhere", func(o *Options) { o.Source = "http://idp.example/jwks" }, "loopback"},
		{"user info", func(o *Options) { o.Source = "https://u:p@idp.example/jwks" }, "user info"},
		{"no source", func(o *Options) { o.Source = "" }, "no JWKS source"},
		{"no audience", func(o *Options) { o.Audience = " " }, "audience is required"},
		{"no issuer", func(o *Options) { o.Issuer = "" }, "issuer is required"},
		{"max age below refresh", func(o *Options) { o.Refresh, o.MaxAge = time.Hour, time.Minute }, "shorter than the refresh"},
		{"negative refresh", func(o *Options) { o.Refresh = -time.Second }, "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			err := o.Validate()
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Validate: %v, want %q", err, tt.err)
			}
		})
	}
}

// Only public keys of asymmetric algorithms, parsed by the library OPA's
// io.jwt.decode_verify uses.
func TestCheckJWKS(t *testing.T) {
	idp := newIDP(t, "k1")
	tests := []struct{ name, doc, err string }{
		{"a key set", string(idptest.JWKS(idp, newIDP(t, "k2"))), ""},
		{"no keys", `{"keys": []}`, "no keys"},
		{"not JSON", `keys`, "not a JWK set"},
		{"symmetric key", `{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`, "asymmetric"},
		{"private key", `{"keys": [{"kty": "EC", "crv": "P-256", "x": "01m8hPxKfuXwI33xIYvvGOlUZDmnWvK_2p3ANWFTz4Y", "y": "TEnGtIBv-KZtbU-SOQwIaZJPC2U6EvECvVG9o_Qp31Q", "d": "lArM_lpR5qFt06t7-FOqljN5EK3ctX8qUJ1WdFd2y70"}]}`, "private key"},
		{"too large", `{"keys": [], "x": "` + strings.Repeat("a", maxJWKS) + `"}`, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := checkJWKS([]byte(tt.doc))
			if tt.err == "" && (err != nil || n != 2) || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("checkJWKS: %d, %v; want %q", n, err, tt.err)
			}
		})
	}
}

// installs records what Keys hands the engine.
type installs struct {
	mu   sync.Mutex
	jwks []string
}

func (i *installs) install(data map[string]any) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.jwks = append(i.jwks, data["legal"].(map[string]any)["jwks"].(string))
	return nil
}

func (i *installs) all() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.jwks...)
}

// A JWKS service: serves doc, or fails with status.
type jwksServer struct {
	mu     sync.Mutex
	doc    []byte
	status int
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 0 {
		w.WriteHeader(s.status)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(s.doc)
}

func (s *jwksServer) set(doc []byte, status int) {
	s.mu.Lock()
	s.doc, s.status = doc, status
	s.mu.Unlock()
}

// The keys follow the provider: installed before anything else as "none",
// then as read; changed keys replace them; while the provider fails the
// last good keys stay up to MaxAge, then none are in force (fail closed)
// until it answers again.
func TestKeysFollowTheProvider(t *testing.T) {
	a, b := newIDP(t, "a"), newIDP(t, "b")
	srv := &jwksServer{doc: idptest.JWKS(a)}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	now := time.Unix(1_800_000_000, 0)
	var inst installs
	reg := prometheus.NewRegistry()
	k, err := New(Options{Source: hs.URL + "/jwks", Audience: "pare-legal", Issuer: "https://idp.example",
		Refresh: time.Minute, MaxAge: 10 * time.Minute, Install: inst.install, Registerer: reg,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"", string(idptest.JWKS(a))}
	check := func(what string, keys float64) {
		t.Helper()
		if got := inst.all(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: installed %q, want %q", what, got, want)
		}
		if got := testutil.ToFloat64(k.keys); got != keys {
			t.Fatalf("%s: pare_legal_jwks_keys %v, want %v", what, got, keys)
		}
	}
	check("start", 1)

	now = now.Add(time.Minute)
	if err := k.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	check("unchanged", 1) // nothing installed again: the decision cache stays

	srv.set(idptest.JWKS(a, b), 0)
	if err := k.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, string(idptest.JWKS(a, b)))
	check("rotated", 2)

	srv.set(nil, http.StatusBadGateway)
	now = now.Add(9 * time.Minute)
	if err := k.refresh(ctx); err == nil {
		t.Fatal("a failing provider: no error")
	}
	check("failing, within max age", 2)
	now = now.Add(2 * time.Minute)
	if err := k.refresh(ctx); err == nil {
		t.Fatal("a failing provider: no error")
	}
	want = append(want, "")
	check("failing past max age", 0)
	if testutil.ToFloat64(k.failures) != 2 {
		t.Errorf("failures %v", testutil.ToFloat64(k.failures))
	}

	srv.set([]byte(`{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`), 0)
	if err := k.refresh(ctx); err == nil || !strings.Contains(err.Error(), "asymmetric") {
		t.Fatalf("a symmetric key from the provider: %v", err)
	}
	check("bad keys", 0)
	srv.set(idptest.JWKS(b), 0)
	if err := k.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, string(idptest.JWKS(b)))
	check("back", 1)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// The keys are where the configuration says: a redirect is not followed.
func TestKeysNoRedirect(t *testing.T) {
	elsewhere := httptest.NewServer(&jwksServer{doc: idptest.JWKS(newIDP(t, "evil"))})
	t.Cleanup(elsewhere.Close)
	hs := httptest.NewServer(http.RedirectHandler(elsewhere.URL, http.StatusFound))
	t.Cleanup(hs.Close)
	var inst installs
	k, err := New(Options{Source: hs.URL, Audience: "a", Issuer: "i", Install: inst.install})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "status 302") {
		t.Fatalf("refresh: %v, want the redirect refused", err)
	}
	if len(inst.all()) != 0 {
		t.Fatalf("installed %q", inst.all())
	}
}

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "jwks.json")
	os.WriteFile(good, idptest.JWKS(newIDP(t, "k")), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"keys": []}`), 0o600)
	o := Options{Audience: "a", Issuer: "i"}
	for src, want := range map[string]string{good: "", bad: "no keys", filepath.Join(dir, "nope"): "no such file",
		"https://idp.example/jwks": ""} {
		o.Source = src
		err := Check(o)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%s): %v, want %q", src, err, want)
		}
	}
}
