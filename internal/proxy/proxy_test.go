package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTargetOf(t *testing.T) {
	tests := []struct {
		name, target, host string
		want               target
		err                string
	}{
		{name: "absolute form", target: "http://API.Stripe.com/v1/charges?expand=x",
			want: target{scheme: "http", host: "api.stripe.com"}},
		{name: "absolute https with port", target: "https://api.stripe.com:8443/v1",
			want: target{scheme: "https", host: "api.stripe.com", port: 8443}},
		{name: "origin form by Host", target: "/api/v2/tickets.json", host: "webinarco.zendesk.com.",
			want: target{scheme: "http", host: "webinarco.zendesk.com"}},
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
