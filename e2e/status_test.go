package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ticketRequest is a valid support ticket to Zendesk.
func ticketRequest(t testing.TB) request {
	return request{
		Method: "POST", URL: "http://webinarco.zendesk.com/api/v2/tickets.json",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", "support", "X-Data-Subject", "u-123"),
		Body: payload(t, "ticket.json"),
	}
}

// paymentRequest is a valid card payment to Stripe from billing.
func paymentRequest(t testing.TB) request {
	return request{
		Method: "POST", URL: "http://api.stripe.com/v1/payment_intents",
		Header: hdr("Authorization", "Bearer sk_test_e2e", "Content-Type", "application/x-www-form-urlencoded",
			"Idempotency-Key", "b7d1e3a0", "X-Data-Purpose", "payment", "X-Data-Subject", "u-123"),
		Body: payload(t, "payment_intent.form"),
	}
}

// TestStatusTable walks every row of the README's "When nothing leaves"
// table through the running binary: the status, the JSON refusal body and
// that the vendor received nothing. One proxy serves every row; a slow
// stub stands in for Eventbrite (504) and nothing listens where the hosting
// vendor is resolved (502).
func TestStatusTable(t *testing.T) {
	t.Parallel()
	stub := startStub(t)
	slow := startStub(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow.SetRespond(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-time.After(3 * time.Second):
		case <-release:
		case <-r.Context().Done():
		}
	})
	// slow has its own CA: --upstream-ca is repeatable.
	p := startProxy(t, proxyConfig{
		Stub: stub,
		Resolve: map[string]string{
			hostEventbrite: slow.Addr,
			hostHosting:    closedAddr(t),
		},
		Args: []string{"--max-body", "4KiB", "--upstream-timeout", "500ms", "--upstream-ca", slow.CAFile},
	})

	big := bytes.Repeat([]byte("x"), 5000)
	bigTicket := []byte(fmt.Sprintf(`{"ticket":{"subject":"s","comment":{"body":%q}}}`, big))

	cases := []struct {
		name   string
		req    request
		status int
		code   string
	}{
		{"unknown vendor", request{Method: "POST", URL: "http://api.tracking-pixels.example/collect",
			Header: hdr("Content-Type", "application/json", "X-Data-Purpose", "analytics", "X-Data-Subject", "u-123"),
			Body:   payload(t, "attendee.json")}, 403, "unknown_vendor"},
		{"policy denies: no such route", request{Method: "DELETE", URL: "http://api.stripe.com/v1/customers/cus_9f3b2c",
			Header: hdr("Authorization", "Bearer sk_test_e2e", "X-Data-Purpose", "payment")}, 403, "route_not_allowed"},
		// Paths servers read differently are refused before the decision
		// (the policy's own dot-segment rule stays as a second line).
		{"malformed path: dot segments", request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/%2e%2e/secrets/keys.txt",
			Header: hdr("Content-Type", "text/plain", "X-Data-Purpose", "hosting"), Body: []byte("secret")}, 400, "malformed_path"},
		{"malformed path: encoded ?", request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/x%3Fsecret=1",
			Header: hdr("Content-Type", "text/plain", "X-Data-Purpose", "hosting"), Body: []byte("secret")}, 400, "malformed_path"},
		{"malformed path: encoded backslash", request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/..%5Csecrets",
			Header: hdr("Content-Type", "text/plain", "X-Data-Purpose", "hosting"), Body: []byte("secret")}, 400, "malformed_path"},
		{"malformed path: matrix parameter", request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/x;a=b",
			Header: hdr("Content-Type", "text/plain", "X-Data-Purpose", "hosting"), Body: []byte("secret")}, 400, "malformed_path"},
		{"malformed body", ticketRequest(t).withBody([]byte(`{"ticket": {"subject": "oops", }`)), 400, "malformed_body"},
		{"unsupported media type", ticketRequest(t).without("Content-Type").with("Content-Type", "text/plain").
			withBody([]byte("Hi, I cannot join my webinar. maria.kowalska@example.org")), 415, "unsupported_media_type"},
		{"non-UTF-8 charset", ticketRequest(t).without("Content-Type").with("Content-Type", "application/json; charset=utf-16"),
			415, "unsupported_media_type"},
		{"body larger than --max-body", ticketRequest(t).withBody(bigTicket), 413, "body_too_large"},
		{"vendor unreachable", request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/2026/wb_101.mp4",
			Header: hdr("Content-Type", "video/mp4", "X-Data-Purpose", "hosting"), Body: payload(t, "recording-part1.bin")}, 502, "vendor_unreachable"},
		{"CONNECT to a host no contract names", request{Method: "CONNECT", URL: "http://api.tracking-pixels.example:443"}, 403, "unknown_vendor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stub.Reset()
			var resp response
			if tc.req.Method == "CONNECT" {
				resp = rawRequest(t, p.Egress, "CONNECT api.tracking-pixels.example:443 HTTP/1.1\r\nHost: api.tracking-pixels.example:443\r\n\r\n")
			} else {
				resp = p.do(t, tc.req)
			}
			ref := wantRefusal(t, resp, tc.status, tc.code)
			wantNothingReceived(t, stub)
			// Every refusal is in the ledger under its decision id; a
			// failure after the disclosure record is an outcome, which
			// follows asynchronously (Ledger.Submit), so wait for it.
			recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool {
				rs = recordsOf(rs, ref.DecisionID)
				return len(rs) > 0 && rs[len(rs)-1].Kind != "disclosure"
			})
			last := recordsOf(recs, ref.DecisionID)
			if got := last[len(last)-1]; got.Outcome != tc.code || got.Status != tc.status {
				t.Errorf("ledger records %q/%d for the refusal, want %q/%d", got.Outcome, got.Status, tc.code, tc.status)
			}
		})
	}

	t.Run("vendor timeout", func(t *testing.T) {
		stub.Reset()
		start := time.Now()
		resp := p.do(t, request{Method: "POST", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/",
			Header: hdr("Content-Type", "application/json", "X-Data-Purpose", "event_registration", "X-Data-Subject", "u-123"),
			Body:   payload(t, "attendee.json")})
		ref := wantRefusal(t, resp, 504, "vendor_timeout")
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Errorf("504 after %v; --upstream-timeout is 500ms", d)
		}
		wantNothingReceived(t, stub)
		// A timeout is the vendor being slow after the disclosure: it did
		// receive the minimized request, and the ledger says so.
		got := onlyReceived(t, slow)
		if want := `{"email":"attendee@example.org","first_name":"Jan","last_name":"Zielinski"}`; string(got.Body) != want {
			t.Errorf("the slow vendor received %s, want the minimized %s", got.Body, want)
		}
		recs := recordsOf(waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool {
			return len(recordsOf(rs, ref.DecisionID)) >= 2
		}), ref.DecisionID)
		kindOf(t, recs, "disclosure")
		if o := kindOf(t, recs, "outcome"); o.Outcome != "vendor_timeout" {
			t.Errorf("outcome %q, want vendor_timeout", o.Outcome)
		}
	})

	t.Run("declared Content-Length over --max-body is refused unread", func(t *testing.T) {
		stub.Reset()
		// Headers that announce 100 MiB, then only a few bytes: the proxy must
		// answer 413 without waiting for (or reading) the body.
		head := "POST http://webinarco.zendesk.com/api/v2/tickets.json HTTP/1.1\r\n" +
			"Host: webinarco.zendesk.com\r\nContent-Type: application/json\r\n" +
			"X-Data-Purpose: support\r\nContent-Length: 104857600\r\n\r\n{\"ticket\":"
		start := time.Now()
		resp := rawRequest(t, p.Egress, head)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("413 took %v", d)
		}
		wantRefusal(t, resp, 413, "body_too_large")
		wantNothingReceived(t, stub)
	})

	t.Run("allowed request still goes through", func(t *testing.T) {
		stub.Reset()
		wantOK(t, p.do(t, ticketRequest(t)))
		onlyReceived(t, stub)
	})
}

// rawRequest writes raw to addr and reads one response, with a deadline.
func rawRequest(t testing.TB, addr, raw string) response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// TestStatusNoValidPolicy starts the proxy on a policies directory whose Rego
// does not compile: it serves, /readyz says 503, and every request is
// refused 503 no_policy.
func TestStatusNoValidPolicy(t *testing.T) {
	t.Parallel()
	dir := copyPolicies(t)
	broken := filepath.Join(dir, "egress.rego")
	b := readFile(t, broken)
	if err := os.WriteFile(broken, append(b, []byte("\ndecision := {\"allow\": true if {\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyConfig{Policies: dir, NoReady: true})
	if code, body := p.adminGet(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d %q, want 503", code, body)
	}
	if code, _ := p.adminGet(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d, want 200 (the process is alive)", code)
	}
	for _, r := range []request{ticketRequest(t), paymentRequest(t)} {
		wantRefusal(t, p.do(t, r), 503, "no_policy")
	}
	wantNothingReceived(t, p.Stub)
	logs := p.logs.String()
	if !strings.Contains(logs, "egress.rego:") {
		t.Errorf("the log does not name the broken file:line")
	}
}
