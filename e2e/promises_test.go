package e2e

// The promises of Webinar Co's privacy policy (issue 5), each enforced
// through the running binary. The README maps promise → enforcement → the
// test names below.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// consentsFile is the absolute path of testdata/consents.yaml: u-123 granted
// marketing, u-456 has nothing, u-789 granted then withdrew, u-321 granted
// analytics.
func consentsFile(t testing.TB) string {
	t.Helper()
	f, err := filepath.Abs(testdata("consents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// memberRequest subscribes subject to the newsletter at Mailchimp.
func memberRequest(t testing.TB, subject string) request {
	return request{
		Method: "POST", URL: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", "marketing", "X-Data-Subject", subject),
		Body: payload(t, "member.json"),
	}
}

// attendeeRequest registers an attendee at Eventbrite under purpose.
func attendeeRequest(t testing.TB, purpose, subject string, body []byte) request {
	if body == nil {
		body = payload(t, "attendee.json")
	}
	return request{
		Method: "POST", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", purpose, "X-Data-Subject", subject),
		Body: body,
	}
}

// legalRequest is a subscriber-information disclosure with the given legal
// headers (name, value pairs).
func legalRequest(t testing.TB, kv ...string) request {
	return request{
		Method: "POST", URL: "http://disclosures.legal.example/v1/disclosures",
		Header: append(hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", "legal", "X-Data-Subject", "u-123"), hdr(kv...)...),
		Body: payload(t, "disclosure.json"),
	}
}

// eventsRequest sends usage events to the sister company under purpose.
func eventsRequest(t testing.TB, purpose string) request {
	return request{
		Method: "POST", URL: "http://ingest.webinar-group.example/v1/events",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", purpose, "X-Data-Subject", "u-123"),
		Body: payload(t, "events.json"),
	}
}

// refused asserts a refusal and that the vendor received nothing.
func refused(t testing.TB, p *proxyProc, r request, status int, code string) refusal {
	t.Helper()
	p.Stub.Reset()
	ref := wantRefusal(t, p.do(t, r), status, code)
	wantNothingReceived(t, p.Stub)
	return ref
}

// allowed asserts a 200 and returns the decision id and what the vendor got.
func allowed(t testing.TB, p *proxyProc, r request) (string, []byte) {
	t.Helper()
	p.Stub.Reset()
	id := wantOK(t, p.do(t, r))
	got := onlyReceived(t, p.Stub)
	wantNoControlHeaders(t, got)
	return id, got.Body
}

// --- Promise 2: no selling or renting for marketing without permission.

func TestPromiseMarketingConsentGranted(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	id, body := allowed(t, p, memberRequest(t, "u-123"))
	if bytes.Contains(body, []byte("PHONE")) || bytes.Contains(body, []byte("ip_signup")) {
		t.Errorf("Mailchimp received more than the newsletter needs: %s", body)
	}
	d := kindOf(t, recordsOf(readLedger(t, p.Ledger), id), "disclosure")
	if d.Vendor != "mailchimp" || d.Purpose != "marketing" || d.Subject != "u-123" {
		t.Errorf("disclosure record %s/%s/%s", d.Vendor, d.Purpose, d.Subject)
	}
}

func TestPromiseMarketingConsentMissing(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	refused(t, p, memberRequest(t, "u-456"), 403, "consent_required")
	// No subject at all: nobody's consent can be looked up.
	refused(t, p, memberRequest(t, "u-456").without("X-Data-Subject"), 403, "consent_required")
	// Without any consent source the answer is the same.
	bare := startProxy(t, proxyConfig{})
	refused(t, bare, memberRequest(t, "u-123"), 403, "consent_required")
}

func TestPromiseMarketingConsentWithdrawn(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	ref := refused(t, p, memberRequest(t, "u-789"), 403, "consent_required")
	if !strings.Contains(ref.Reason, "withdrawn") {
		t.Errorf("reason %q does not say the consent was withdrawn", ref.Reason)
	}
	// Passing the withdrawal on to the partner (unsubscribe) is always allowed.
	unsubscribe := request{Method: "PATCH", URL: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members/5d41402abc4b2a76b9719d911017c592",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", "opt_out", "X-Data-Subject", "u-789"),
		Body: []byte(`{"status":"unsubscribed","email_address":"maria.kowalska@example.org"}`)}
	if _, body := allowed(t, p, unsubscribe); string(body) != `{"status":"unsubscribed"}` {
		t.Errorf("unsubscribe sent %s", body)
	}
}

func TestPromiseMarketingConsentFileHotReload(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "consents.yaml")
	granted := readFile(t, consentsFile(t))
	writeAtomic(t, f, granted)
	p := startProxy(t, proxyConfig{Consents: f})
	allowed(t, p, memberRequest(t, "u-123"))
	// u-123 unsubscribes: the withdrawal is appended to the consents file.
	withdrawal := strings.Replace(string(granted), "  u-789:\n", `    - purpose: marketing
      status: withdrawn
      time: 2026-11-15T08:00:00Z
      evidence: {action: "clicked unsubscribe", where: "newsletter footer"}
  u-789:
`, 1)
	writeAtomic(t, f, []byte(withdrawal))
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.Stub.Reset()
		resp := p.do(t, memberRequest(t, "u-123"))
		if resp.Status == 403 {
			wantRefusal(t, resp, 403, "consent_required")
			wantNothingReceived(t, p.Stub)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the withdrawal was written, Mailchimp still gets u-123 (%d)", resp.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPromiseMarketingGPCOptOut(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	// Granted in the store, but the browser says "do not sell or share".
	refused(t, p, memberRequest(t, "u-123").with("X-Data-GPC", "1"), 403, "gpc_opt_out")
	// The opt-out itself still reaches the partner.
	del := request{Method: "POST", URL: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members/5d41402abc4b2a76b9719d911017c592/actions/delete-permanent",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "X-Data-Purpose", "opt_out", "X-Data-Subject", "u-123", "X-Data-GPC", "1")}
	allowed(t, p, del)
	// Without the signal the same request goes.
	allowed(t, p, memberRequest(t, "u-123"))
}

// --- Promise 3: every request declares its purpose; other purposes need consent.

func TestPromisePurposeRequired(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	for _, r := range []request{ticketRequest(t), paymentRequest(t), memberRequest(t, "u-123")} {
		refused(t, p, r.without("X-Data-Purpose"), 403, "purpose_required")
		refused(t, p, r.without("X-Data-Purpose").with("X-Data-Purpose", "  "), 403, "purpose_required")
	}
}

func TestPromisePurposeOffContract(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	// Eventbrite serves event_registration; analytics is outside its
	// contract and needs the subject's explicit consent for analytics.
	ref := refused(t, p, attendeeRequest(t, "analytics", "u-456", nil), 403, "consent_required")
	if !strings.Contains(ref.Reason, "analytics") {
		t.Errorf("reason %q does not name the purpose", ref.Reason)
	}
	allowed(t, p, attendeeRequest(t, "analytics", "u-321", nil)) // u-321 ticked the analytics box
	// A consent for one purpose is not a consent for another.
	refused(t, p, attendeeRequest(t, "research", "u-321", nil), 403, "consent_required")
	// Contracts that allow no other purpose refuse outright, consent or not.
	refused(t, p, eventsRequest(t, "marketing"), 403, "purpose_not_allowed")
	refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-1", "X-Data-Requester", "a@x", "X-Legal-Approver", "b@x").
		without("X-Data-Purpose").with("X-Data-Purpose", "support"), 403, "purpose_not_allowed")
	// A purpose the contract serves, on a route that does not serve it.
	refused(t, p, memberRequest(t, "u-123").without("X-Data-Purpose").with("X-Data-Purpose", "opt_out"), 403, "purpose_not_allowed")
}

// --- Promise 4: card numbers only to the payment processor, over TLS.

var cardRun = regexp.MustCompile(`\d(?:[ -]?\d){12,18}`)

func TestPromiseCardNumberRedactedForSupport(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	id, body := allowed(t, p, ticketRequest(t).withBody(payload(t, "ticket-card.json")))
	if m := cardRun.Find(body); m != nil {
		t.Errorf("Zendesk received a card number %q: %s", m, body)
	}
	if !bytes.Contains(body, []byte("REDACTED]")) || !bytes.Contains(body, []byte("charged twice")) {
		t.Errorf("the ticket text should arrive with the card number redacted: %s", body)
	}
	// The ledger says where a card number was redacted (the path, never the number).
	d := kindOf(t, recordsOf(readLedger(t, p.Ledger), id), "disclosure")
	if len(d.CardsRedacted) == 0 || d.CardsRedacted[0] != "ticket/comment/body" {
		t.Errorf("disclosure record cards_redacted = %v, want [ticket/comment/body]", d.CardsRedacted)
	}
}

func TestPromiseCardNumberBlockedForNonProcessor(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Consents: consentsFile(t)})
	// A card number typed into a field Eventbrite does receive: refused.
	for _, card := range []string{"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555555555554444"} {
		body := []byte(fmt.Sprintf(`{"email":"attendee@example.org","first_name":"Jan","last_name":"Zielinski %s"}`, card))
		refused(t, p, attendeeRequest(t, "event_registration", "u-123", body), 403, "card_number")
	}
	// Mailchimp is no payment processor either.
	member := []byte(`{"email_address":"maria.kowalska@example.org","status":"subscribed","merge_fields":{"FNAME":"4242424242424242","LNAME":"Kowalska"}}`)
	refused(t, p, memberRequest(t, "u-123").withBody(member), 403, "card_number")
	// A card number in a field the contract removes never leaves: no refusal.
	body := []byte(`{"email":"attendee@example.org","first_name":"Jan","last_name":"Zielinski","answers":[{"question":"Card","answer":"4111 1111 1111 1111"}]}`)
	if _, got := allowed(t, p, attendeeRequest(t, "event_registration", "u-123", body)); cardRun.Match(got) {
		t.Errorf("Eventbrite received a card number: %s", got)
	}
	// Not a card: a 16-digit run that fails the Luhn check goes through.
	body = []byte(`{"email":"attendee@example.org","first_name":"Jan","last_name":"Order 1234567812345678"}`)
	allowed(t, p, attendeeRequest(t, "event_registration", "u-123", body))
}

// --- Promise 5: need-to-know between services.

func TestPromiseCardDataOnlyFromBilling(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	ref := refused(t, p, paymentRequest(t), 403, "source_not_allowed")
	if !strings.Contains(ref.Reason, "billing") {
		t.Errorf("reason %q does not say which service may send card data", ref.Reason)
	}
	// The same service may still do what needs no card data.
	customer := request{Method: "POST", URL: "http://api.stripe.com/v1/customers",
		Header: hdr("Authorization", "Bearer sk_test_e2e", "Content-Type", "application/x-www-form-urlencoded", "X-Data-Purpose", "payment"),
		Body:   payload(t, "customer.form")}
	allowed(t, p, customer)
	// The sister company gets the attendee reference only from analytics:
	// from support it is stripped, not refused.
	_, body := allowed(t, p, eventsRequest(t, "processing"))
	if bytes.Contains(body, []byte("attendee_ref")) {
		t.Errorf("service support sent attendee_ref to the sister company: %s", body)
	}
	billing := startProxy(t, proxyConfig{Service: "billing"})
	allowed(t, billing, paymentRequest(t))
}

// --- Promise 6: legal disclosures only with a legal basis and a second approver.

func TestPromiseLegalNeedsBasis(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	refused(t, p, legalRequest(t, "X-Data-Requester", "anna.legal@webinar-co.example", "X-Legal-Approver", "piotr.dpo@webinar-co.example"),
		403, "legal_basis_required")
	refused(t, p, legalRequest(t, "X-Legal-Basis", "   ", "X-Data-Requester", "anna.legal@webinar-co.example", "X-Legal-Approver", "piotr.dpo@webinar-co.example"),
		403, "legal_basis_required")
}

func TestPromiseLegalNeedsApprover(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117", "X-Data-Requester", "anna.legal@webinar-co.example"),
		403, "approver_required")
	refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117", "X-Legal-Approver", "piotr.dpo@webinar-co.example"),
		403, "approver_required")
}

func TestPromiseLegalApproverDiffersFromRequester(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117",
		"X-Data-Requester", "anna.legal@webinar-co.example", "X-Legal-Approver", "Anna.Legal@webinar-co.example "), 403, "approver_required")
	// The requester's own name in fullwidth letters is still one person.
	refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117",
		"X-Data-Requester", "anna.legal@webinar-co.example", "X-Legal-Approver", "ａｎｎａ.legal@webinar-co.example"), 403, "approver_required")
	// Invisible characters to pass as a second person: refused outright.
	for _, approver := range []string{"anna\u200b.legal@webinar-co.example", "anna.legal@webinar-co.example\u00ad"} {
		refused(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117",
			"X-Data-Requester", "anna.legal@webinar-co.example", "X-Legal-Approver", approver), 400, "bad_request")
	}
}

func TestPromiseLegalWithBasisAndApprover(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	id, body := allowed(t, p, legalRequest(t, "X-Legal-Basis", "SUBP-2026-0117",
		"X-Data-Requester", "anna.legal@webinar-co.example", "X-Legal-Approver", "piotr.dpo@webinar-co.example"))
	if bytes.Contains(body, []byte("last_login_ip")) || bytes.Contains(body, []byte("card_last4")) {
		t.Errorf("the court received more than the subscriber information: %s", body)
	}
	d := kindOf(t, recordsOf(readLedger(t, p.Ledger), id), "disclosure")
	if d.LegalBasis != "SUBP-2026-0117" || d.Requester != "anna.legal@webinar-co.example" || d.Approver != "piotr.dpo@webinar-co.example" {
		t.Errorf("ledger legal_basis %q requester %q approver %q", d.LegalBasis, d.Requester, d.Approver)
	}
	// Legal disclosures are counted on their own.
	if _, exposition := p.adminGet(t, "/metrics"); metricValue(exposition, "pare_egress_legal_disclosures_total", `vendor="legal"`) != 1 {
		t.Error("pare_egress_legal_disclosures_total{vendor=\"legal\"} is not 1")
	}
	p.Stop(t)
	out, errOut, code := runCLI(t, "ledger", "report", "--subject", "u-123", "--format", "csv", p.Ledger)
	if code != 0 || !strings.Contains(out, "SUBP-2026-0117") {
		t.Errorf("report exit %d does not show the legal basis:\n%s%s", code, out, errOut)
	}
}

// --- Promise 7: the sister company, for processing and storage only.

func TestPromiseSisterCompanyProcessingOnly(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "analytics", Consents: consentsFile(t)})
	_, body := allowed(t, p, eventsRequest(t, "processing"))
	for _, leak := range []string{"maria", "83.24.117.5", "Kowalska", "att_5521", "batch_id"} {
		if bytes.Contains(body, []byte(leak)) {
			t.Errorf("the sister company received %q: %s", leak, body)
		}
	}
	archive := request{Method: "PUT", URL: "http://ingest.webinar-group.example/v1/archive/recordings/2026/wb_101.mp4",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "video/mp4", "X-Data-Purpose", "storage"),
		Body:   payload(t, "recording-part1.bin")}
	if _, got := allowed(t, p, archive); !bytes.Equal(got, archive.Body) {
		t.Error("the archived recording was changed")
	}
	// Marketing is refused even for a subject who granted marketing consent.
	refused(t, p, eventsRequest(t, "marketing"), 403, "purpose_not_allowed")
	// Storage is not processing: the events route serves processing only.
	refused(t, p, eventsRequest(t, "storage"), 403, "purpose_not_allowed")
}

// --- The consent service (--consent-url).

// consentService is a local consent service: GET /{subject} answers the
// subject's consents, 404 for an unknown one, or fails when told to.
type consentService struct {
	mu     sync.Mutex
	state  map[string]string // subject -> marketing status
	status int               // non-zero: answer this status instead
	hits   int
}

func (c *consentService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hits++
	if c.status != 0 {
		http.Error(w, "consent store unavailable", c.status)
		return
	}
	subject := strings.TrimPrefix(r.URL.Path, "/")
	st, ok := c.state[subject]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ev := map[string]any{"purpose": "marketing", "status": st, "time": "2026-10-01T10:00:00Z",
		"evidence": map[string]string{"action": "checked 'Send me product news'", "where": "signup form /register", "policy_version": "2026-09"}}
	if st == "withdrawn" {
		ev["time"] = "2026-11-01T10:00:00Z"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"subject": subject, "consents": []any{ev}})
}

func (c *consentService) set(subject, status string) {
	c.mu.Lock()
	c.state[subject] = status
	c.mu.Unlock()
}

func (c *consentService) fail(status int) {
	c.mu.Lock()
	c.status = status
	c.mu.Unlock()
}

func startConsentService(t testing.TB) (*consentService, *httptest.Server) {
	cs := &consentService{state: map[string]string{"u-123": "granted"}}
	srv := httptest.NewServer(cs)
	t.Cleanup(srv.Close)
	return cs, srv
}

func TestPromiseConsentServiceGrantedAndMissing(t *testing.T) {
	t.Parallel()
	cs, srv := startConsentService(t)
	p := startProxy(t, proxyConfig{ConsentURL: srv.URL})
	allowed(t, p, memberRequest(t, "u-123"))
	refused(t, p, memberRequest(t, "u-456"), 403, "consent_required") // 404: no consents
	cs.mu.Lock()
	hits := cs.hits
	cs.mu.Unlock()
	if hits == 0 {
		t.Error("the consent service was never asked")
	}
}

func TestPromiseConsentServiceWithdrawalWithinTTL(t *testing.T) {
	t.Parallel()
	cs, srv := startConsentService(t)
	p := startProxy(t, proxyConfig{ConsentURL: srv.URL, Args: []string{"--consent-ttl", "200ms"}})
	allowed(t, p, memberRequest(t, "u-123"))
	cs.set("u-123", "withdrawn")
	time.Sleep(300 * time.Millisecond) // one TTL
	refused(t, p, memberRequest(t, "u-123"), 403, "consent_required")
}

func TestPromiseConsentServiceDown(t *testing.T) {
	t.Parallel()
	t.Run("500", func(t *testing.T) {
		t.Parallel()
		cs, srv := startConsentService(t)
		cs.fail(http.StatusInternalServerError)
		p := startProxy(t, proxyConfig{ConsentURL: srv.URL})
		refused(t, p, memberRequest(t, "u-123"), 503, "consent_unavailable")
		// Requests that need no consent go on.
		allowed(t, p, paymentRequest(t))
		allowed(t, p, ticketRequest(t))
		_, m := p.adminGet(t, "/metrics")
		if v := metricValue(m, "pare_consent_lookup_errors_total"); v < 1 {
			t.Errorf("pare_consent_lookup_errors_total = %v, want >= 1", v)
		}
	})
	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, proxyConfig{ConsentURL: "http://" + closedAddr(t)})
		refused(t, p, memberRequest(t, "u-123"), 503, "consent_unavailable")
		refused(t, p, attendeeRequest(t, "analytics", "u-321", nil), 503, "consent_unavailable")
		allowed(t, p, paymentRequest(t))
	})
}
