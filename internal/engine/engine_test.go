package engine

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func loadTest(t testing.TB, dir string) (*Engine, *Policy) {
	t.Helper()
	p, err := LoadDir(context.Background(), "testdata/"+dir, LoadOptions{})
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	e, err := New(Options{HMACKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(p)
	return e, p
}

func input(host, purpose string) *Input {
	return &Input{Method: "POST", Scheme: "http", Host: host, Port: 80, Path: "/v1/x",
		Purpose: purpose, Subject: "u-1", Service: "billing",
		Headers: map[string]string{"content-type": "application/json", "x-request-id": "r-1"}}
}

func TestDecide(t *testing.T) {
	e, p := loadTest(t, "simple")
	tests := []struct {
		name, host, purpose string
		allow               bool
		code                Code
		errCode             Code
		errHas              string
	}{
		{name: "allowed", host: "api.example.com", purpose: "payment", allow: true},
		{name: "unknown vendor", host: "nope.example.com", purpose: "payment", code: CodeUnknownVendor},
		{name: "unknown key", host: "api.example.com", purpose: "broken", errCode: CodeEvalError, errHas: `unknown key "fieldz"`},
		{name: "wrong types", host: "api.example.com", purpose: "types", errCode: CodeEvalError, errHas: "allow is a string, want a boolean"},
		{name: "unknown transform", host: "bad.example.com", purpose: "payment", errCode: CodeEvalError, errHas: "rot13"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), p, input(tt.host, tt.purpose), nil)
			if tt.errCode != "" {
				if err == nil || CodeOf(err) != tt.errCode || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %s containing %q", err, tt.errCode, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow || (!tt.allow && d.Code != tt.code) {
				t.Fatalf("decision = allow %v code %q, want allow %v code %q", d.Allow, d.Code, tt.allow, tt.code)
			}
			if d.Revision != p.Revision {
				t.Errorf("revision %q, want %q", d.Revision, p.Revision)
			}
		})
	}
}

func TestDecideNoPolicy(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Decide(context.Background(), e.Policy(), input("api.example.com", "payment"), nil)
	if CodeOf(err) != CodeNoPolicy || CodeNoPolicy.Status() != 503 {
		t.Fatalf("err = %v, want no_policy (503)", err)
	}
}

// The cache is keyed only on what the policy reads: the simple policy reads
// host and purpose, so a different subject or request id hits the cache and
// a different purpose does not.
func TestDecisionCacheKey(t *testing.T) {
	e, p := loadTest(t, "simple")
	if !p.cacheable || p.NeedsBody() {
		t.Fatalf("cacheable %v needs body %v, want true false", p.cacheable, p.NeedsBody())
	}
	ctx := context.Background()
	a, _ := e.Decide(ctx, p, input("api.example.com", "payment"), nil)
	in := input("api.example.com", "payment")
	in.Subject, in.Headers["x-request-id"] = "u-2", "r-2"
	b, _ := e.Decide(ctx, p, in, nil)
	if a != b {
		t.Error("a different subject and request id missed the cache")
	}
	c, _ := e.Decide(ctx, p, input("api.example.com", "support"), nil)
	if a == c {
		t.Error("a different purpose hit the cache")
	}
}

func TestNeedsBody(t *testing.T) {
	e, p := loadTest(t, "body")
	if !p.NeedsBody() || p.cacheable {
		t.Fatalf("needs body %v cacheable %v, want true false", p.NeedsBody(), p.cacheable)
	}
	ctx := context.Background()
	body, err := ParseBody("application/json", []byte(`{"a": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(ctx, p, input("h", "p"), body)
	if err != nil || !d.Allow {
		t.Fatalf("decision %+v err %v, want allowed", d, err)
	}
	// Without a body the decision is undefined: a denial, not a send.
	d, err = e.Decide(ctx, p, input("h", "p"), nil)
	if err != nil || d.Allow || d.Code != CodeDenied {
		t.Fatalf("decision %+v err %v, want a denial", d, err)
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := LoadDir(context.Background(), "testdata/broken", LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "egress.rego:") {
		t.Fatalf("err = %v, want a file:line error", err)
	}
	_, err = LoadDir(context.Background(), "testdata/missing", LoadOptions{})
	if err == nil {
		t.Fatal("a missing directory loaded")
	}
	empty := t.TempDir()
	if _, err := LoadDir(context.Background(), empty, LoadOptions{}); err == nil {
		t.Fatal("an empty directory loaded")
	}
	noEntry := t.TempDir()
	os.WriteFile(noEntry+"/x.rego", []byte("package other\n\nx := 1\n"), 0o600)
	if _, err := LoadDir(context.Background(), noEntry, LoadOptions{}); err == nil || !strings.Contains(err.Error(), Entrypoint) {
		t.Fatalf("err = %v, want a missing entrypoint error", err)
	}
}

func TestRevisionChangesWithContent(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) *Policy {
		os.WriteFile(dir+"/egress.rego", []byte(s), 0o600)
		p, err := LoadDir(context.Background(), dir, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("package egress\n\ndecision := {\"allow\": false}\n")
	b := write("package egress\n\ndecision := {\"allow\": false}\n")
	c := write("package egress\n\ndecision := {\"allow\": false, \"reason\": \"x\"}\n")
	if a.Revision != b.Revision || a.Revision == c.Revision {
		t.Fatalf("revisions %s %s %s: want equal content → equal revision", a.Revision, b.Revision, c.Revision)
	}
}

// A decision that called a non-deterministic builtin is not cached (it
// could differ the next time); one that did not, of the same policy, is.
// This is what lets a policy verify a JWT (io.jwt.decode_verify checks the
// expiry against the clock) without losing the cache for every other request.
func TestNondeterministicDecisionsAreNotCached(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/egress.rego", []byte(`package egress

decision := {"allow": false, "vendor": "v", "reason": sprintf("%d", [time.now_ns()])} if input.purpose == "clock"

else := {"allow": false, "vendor": "v", "reason": "fixed"}
`), 0o600)
	p, err := LoadDir(context.Background(), dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.CacheKey(), "non-deterministic") {
		t.Errorf("cache key: %s; want it to say non-deterministic decisions are not cached", p.CacheKey())
	}
	e, _ := New(Options{})
	ctx := context.Background()
	decide := func(purpose string) *Decision {
		d, err := e.Decide(ctx, p, input("h", purpose), nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if a, b := decide("clock"), decide("clock"); a == b {
		t.Error("a decision that read the clock came from the cache")
	}
	if a, b := decide("other"), decide("other"); a != b {
		t.Error("a decision that called no non-deterministic builtin was not cached")
	}
	if st := p.CacheStats(); st.Entries != 1 {
		t.Errorf("cache %+v: want the deterministic decision only", st)
	}
}

func TestFilterBodyErrors(t *testing.T) {
	e, p := loadTest(t, "simple")
	d, err := e.Decide(context.Background(), p, input("api.example.com", "payment"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ct, body string
		code     Code
	}{
		{"text/plain", "amount=1", CodeUnsupportedMedia},
		{"application/json; charset=latin1", `{"amount": 1}`, CodeUnsupportedMedia},
		{"application/json", `{"amount": 1`, CodeMalformedBody},
		{"application/json", `{"amount": "4242 4242 4242 4242"}`, CodeCardNumber},
	}
	for _, tt := range tests {
		_, _, err := d.FilterBody(nil, tt.ct, []byte(tt.body), 0)
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code {
			t.Errorf("%s %s: err = %v, want %s", tt.ct, tt.body, err, tt.code)
		}
		if err != nil && strings.Contains(err.Error(), "4242") {
			t.Errorf("error leaks a value: %v", err)
		}
	}
	out, rep, err := d.FilterBody(nil, "application/json", []byte(`{"amount": 1.50, "customer": {"email": "a@b", "id": "c1", "phone": "1"}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"amount":1.50`) || strings.Contains(string(out), "phone") || strings.Contains(string(out), `"c1"`) {
		t.Errorf("out = %s", out)
	}
	if len(rep.Transformed) != 1 || rep.Transformed[0] != "customer/id" {
		t.Errorf("transformed = %v", rep.Transformed)
	}
}

func BenchmarkDecide(b *testing.B) {
	e, p := loadTest(b, "simple")
	ctx := context.Background()
	in := input("api.example.com", "payment")
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Decide(ctx, p, in, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		p2, _ := LoadDir(ctx, "testdata/simple", LoadOptions{CacheBytes: -1})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.Decide(ctx, p2, in, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
