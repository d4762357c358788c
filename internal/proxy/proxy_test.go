package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestTargetOf(t *testing.T) {
	tests := []struct {
		name, target, host string
		want               target
		err                string
	}{
		{name: "absolute form", target: "http://API.Stripe.com/v1/charges?expand=x",
			want: target{scheme: "http", host: "api.stripe.com", port: 80, path: "/v1/charges", query: "expand=x"}},
		{name: "absolute https with port", target: "https://api.stripe.com:8443/v1",
			want: target{scheme: "https", host: "api.stripe.com", port: 8443, path: "/v1"}},
		{name: "origin form by Host", target: "/api/v2/tickets.json", host: "webinarco.zendesk.com.",
			want: target{scheme: "http", host: "webinarco.zendesk.com", port: 80, path: "/api/v2/tickets.json"}},
		{name: "no host", target: "/x", host: "", err: "no host"},
		{name: "bad port", target: "/x", host: "a.example:99999", err: "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			if !strings.HasPrefix(tt.target, "http") {
				r.Host = tt.host
			}
			got, err := targetOf(r)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("targetOf = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseResolve(t *testing.T) {
	tests := []struct{ in, hostPort, addr, err string }{
		{in: "api.stripe.com:443:127.0.0.1", hostPort: "api.stripe.com:443", addr: "127.0.0.1:443"},
		{in: "API.stripe.com:443:127.0.0.1:8443", hostPort: "api.stripe.com:443", addr: "127.0.0.1:8443"},
		{in: "api.stripe.com:443:[::1]:8443", hostPort: "api.stripe.com:443", addr: "[::1]:8443"},
		{in: "api.stripe.com:443", err: "want HOST:PORT:ADDR"},
		{in: "api.stripe.com:x:127.0.0.1", err: "bad port"},
	}
	for _, tt := range tests {
		hp, addr, err := ParseResolve(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || hp != tt.hostPort || addr != tt.addr {
			t.Errorf("%s: got %q %q %v, want %q %q", tt.in, hp, addr, err, tt.hostPort, tt.addr)
		}
	}
}

// Credentials reach the policy by name only; Pare's control headers and
// hop-by-hop headers never leave.
func TestInputAndHopByHop(t *testing.T) {
	r := httptest.NewRequest("POST", "http://api.stripe.com/v1/x", nil)
	r.Header.Set("Authorization", "Bearer sk_live_secret")
	r.Header.Set("X-Data-Purpose", " payment ")
	r.Header.Set("X-Data-GPC", "1")
	in, err := InputFor(r, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if in.Headers["authorization"] != "[present]" || in.Purpose != "payment" || !in.GPC || in.Service != "billing" {
		t.Fatalf("input = %+v", in)
	}
	h := http.Header{"Connection": {"X-Secret, keep-alive"}, "X-Secret": {"1"}, "Te": {"trailers"}, "Accept": {"*/*"}}
	removeHopByHop(h)
	if len(h) != 1 || h.Get("Accept") == "" {
		t.Fatalf("after removeHopByHop: %v", h)
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
