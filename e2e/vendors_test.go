package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// appHeaders are what a real app's HTTP client adds to every call: its
// credentials for the vendor (allowed through by every contract), an Accept,
// and headers no contract allows (User-Agent, a request id, a cookie) that
// must never reach a vendor.
func appHeaders(kv ...string) [][2]string {
	return append(hdr(
		"Authorization", "Bearer e2e-vendor-token",
		"Accept", "application/json",
		"User-Agent", "webinar-co-app/3.2 (maria.kowalska@example.org)",
		"X-Request-Id", "req-81be2",
		"Cookie", "session=sess_81be2",
	), hdr(kv...)...)
}

// vendorCase is one realistic request to a bundled vendor; what the vendor
// receives is compared byte for byte with testdata/golden/<name>.golden.
type vendorCase struct {
	name    string
	service string // --service of the proxy; "" = billing
	req     request
	vendor  string // the vendor id the ledger must record
}

func vendorCases(t testing.TB) []vendorCase {
	purpose := func(p string) [][2]string { return hdr("X-Data-Purpose", p, "X-Data-Subject", "u-123") }
	with := func(a, b [][2]string) [][2]string { return append(append([][2]string(nil), a...), b...) }
	return []vendorCase{
		{name: "stripe-payment-intent", vendor: "stripe", req: request{
			Method: "POST", URL: "http://api.stripe.com/v1/payment_intents",
			Header: with(appHeaders("Content-Type", "application/x-www-form-urlencoded",
				"Idempotency-Key", "b7d1e3a0-5a7e-4a53-9c62-6f1f6b2d2a11", "Stripe-Version", "2024-06-20"), purpose("payment")),
			Body: payload(t, "payment_intent.form")}},
		{name: "stripe-customer", vendor: "stripe", req: request{
			Method: "POST", URL: "http://api.stripe.com/v1/customers",
			Header: with(appHeaders("Content-Type", "application/x-www-form-urlencoded", "Stripe-Version", "2024-06-20"), purpose("payment")),
			Body:   payload(t, "customer.form")}},
		{name: "stripe-customer-read", vendor: "stripe", req: request{
			Method: "GET", URL: "http://api.stripe.com/v1/customers/cus_9f3b2c?expand=default_source&email=maria.kowalska%40example.org",
			Header: with(appHeaders(), purpose("payment"))}},
		{name: "zendesk-ticket", vendor: "zendesk", req: request{
			Method: "POST", URL: "http://webinarco.zendesk.com/api/v2/tickets.json",
			Header: with(appHeaders("Content-Type", "application/json"), purpose("support")),
			Body:   payload(t, "ticket.json")}},
		{name: "eventbrite-attendee", vendor: "eventbrite", req: request{
			Method: "POST", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/",
			Header: with(appHeaders("Content-Type", "application/json"), purpose("event_registration")),
			Body:   payload(t, "attendee.json")}},
		{name: "eventbrite-attendee-list", vendor: "eventbrite", req: request{
			Method: "GET", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/?continuation=dGhlIG5leHQ&status=attending&email=attendee%40example.org",
			Header: with(appHeaders(), purpose("event_registration"))}},
		{name: "mailchimp-member", vendor: "mailchimp", req: request{
			Method: "POST", URL: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members",
			Header: with(appHeaders("Content-Type", "application/json"), purpose("marketing")),
			Body:   payload(t, "member.json")}},
		{name: "hosting-recording-upload", vendor: "hosting", req: request{
			Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/2026/wb_101.mp4?partNumber=1&uploadId=VXBsb2FkSWQ&x-id=UploadPart",
			Header: with(appHeaders("Content-Type", "video/mp4",
				"Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==",
				"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD",
				"X-Amz-Date", "20261120T150000Z",
				"X-Amz-Meta-Speaker", "Maria Kowalska",
				"X-Amz-Meta-Attendee-Email", "maria.kowalska@example.org"), purpose("hosting")),
			Body: payload(t, "recording-part1.bin")}},
		{name: "sister-events-from-billing", vendor: "sister", req: request{
			Method: "POST", URL: "http://ingest.webinar-group.example/v1/events",
			Header: with(appHeaders("Content-Type", "application/json"), purpose("processing")),
			Body:   payload(t, "events.json")}},
		{name: "sister-events-from-analytics", service: "analytics", vendor: "sister", req: request{
			Method: "POST", URL: "http://ingest.webinar-group.example/v1/events",
			Header: with(appHeaders("Content-Type", "application/json"), purpose("processing")),
			Body:   payload(t, "events.json")}},
		{name: "legal-disclosure", vendor: "legal", req: request{
			Method: "POST", URL: "http://disclosures.legal.example/v1/disclosures",
			Header: with(appHeaders("Content-Type", "application/json"), hdr(
				"X-Data-Purpose", "legal", "X-Data-Subject", "u-123",
				"X-Legal-Basis", "SUBP-2026-0117",
				"X-Data-Requester", "anna.legal@webinar-co.example",
				"X-Legal-Approver", "piotr.dpo@webinar-co.example")),
			Body: payload(t, "disclosure.json")}},
	}
}

// TestVendorGolden sends a realistic request to every bundled vendor, seven
// ways — an HTTP_PROXY client (absolute-form), an origin-form request with a
// Host header, the real curl -x, and, in drop-in mode (HTTPS_PROXY, Pare's
// CA trusted), curl, a Go program, Python's urllib and Node's https module
// calling the https:// URL unchanged — and asserts that each time the vendor
// received exactly the golden bytes: request line, Host, every header, the
// minimized body. All ways must agree, so one golden serves all.
func TestVendorGolden(t *testing.T) {
	t.Parallel()
	consents, err := filepath.Abs(testdata("consents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	proxies := map[string]*proxyProc{}
	proxyFor := func(service string) *proxyProc {
		if service == "" {
			service = "billing"
		}
		if p, ok := proxies[service]; ok {
			return p
		}
		p := startProxy(t, proxyConfig{Service: service, Consents: consents})
		proxies[service] = p
		return p
	}
	clients := []struct {
		name string
		send func(t *testing.T, p *proxyProc, r request) response
	}{
		{"http-proxy", func(t *testing.T, p *proxyProc, r request) response { return p.do(t, r) }},
		{"origin-form", func(t *testing.T, p *proxyProc, r request) response { return p.doOrigin(t, r) }},
		{"curl", func(t *testing.T, p *proxyProc, r request) response { return p.curl(t, r) }},
		// Drop-in mode: unchanged HTTPS clients through HTTPS_PROXY.
		{"https-curl", func(t *testing.T, p *proxyProc, r request) response { return p.curlHTTPS(t, r) }},
		{"https-go", func(t *testing.T, p *proxyProc, r request) response { return p.goClient(t, r) }},
		{"https-python", func(t *testing.T, p *proxyProc, r request) response { return p.pythonClient(t, r) }},
		{"https-node", func(t *testing.T, p *proxyProc, r request) response { return p.nodeClient(t, r) }},
	}
	for _, tc := range vendorCases(t) {
		p := proxyFor(tc.service)
		for _, cl := range clients {
			t.Run(tc.name+"/"+cl.name, func(t *testing.T) {
				p.Stub.Reset()
				resp := cl.send(t, p, tc.req)
				id := wantOK(t, resp)
				got := onlyReceived(t, p.Stub)
				wantNoControlHeaders(t, got)
				if !got.TLS {
					t.Error("the vendor was reached without TLS")
				}
				golden(t, tc.name+".golden", renderReceived(got))
				// The vendor's answer comes back unchanged.
				if want := fmt.Sprintf("{\"ok\":true,\"received_bytes\":%d}\n", len(got.Body)); string(resp.Body) != want {
					t.Errorf("response body %q, want the vendor's %q", resp.Body, want)
				}
				recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, id)) >= 2 })
				d := kindOf(t, recordsOf(recs, id), "disclosure")
				if d.Vendor != tc.vendor || d.DryRun {
					t.Errorf("disclosure record vendor %q dry_run %v, want %q false", d.Vendor, d.DryRun, tc.vendor)
				}
				o := kindOf(t, recordsOf(recs, id), "outcome")
				if o.Outcome != "200" {
					t.Errorf("outcome record %q, want 200", o.Outcome)
				}
				// The outcome names its subject and purpose (a search for a
				// person finds it) but not again what its disclosure says.
				if o.Subject != d.Subject || o.Purpose != d.Purpose || o.Vendor != d.Vendor {
					t.Errorf("outcome subject/purpose/vendor %q/%q/%q, disclosure %q/%q/%q",
						o.Subject, o.Purpose, o.Vendor, d.Subject, d.Purpose, d.Vendor)
				}
				if o.Host != "" || o.Path != "" || len(o.Transforms) > 0 || len(o.FieldsSent) > 0 {
					t.Errorf("outcome record repeats its disclosure: %+v", o)
				}
				if d.BytesOut != int64(len(got.Body)) {
					t.Errorf("ledger bytes_out %d, the vendor received %d", d.BytesOut, len(got.Body))
				}
				if !strings.HasPrefix(tc.name, "hosting") && len(d.FieldsSent) == 0 && tc.req.Body != nil {
					t.Errorf("disclosure record lists no fields sent")
				}
			})
		}
	}
}
