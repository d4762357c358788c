package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/headless/headlesstest"
)

func bundledCatalog(t testing.TB) *contract.Catalog {
	t.Helper()
	cs, err := contract.LoadDir("../../policies/contracts")
	if err != nil {
		t.Fatal(err)
	}
	k, err := contract.NewCatalog(cs)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// subjectRecords is Maria's (u-123) month with the bundled vendors, recorded the way the proxy
// records it: body paths as the filters report them, headers and query parameters prefixed.
func subjectRecords() []Record {
	at := func(d, h int) time.Time { return time.Date(2026, 10, d, h, 15, 0, 0, time.UTC) }
	hdr := []string{"header:authorization", "header:content-type", "header:accept"}
	disc := func(id string, tm time.Time, vendor, recipient, purpose, method, path string, fields ...string) Record {
		return Record{Kind: KindDisclosure, DecisionID: id, Time: tm, Vendor: vendor, Recipient: recipient,
			Purpose: purpose, Subject: "u-123", Service: "web", Method: method, Path: path, Revision: "r7",
			FieldsSent: append(fields, hdr...)}
	}
	out := func(id string, tm time.Time, status string) Record {
		return Record{Kind: KindOutcome, DecisionID: id, Time: tm, Outcome: status}
	}
	stripe := "Stripe (contract PSP-2024-03)"
	pay := disc("p1", at(2, 10), "stripe", stripe, "payment", "POST", "/v1/payment_intents",
		"amount", "currency", "description", "confirm", "payment_method_data/type", "payment_method_data/card/number",
		"payment_method_data/card/exp_month", "payment_method_data/card/exp_year", "payment_method_data/card/cvc",
		"payment_method_data/billing_details/address/country", "payment_method_data/billing_details/address/postal_code",
		"metadata/order_id", "header:idempotency-key")
	pay.Transformed = []string{"metadata/crm_id"}
	pay.Transforms = map[string]string{"metadata/crm_id": "hmac"}
	cust := disc("c1", at(2, 10), "stripe", stripe, "payment", "POST", "/v1/customers", "email", "name", "address/country", "address/postal_code")
	pay2 := disc("p2", at(19, 9), "stripe", stripe, "payment", "POST", "/v1/payment_intents", "amount", "currency", "payment_method")
	ticket := disc("t1", at(7, 16), "zendesk", "Zendesk (contract SUP-2024-07)", "support", "POST", "/api/v2/tickets.json",
		"ticket/subject", "ticket/comment/body", "ticket/priority", "ticket/requester/name", "ticket/requester/email", "ticket/via/channel")
	ticket.CardsRedacted = []string{"ticket/comment/body"}
	member := disc("m1", at(8, 12), "mailchimp", "Mailchimp (contract MKT-2025-01)", "marketing", "POST", "/3.0/lists/a1b2c3/members",
		"email_address", "status", "merge_fields/FNAME", "merge_fields/LNAME")
	unsub := disc("m2", at(24, 18), "mailchimp", "Mailchimp (contract MKT-2025-01)", "opt_out", "PATCH", "/3.0/lists/a1b2c3/members/5f1", "status")
	// Registered while a new Eventbrite rule was in dry run: the original payload left.
	reg := disc("e1", at(14, 11), "eventbrite", "Eventbrite (contract EVT-2025-02)", "event_registration", "POST", "/v3/events/wb_101/attendees/",
		"email", "first_name", "last_name")
	reg.DryRun, reg.FieldsRemoved = true, []string{"company", "job_title"}
	rec := disc("h1", at(15, 20), "hosting", "Example Cloud Object Storage (contract HOST-2023-11)", "hosting", "PUT", "/recordings/2026/wb_101/u-123.mp4")
	court := disc("l1", at(21, 14), "legal", "Legal Disclosures Channel (contract LEG-2024-05)", "legal", "POST", "/v1/disclosures",
		"reference", "account/id", "account/email", "account/name", "account/created_at")
	court.LegalBasis, court.Requester, court.Approver = "SUBP-2026-0117", "anna.legal@webinar-co.example", "piotr.dpo@webinar-co.example"
	refused := Record{Kind: KindRefusal, DecisionID: "x1", Time: at(9, 9), Vendor: "mailchimp", Purpose: "marketing",
		Subject: "u-123", Outcome: "gpc_opt_out", Status: 403}
	return []Record{
		cust, out("c1", at(2, 10), "200"), pay, out("p1", at(2, 10), "200"),
		ticket, out("t1", at(7, 16), "201"), member, out("m1", at(8, 12), "200"), refused,
		reg, out("e1", at(14, 11), "200"), rec, out("h1", at(15, 20), "200"),
		pay2, out("p2", at(19, 9), "402"), court, out("l1", at(21, 14), "201"), unsub, out("m2", at(24, 18), "200"),
	}
}

func subjectReport(t testing.TB) *Report {
	rep := BuildReportWith(subjectRecords(), ReportOptions{
		Subject: "u-123", Since: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Catalog: bundledCatalog(t), Audience: AudienceSubject,
		Company: "Webinar Co", Contact: "privacy@webinar-co.example",
	})
	rep.Generated = time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	return rep
}

func render(t testing.TB, rep *Report, write func(*bytes.Buffer, *Report) error) string {
	t.Helper()
	var buf bytes.Buffer
	if err := write(&buf, rep); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func htmlOf(b *bytes.Buffer, r *Report) error { return WriteHTML(b, r) }
func csvOf(b *bytes.Buffer, r *Report) error  { return WriteCSV(b, r) }
func jsonOf(b *bytes.Buffer, r *Report) error { return WriteJSON(b, r) }

func checkGolden(t *testing.T, file, got string) {
	t.Helper()
	golden := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from the output; run with -update and review the diff\n%s", golden, got)
	}
}

func TestSubjectReportGolden(t *testing.T) {
	rep := subjectReport(t)
	for _, tc := range []struct {
		file  string
		write func(*bytes.Buffer, *Report) error
	}{{"report_subject.golden.html", htmlOf}, {"report_subject.golden.csv", csvOf}, {"report_subject.golden.json", jsonOf}} {
		t.Run(tc.file, func(t *testing.T) { checkGolden(t, tc.file, render(t, rep, tc.write)) })
	}
}

// What a person reads: the contracts' words, categories, the legal basis, real dates, the
// company and its contact; never a header, a field path or a status code.
func TestSubjectReportReadsAsWords(t *testing.T) {
	rep := subjectReport(t)
	html, csv := render(t, rep, htmlOf), render(t, rep, csvOf)
	for _, out := range []string{html, csv} {
		for _, bad := range []string{"header", "content type", "authorization", "idempotency", "merge_fields", "merge fields",
			"FNAME", "ticket/", "via channel", "payment_method_data", "200", "201", "402", "confirm", "exclusive",
			"start of the records", "end of the records", "anna.legal", "piotr.dpo", "gpc_opt_out"} {
			if strings.Contains(out, bad) {
				t.Errorf("the report for a person contains %q", bad)
			}
		}
	}
	for _, want := range []string{"Webinar Co", "privacy@webinar-co.example", "1 October 2026 to 31 October 2026",
		"Prepared on</b> 3 November 2026", "first name", "card number", "payment card details", "email address",
		"to perform our contract with you", "GDPR Art. 6(1)(b)", "your consent", "to comply with a legal obligation",
		"SUBP-2026-0117", "United States", "standard contractual clauses", "an adequacy decision", "Ireland",
		"7 years after the payment", "webinar recording (video and audio)", "audio and video recordings",
		"customer reference", "pseudonymised", "company", "while testing", "registration for webinars and events",
		"2 October 2026 to 19 October 2026 (3 times)"} {
		if !strings.Contains(html, want) {
			t.Errorf("the report for a person lacks %q", want)
		}
	}
	// The refusal (nothing left) is not a recipient; the unsubscribe is, under its own basis.
	if strings.Count(html, `<section class="recipient">`) != 7 {
		t.Errorf("%d recipients, want 7 (stripe, zendesk, mailchimp twice, eventbrite, hosting, legal)", strings.Count(html, `<section class="recipient">`))
	}
}

// A report for a person must say who is writing and where to ask, and over which dates.
func TestSubjectReportNeedsCompanyContactAndDates(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Report)
		want string
	}{
		{"no company", func(r *Report) { r.Company = " " }, "the company's name"},
		{"no contact", func(r *Report) { r.Contact = "" }, "its privacy contact"},
		{"no period", func(r *Report) { r.Since = time.Time{} }, "the period's first and last dates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := subjectReport(t)
			tc.edit(rep)
			for name, write := range map[string]func(*bytes.Buffer, *Report) error{"html": htmlOf, "csv": csvOf} {
				var buf bytes.Buffer
				err := write(&buf, rep)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: error %v, want one naming %q", name, err, tc.want)
				}
				if buf.Len() != 0 {
					t.Errorf("%s: wrote %d bytes of an incomplete report", name, buf.Len())
				}
			}
		})
	}
}

// Values that come from the app (the subject id) or from configuration are escaped, and a
// header a contract files as personal data is listed, not hidden with the protocol headers.
func TestSubjectReportHostileValues(t *testing.T) {
	recs := subjectRecords()
	for i := range recs {
		recs[i].Subject = `"><script>alert(1)</script>`
	}
	rep := BuildReportWith(recs, ReportOptions{Subject: recs[0].Subject, Catalog: bundledCatalog(t), Audience: AudienceSubject,
		Since: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Company: "<b>Webinar Co</b>", Contact: "javascript:alert(1)"})
	html := render(t, rep, htmlOf)
	for _, bad := range []string{"<script", "<b>Webinar", "href="} {
		if strings.Contains(html, bad) {
			t.Errorf("unescaped %q", bad)
		}
	}
	// A contract whose header carries personal data.
	c := &contract.Contract{ID: "crm", Name: "CRM", Reference: "C-1", Role: "support", Hosts: []string{"crm.example"},
		Purposes: []string{"support"}, Headers: []string{"x-customer-email", "accept"},
		Routes:      []contract.Route{{Methods: []string{"GET"}, Path: "/x", Body: contract.BodyNone}},
		Labels:      map[string]string{"header:x-customer-email": "email address"},
		Categories:  map[string][]string{"contact": {"header:x-customer-email"}},
		NotPersonal: []string{"header:accept"}, LegalBasis: map[string]string{"support": "contract"}, Country: "FR", Retention: "1 year"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	k, err := contract.NewCatalog(map[string]*contract.Contract{"crm": c})
	if err != nil {
		t.Fatal(err)
	}
	rep = BuildReportWith([]Record{{Kind: KindDisclosure, Vendor: "crm", Purpose: "support", Subject: "u-1", Method: "GET", Path: "/x",
		Time: time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), FieldsSent: []string{"header:x-customer-email", "header:accept"}}},
		ReportOptions{Subject: "u-1", Catalog: k, Audience: AudienceSubject})
	items := rep.Recipients[0].Items
	if len(items) != 1 || items[0].Words != "email address" || items[0].Categories[0] != "contact details" {
		t.Errorf("items %+v: want the personal header, and only it", items)
	}
}

// A recipient whose contract is gone (or a vendor the catalog does not know) is still listed, in
// words made from the recorded names, with the basis left to the contact.
func TestSubjectReportUnknownVendor(t *testing.T) {
	recs := []Record{{Kind: KindDisclosure, Vendor: "oldcrm", Purpose: "support", Subject: "u-1", Method: "POST", Path: "/c",
		Time: time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), FieldsSent: []string{"customer/email", "header:accept"}}}
	rep := BuildReportWith(recs, ReportOptions{Subject: "u-1", Catalog: bundledCatalog(t), Audience: AudienceSubject,
		Since: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Company: "Webinar Co", Contact: "privacy@webinar-co.example"})
	html := render(t, rep, htmlOf)
	if !strings.Contains(html, "customer email address") || !strings.Contains(html, "see the contact below") || strings.Contains(html, "accept") {
		t.Errorf("unknown vendor rendered as:\n%s", html)
	}
}

// The page as a person sees it, in headless Chromium, against a golden screenshot.
func TestSubjectReportRendered(t *testing.T) {
	headlesstest.Golden(t, []byte(render(t, subjectReport(t), htmlOf)), filepath.Join("testdata", "report_subject.golden.png"))
}

// The staff version with the contracts: the technical detail stays, the contracts' words join it.
func TestStaffReportWithCatalog(t *testing.T) {
	rep := BuildReportWith(subjectRecords(), ReportOptions{Subject: "u-123", Catalog: bundledCatalog(t)})
	html := render(t, rep, htmlOf)
	for _, want := range []string{"payment_method_data/card/number", "header:authorization", "200 ×1", "402 ×1", "payment card details", "GDPR Art. 6(1)(b)", "United States"} {
		if !strings.Contains(html, want) {
			t.Errorf("the staff report lacks %q", want)
		}
	}
}

// Without contracts, a report for a person still lists the body fields in words and leaves out
// headers and query parameters.
func TestSubjectReportWithoutContracts(t *testing.T) {
	rep := BuildReportWith(subjectRecords(), ReportOptions{Subject: "u-123", Audience: AudienceSubject,
		Since: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Company: "Webinar Co", Contact: "privacy@webinar-co.example"})
	for _, out := range []string{render(t, rep, htmlOf), render(t, rep, csvOf)} {
		if strings.Contains(out, "header") || strings.Contains(out, "authorization") || !strings.Contains(out, "merge fields fname") {
			t.Errorf("report without contracts:\n%s", out)
		}
	}
}
