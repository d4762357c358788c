package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/pipeline"
	"github.com/pare-dev/pare/internal/vendorstub"
)

// sensitiveValues are payload values of the sample requests (and the app's
// credentials): none may ever appear in the ledger, which records field
// names only.
// "+48 601", not "+48": the signing key's id in the startup log is hex
// after a "+" ("pare-ledger+480b75ee+..."), which began with 48 in one run
// of 256; a space is in no hex or base64 text Pare writes.
var sensitiveValues = []string{
	"maria.kowalska@example.org", "Kowalska", "4242424242424242", "4242 4242 4242 4242",
	"601 234 567", "+48 601", "83.24.117.5", "PL5261040828", "0061x00000AbCdE", "ord_7Q2xK9",
	"sk_test_e2e", "e2e-vendor-token", "sess_81be2", "attendee@example.org", "Zielinski",
	"Cannot join webinar", "jan.nowak",
}

// TestDryRun runs the proxy with --dry-run: the vendor receives the app's
// original payload (minus Pare's own X-Data-* headers) and the ledger
// records what would have been removed. Dry run relaxes masking only:
// refusals (an unknown vendor, a route the contract does not allow) are
// enforced, so the sidecar never becomes an open proxy, and a card number
// the guard redacts never leaves unredacted.
func TestDryRun(t *testing.T) {
	t.Parallel()
	const tracker = "api.tracking-pixels.example"
	stub, err := vendorstub.Start(append(append([]string(nil), vendorHosts...), tracker), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stub.Close() })
	p := startProxy(t, proxyConfig{Stub: stub, Args: []string{"--dry-run", "--resolve", tracker + ":443:" + stub.Addr}})

	t.Run("allowed request: original payload, removals recorded", func(t *testing.T) {
		p.Stub.Reset()
		req := ticketRequest(t).with("X-Request-Id", "req-81be2")
		id := wantOK(t, p.do(t, req))
		got := onlyReceived(t, p.Stub)
		if !bytes.Equal(got.Body, req.Body) {
			t.Errorf("dry run changed the body:\n got %s\nwant %s", got.Body, req.Body)
		}
		wantNoControlHeaders(t, got)
		if got.Header.Get("X-Request-Id") != "req-81be2" {
			t.Errorf("dry run must forward the app's other headers; X-Request-Id missing")
		}
		d := kindOf(t, recordsOf(readLedger(t, p.Ledger), id), "disclosure")
		if !d.DryRun {
			t.Error("disclosure record: dry_run false")
		}
		if len(d.FieldsRemoved) == 0 {
			t.Error("disclosure record lists no fields_removed: dry run must record what would have been removed")
		}
		// Named by a contract, the key is recorded; custom_fields is not,
		// so it is a placeholder (see TestLedgerHoldsNoPayloadNames).
		for _, want := range []string{"ticket/metadata", "ticket/(key)"} {
			if !containsPrefix(d.FieldsRemoved, want) {
				t.Errorf("fields_removed %v lacks %s", d.FieldsRemoved, want)
			}
		}
		if d.FieldsRemovedCount < len(d.FieldsRemoved) {
			t.Errorf("fields_removed_count %d < %d names listed", d.FieldsRemovedCount, len(d.FieldsRemoved))
		}
		if d.BytesOut != int64(len(req.Body)) {
			t.Errorf("bytes_out %d, want the original %d", d.BytesOut, len(req.Body))
		}
	})

	t.Run("refusals are enforced", func(t *testing.T) {
		for _, c := range []struct {
			req  request
			code string
		}{
			{request{Method: "DELETE", URL: "http://api.stripe.com/v1/customers/cus_9f3b2c",
				Header: hdr("Authorization", "Bearer sk_test_e2e", "X-Data-Purpose", "payment", "X-Data-Subject", "u-123")}, "route_not_allowed"},
			{request{Method: "POST", URL: "http://" + tracker + "/collect",
				Header: hdr("Content-Type", "application/json", "X-Data-Purpose", "analytics"),
				Body:   []byte(`{"email":"maria.kowalska@example.org"}`)}, "unknown_vendor"},
			{ticketRequest(t).without("X-Data-Purpose"), "purpose_required"},
		} {
			p.Stub.Reset()
			wantRefusal(t, p.do(t, c.req), 403, c.code)
			wantNothingReceived(t, p.Stub)
		}
	})

	t.Run("a card number is redacted even in dry run", func(t *testing.T) {
		p.Stub.Reset()
		id := wantOK(t, p.do(t, ticketRequest(t).withBody(payload(t, "ticket-card.json"))))
		got := onlyReceived(t, p.Stub)
		if m := cardRun.Find(got.Body); m != nil {
			t.Errorf("dry run sent a card number %q to Zendesk: %s", m, got.Body)
		}
		if d := kindOf(t, recordsOf(readLedger(t, p.Ledger), id), "disclosure"); d.DryRun {
			t.Error("the ledger says dry run, but the minimized body was sent")
		}
	})
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if s == prefix || strings.HasPrefix(s, prefix+"/") {
			return true
		}
	}
	return false
}

// TestLedgerVerifyQueryReport drives the ledger commands over a ledger the
// running proxy wrote: verify passes, query lists the subject's
// disclosures, report renders them, no payload value is in the file, and
// tampering (a changed byte, a deleted line, two swapped lines) is detected
// and named.
func TestLedgerVerifyQueryReport(t *testing.T) {
	t.Parallel()
	consents, _ := filepath.Abs(testdata("consents.yaml"))
	p := startProxy(t, proxyConfig{Consents: consents})
	for _, r := range []request{
		paymentRequest(t),
		ticketRequest(t),
		{Method: "POST", URL: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members",
			Header: hdr("Content-Type", "application/json", "X-Data-Purpose", "marketing", "X-Data-Subject", "u-123"),
			Body:   payload(t, "member.json")},
		{Method: "POST", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/",
			Header: hdr("Content-Type", "application/json", "X-Data-Purpose", "event_registration", "X-Data-Subject", "u-123"),
			Body:   payload(t, "attendee.json")},
	} {
		wantOK(t, p.do(t, r))
	}
	// A refusal is recorded too.
	wantRefusal(t, p.do(t, ticketRequest(t).without("X-Data-Purpose")), 403, "purpose_required")
	p.Stop(t) // flush and close the ledger
	led := p.Ledger

	t.Run("verify", func(t *testing.T) {
		out, errOut, code := runCLI(t, "ledger", "verify", led)
		if code != 0 {
			t.Fatalf("ledger verify exit %d: %s%s", code, out, errOut)
		}
		if !strings.HasPrefix(out, "ok:") {
			t.Errorf("verify printed %q", out)
		}
	})

	t.Run("no payload value in the ledger", func(t *testing.T) {
		b := readFile(t, led)
		for _, v := range sensitiveValues {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("the ledger contains the payload value %q", v)
			}
		}
	})

	// Logs never carry payload values, credentials or query strings either.
	t.Run("no payload value in the logs", func(t *testing.T) {
		logs := p.logs.String()
		if !strings.Contains(logs, `"msg":"egress"`) {
			t.Fatal("no egress log lines to check")
		}
		for _, v := range sensitiveValues {
			if strings.Contains(logs, v) {
				t.Errorf("the log contains the payload value %q", v)
			}
		}
	})

	t.Run("query", func(t *testing.T) {
		out, errOut, code := runCLI(t, "ledger", "query", "--subject", "u-123", "--json", led)
		if code != 0 {
			t.Fatalf("ledger query exit %d: %s", code, errOut)
		}
		sent := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r ledgerRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("query --json line %q: %v", line, err)
			}
			if r.Subject != "u-123" {
				t.Errorf("query returned a record of subject %q", r.Subject)
			}
			if r.Kind == "disclosure" {
				sent[r.Vendor] = r.FieldsSent
			}
		}
		for vendor, field := range map[string]string{"stripe": "amount", "zendesk": "ticket/subject",
			"mailchimp": "email_address", "eventbrite": "email"} {
			if !contains(sent[vendor], field) {
				t.Errorf("query: %s disclosure fields_sent %v lacks %s", vendor, sent[vendor], field)
			}
		}
		for _, v := range sensitiveValues {
			if strings.Contains(out, v) {
				t.Errorf("query output contains the payload value %q", v)
			}
		}
		// --vendor narrows it; the table form works too.
		out, _, code = runCLI(t, "ledger", "query", "--subject", "u-123", "--vendor", "stripe", led)
		if code != 0 || !strings.Contains(out, "stripe") || strings.Contains(out, "zendesk") {
			t.Errorf("query --vendor stripe exit %d:\n%s", code, out)
		}
		if _, _, code := runCLI(t, "ledger", "query", led); code != 2 {
			t.Errorf("query without --subject exit %d, want 2", code)
		}
	})

	t.Run("report", func(t *testing.T) {
		for _, format := range []string{"json", "csv", "html"} {
			out, errOut, code := runCLI(t, "ledger", "report", "--subject", "u-123", "--format", format, led)
			if code != 0 {
				t.Errorf("report --format %s exit %d: %s", format, code, errOut)
				continue
			}
			low := strings.ToLower(out)
			for _, vendor := range []string{"stripe", "zendesk", "mailchimp", "eventbrite"} {
				if !strings.Contains(low, vendor) {
					t.Errorf("report --format %s does not mention %s", format, vendor)
				}
			}
			// Recipients are identified by name and contract, not only by id.
			if !strings.Contains(out, "Zendesk (contract SUP-2024-07)") {
				t.Errorf("report --format %s does not identify Zendesk by name and contract", format)
			}
			for _, v := range sensitiveValues {
				if strings.Contains(out, v) {
					t.Errorf("report --format %s contains the payload value %q", format, v)
				}
			}
			switch format {
			case "json":
				if !json.Valid([]byte(out)) {
					t.Errorf("report --format json is not valid JSON")
				}
			case "html":
				if !strings.Contains(low, "<html") || strings.Contains(low, "<script src") || strings.Contains(low, "<link ") {
					t.Errorf("report --format html is not a self-contained page")
				}
			}
		}
		// PDF is a format now (printed by headless Chromium); an unknown format is still a usage error.
		if _, _, code := runCLI(t, "ledger", "report", "--subject", "u-123", "--format", "docx", led); code != 2 {
			t.Errorf("report --format docx exit %d, want 2", code)
		}
	})

	t.Run("tamper", func(t *testing.T) {
		lines := bytes.SplitAfter(readFile(t, led), []byte("\n"))
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if len(lines) < 5 {
			t.Fatalf("only %d records", len(lines))
		}
		join := func(ls [][]byte) []byte { return bytes.Join(ls, nil) }
		clone := func() [][]byte {
			out := make([][]byte, len(lines))
			for i, l := range lines {
				out[i] = append([]byte(nil), l...)
			}
			return out
		}
		changed := clone()
		i := bytes.Index(changed[2], []byte(`"method":"`))
		changed[2][i+len(`"method":"`)] ^= 0x20 // POST -> pOST
		deleted := append(clone()[:2], clone()[3:]...)
		swapped := clone()
		swapped[1], swapped[2] = swapped[2], swapped[1]
		cases := []struct {
			name    string
			content []byte
			line    int
			problem string
		}{
			{"one byte changed", join(changed), 3, "changed"},
			{"one line deleted", join(deleted), 3, "dropped"},
			{"two lines swapped", join(swapped), 2, "reordered"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				f := filepath.Join(t.TempDir(), "tampered.jsonl")
				if err := os.WriteFile(f, tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
				_, errOut, code := runCLI(t, "ledger", "verify", f)
				if code != 1 {
					t.Fatalf("verify of a tampered ledger exit %d, want 1: %s", code, errOut)
				}
				if want := fmt.Sprintf("%s:%d:", f, tc.line); !strings.Contains(errOut, want) || !strings.Contains(errOut, tc.problem) {
					t.Errorf("verify should name %s (%s); said:\n%s", want, tc.problem, errOut)
				}
			})
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestLedgerHoldsNoPayloadNames: an app that uses personal data as keys and
// path segments (an email as a map key, as a member id in the path, a
// customer's name as a header name) gets it minimised away, and the ledger
// names what was removed in the contracts' words only: placeholders and
// counts, never the data. The path is kept as a keyed hash that staff with
// the key can match.
func TestLedgerHoldsNoPayloadNames(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "marketing", Consents: consentsFile(t)})
	const email = "maria.kowalska@example.org"
	body := fmt.Sprintf(`{"email_address":%q,"status":"subscribed","merge_fields":{"FNAME":"Maria","MARIA KOWALSKA":"x"},%q:{"vip":true},"tags":[{"name":"card 4111"}]}`, email, email)
	path := "/3.0/lists/a1b2c3/members/" + email
	r := request{Method: "PUT", URL: "http://us21.api.mailchimp.com" + path,
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
			"X-Data-Purpose", "marketing", "X-Data-Subject", "u-123", "X-Kowalska-Maria", "1"),
		Body: []byte(body)}
	id := wantOK(t, p.do(t, r))
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, id)) >= 2 })
	raw := string(readFile(t, p.Ledger))
	for _, secret := range []string{email, "maria.kowalska", "MARIA KOWALSKA", "kowalska", "4111"} {
		if strings.Contains(strings.ToLower(raw), strings.ToLower(secret)) {
			t.Errorf("the ledger holds %q", secret)
		}
	}
	d := kindOf(t, recordsOf(recs, id), "disclosure")
	if d.Path != "/3.0/lists/*/members/*" {
		t.Errorf("path %q, want its route's pattern", d.Path)
	}
	key := bytes.TrimSpace(readFile(t, hmacKeyFile))
	if want := pipeline.PathHash(pipeline.PathKey(key), path); d.PathHash != want {
		t.Errorf("path_hash %q, want the keyed hash %q of the path sent", d.PathHash, want)
	}
	for _, want := range []string{"(key)", "merge_fields/(key)", "header:(header)"} {
		if !slices.Contains(d.FieldsRemoved, want) {
			t.Errorf("fields_removed %v lacks the placeholder %q", d.FieldsRemoved, want)
		}
	}
	if d.FieldsRemovedCount < 4 {
		t.Errorf("fields_removed_count %d, want every removed item counted", d.FieldsRemovedCount)
	}
}
