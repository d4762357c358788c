package pipeline

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/pare-dev/pare/internal/engine"
)

// Credentials reach the policy by name only; the control headers become
// the input's fields.
func TestInput(t *testing.T) {
	p := &Pipeline{cfg: Config{Service: "billing"}}
	h := http.Header{}
	h.Set("Authorization", "Bearer sk_live_secret")
	h.Set("X-Data-Purpose", " payment ")
	h.Set("X-Data-GPC", "1")
	in := p.input(&Request{Method: "POST", Scheme: "http", Host: "api.stripe.com", Header: h, RawQuery: "expand=customer"}, "/v1/x")
	if in.Headers["authorization"] != "[present]" || in.Purpose != "payment" || !in.GPC || in.Service != "billing" {
		t.Fatalf("input = %+v", in)
	}
	if in.Port != 80 || in.Path != "/v1/x" || in.Query["expand"][0] != "customer" {
		t.Fatalf("input = %+v", in)
	}
}

func TestHopByHop(t *testing.T) {
	h := http.Header{"Connection": {"X-Secret, keep-alive"}, "X-Secret": {"1"}, "Te": {"trailers"}, "Accept": {"*/*"}}
	removeHopByHop(h)
	if len(h) != 1 || h.Get("Accept") == "" {
		t.Fatalf("after removeHopByHop: %v", h)
	}
}

// removeHopByHop deletes the map keys directly, which works only if they
// are in canonical form, as net/http stores them.
func TestHopByHopNamesAreCanonical(t *testing.T) {
	for _, k := range hopByHop {
		if k != http.CanonicalHeaderKey(k) {
			t.Errorf("%q is not canonical (%q): removeHopByHop would leave it in place", k, http.CanonicalHeaderKey(k))
		}
	}
	h := http.Header{}
	h.Set("te", "trailers")
	h.Set("keep-alive", "timeout=5")
	h.Set("Authorization", "Bearer x")
	removeHopByHop(h)
	if len(h) != 1 || h.Get("Authorization") == "" {
		t.Errorf("after removeHopByHop: %v", h)
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.requests.WithLabelValues("stripe", "payment", "forwarded").Inc()
	m.fieldsRemoved.WithLabelValues("stripe").Add(3)
	m.upstreamSeconds.WithLabelValues("stripe").Observe(0.01)
	m.legal.WithLabelValues("legal").Inc()
	m.Reloads.WithLabelValues("success").Inc()
	m.Revision.WithLabelValues("abc").Set(1)
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

// Paths that mean one thing to the policy and another to a vendor's server
// are refused before the decision; what passes is what both see.
func TestCleanPath(t *testing.T) {
	tests := []struct {
		raw, want string // want "" means refused with malformed_path
	}{
		{"/v1/customers", "/v1/customers"},
		{"", "/"},
		{"/", "/"},
		{"/a/b/", "/a/b/"},
		{"//v1//customers", "/v1/customers"}, // merge_slashes
		{"/v1/customers/cus%5F1", "/v1/customers/cus_1"},
		{"/api/v2/tickets/a%20b", "/api/v2/tickets/a b"},
		{"/3.0/lists/l1/members/ab%2Bc", "/3.0/lists/l1/members/ab+c"},
		// an encoded "?" would match a "*" route and reach the vendor as a query
		{"/api/v2/tickets/1%3Fx=secret", ""},
		{"/api/v2/tickets/1%3fx=secret", ""},
		{"/recordings/a%2F..%2Fsecrets", ""},
		{"/recordings/a%2f..", ""},
		{`/recordings/..\secrets`, ""},
		{"/recordings/..%5Csecrets", ""},
		{"/recordings/..%5csecrets", ""},
		{"/recordings/x;jsessionid=1", ""},
		{"/recordings/x%3Bp=1", "/recordings/x;p=1"}, // encoded ";" is data, sent re-encoded
		{"/a/%23frag", ""},
		{"/a/%00", ""},
		{"/a/%0a", ""},
		{"/a/%7f", ""},
		{"/a/%zz", ""},
		{"/a/%", ""},
		{"/a/%ff", ""}, // not UTF-8 once decoded
		{"/recordings/../secrets", ""},
		{"/recordings/./x", ""},
		{"/recordings/%2e%2e/secrets", ""},
		{"/recordings/%2E./secrets", ""},
		{"/recordings/.%2e", ""},
		{"/recordings/..", ""},
		{"/recordings/.hidden", "/recordings/.hidden"},
		{"/recordings/...", "/recordings/..."},
		{"relative", ""},
		{"/" + strings.Repeat("a", maxPath), ""},
	}
	for _, tt := range tests {
		got, err := cleanPath(tt.raw)
		if tt.want == "" {
			if engine.CodeOf(err) != engine.CodeMalformedPath {
				t.Errorf("cleanPath(%q) = %q, %v; want malformed_path", tt.raw, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

func TestCheckHostAndMethod(t *testing.T) {
	for _, h := range []string{"api.stripe.com", "127.0.0.1", "[::1]", "x_y.example"} {
		if err := checkHost(h); err != nil {
			t.Errorf("checkHost(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", "a b", "user@host", "API.stripe.com", "a\x00b", strings.Repeat("a", 254), "[::1", "[zz]"} {
		if err := checkHost(h); err == nil {
			t.Errorf("checkHost(%q) accepted", h)
		}
	}
	for m, want := range map[string]string{"post": "POST", "Get": "GET", "PROPFIND": "PROPFIND", "purge": "purge"} {
		if got := NormalizeMethod(m); got != want {
			t.Errorf("NormalizeMethod(%q) = %q, want %q", m, got, want)
		}
	}
	for m, ok := range map[string]bool{"POST": true, "PROPFIND": true, "purge": false, "": false, "GE T": false} {
		if validMethod(m) != ok {
			t.Errorf("validMethod(%q) = %v", m, !ok)
		}
	}
}

// The two-person rule compares names in one normal form: width, case and
// spacing do not make a second person, and invisible characters are
// refused outright.
func TestPersonName(t *testing.T) {
	same := []string{"anna.legal@webinar-co.example", "Anna.Legal@Webinar-Co.example", "ａｎｎａ.legal@webinar-co.example", "  anna.legal@webinar-co.example "}
	for _, s := range same {
		k, err := personName(s)
		if err != nil || k != "anna.legal@webinar-co.example" {
			t.Errorf("personName(%q) = %q, %v", s, k, err)
		}
	}
	for _, s := range []string{"anna\u200b.legal@webinar-co.example", "anna.legal@webinar-co.example\u00ad", "anna\u2060.legal@x", "\u200b", strings.Repeat("a", 300)} {
		if k, err := personName(s); err == nil {
			t.Errorf("personName(%q) = %q, want an error", s, k)
		}
	}
	p := testPipeline(t, Config{})
	h := http.Header{}
	h.Set("X-Legal-Approver", "anna\u200b.legal@webinar-co.example")
	x := p.Begin(&Request{Method: "POST", Scheme: "http", Host: "disclosures.legal.example", Path: "/v1/disclosures", Header: h})
	defer x.End()
	if _, err := x.check(); engine.CodeOf(err) != engine.CodeBadRequest {
		t.Errorf("a zero-width approver: %v, want bad_request", err)
	}
}
