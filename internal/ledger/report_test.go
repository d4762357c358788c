package ledger

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestDescribe(t *testing.T) {
	tests := []struct{ path, want string }{
		{"customer/address/city", "customer address city"},
		{"items/*/sku", "items SKU"},
		{"items/0/name", "items name"},
		{"email", "email address"},
		{"customer/email", "customer email address"},
		{"receipt_email", "receipt email address"},
		{"card/number", "card number"},
		{"payment/card/number", "payment card number"},
		{"card/card_number", "card number"},
		{"metadata/order_id", "metadata order ID"},
		{"billing/firstName", "billing first name"},
		{"customer/phone", "customer phone number"},
		{"client-ip", "client IP"},
		{"ip", "IP address"},
		{"dob", "date of birth"},
		{"*", "*"},
		{"", ""},
	}
	for _, tc := range tests {
		if got := Describe(tc.path); got != tc.want {
			t.Errorf("Describe(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	if got := DescribeTransform("hmac"); got != "pseudonymised" {
		t.Errorf("hmac: %q", got)
	}
	if got := DescribeTransform("rot13"); got != "rot13" {
		t.Errorf("unknown transform: %q", got)
	}
}

// reportRecords is a subject's history with Webinar Co's vendors, plus
// records that must not reach the report.
func reportRecords() []Record {
	at := func(d, h int) time.Time { return time.Date(2026, 10, d, h, 30, 0, 0, time.UTC) }
	disc := func(id string, tm time.Time, vendor, purpose string, fields ...string) Record {
		return Record{Kind: KindDisclosure, DecisionID: id, Time: tm, Vendor: vendor, Purpose: purpose,
			Subject: "u-123", Service: "web", FieldsSent: fields, Revision: "r7"}
	}
	out := func(id string, tm time.Time, status string) Record {
		return Record{Kind: KindOutcome, DecisionID: id, Time: tm, Outcome: status}
	}
	pay1 := disc("p1", at(2, 10), "stripe", "payment", "amount", "currency", "card/number", "card/exp_month", "items/*/sku")
	pay1.Transforms = map[string]string{"receipt_email": "hmac"}
	pay2 := disc("p2", at(9, 14), "stripe", "payment", "amount", "currency", "card/number", "metadata/order_id")
	pay3 := disc("p3", at(20, 8), "stripe", "payment", "amount", "currency", "card/number")
	legal := disc("l1", at(12, 16), "courts", "legal", "customer/name", "customer/email", "customer/address/city")
	legal.LegalBasis = "court order 2026-CV-0412"
	legal.Requester, legal.Approver = "legal@webinar.example", "dpo@webinar.example"
	dry := disc("z1", at(15, 11), "zendesk", "support", "customer/email", "ticket/subject")
	dry.DryRun = true
	zen := disc("z2", at(16, 11), "zendesk", "support", "customer/email")
	refused := Record{Kind: KindRefusal, DecisionID: "m1", Time: at(5, 9), Vendor: "mailchimp", Purpose: "marketing",
		Subject: "u-123", Outcome: "consent_required", Status: 403}
	other := disc("o1", at(6, 9), "stripe", "payment", "amount")
	other.Subject = "u-999"
	late := disc("late", at(30, 9), "eventbrite", "registration", "email")
	return []Record{
		pay1, out("p1", at(2, 10), "200"),
		refused, other, out("o1", at(6, 9), "200"),
		pay2, out("p2", at(9, 14), "200"),
		legal, out("l1", at(12, 16), "201"),
		dry, out("z1", at(15, 11), "200"),
		zen, // the process stopped before the answer: no outcome
		pay3, out("p3", at(20, 8), "500"),
		late,
	}
}

func goldenReport() *Report {
	return BuildReport(reportRecords(), "u-123",
		time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC))
}

func TestBuildReport(t *testing.T) {
	rep := goldenReport()
	if rep.Disclosures != 6 {
		t.Errorf("disclosures = %d, want 6", rep.Disclosures)
	}
	var got []string
	for _, r := range rep.Recipients {
		got = append(got, r.Vendor+"/"+r.Purpose)
		if r.Vendor == "mailchimp" || r.Vendor == "eventbrite" {
			t.Errorf("%s listed: refusals and records outside the period are not disclosures", r.Vendor)
		}
	}
	if g := strings.Join(got, " "); g != "courts/legal stripe/payment zendesk/support zendesk/support" {
		t.Errorf("recipients %s", g)
	}
	s := rep.Recipients[1]
	if s.Count != 3 || !s.First.Equal(time.Date(2026, 10, 2, 10, 30, 0, 0, time.UTC)) || !s.Last.Equal(time.Date(2026, 10, 20, 8, 30, 0, 0, time.UTC)) {
		t.Errorf("stripe group %+v", s)
	}
	if outcomeText(s.Outcomes) != "200 ×2; 500 ×1" {
		t.Errorf("stripe outcomes %q: a 500 still counts as sent", outcomeText(s.Outcomes))
	}
	if !strings.Contains(strings.Join(s.Fields, "|"), "receipt email address (pseudonymised)") {
		t.Errorf("stripe fields %q", s.Fields)
	}
	if !rep.Recipients[3].DryRun || rep.Recipients[2].DryRun {
		t.Error("dry-run disclosures not in a row of their own")
	}
	if outcomeText(rep.Recipients[2].Outcomes) != NotRecorded+" ×1" {
		t.Errorf("missing outcome: %q", outcomeText(rep.Recipients[2].Outcomes))
	}
}

func TestReportGolden(t *testing.T) {
	rep := goldenReport()
	for _, tc := range []struct {
		file  string
		write func(*bytes.Buffer, *Report) error
	}{
		{"report.golden.html", func(b *bytes.Buffer, r *Report) error { return WriteHTML(b, r) }},
		{"report.golden.csv", func(b *bytes.Buffer, r *Report) error { return WriteCSV(b, r) }},
		{"report.golden.json", func(b *bytes.Buffer, r *Report) error { return WriteJSON(b, r) }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.write(&buf, rep); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("%s differs from the output; run with -update and review the diff\n%s", golden, buf.String())
			}
		})
	}
}

func TestHTMLSelfContainedAndEscaped(t *testing.T) {
	rep := goldenReport()
	rep.Recipients = append(rep.Recipients, Recipient{
		Vendor: `<img src=x onerror=alert(1)>`, Purpose: `"><script>alert(1)</script>`,
		Fields: []string{"<b>"}, Outcomes: []OutcomeCount{{"200", 1}}, Count: 1,
	})
	var buf bytes.Buffer
	if err := WriteHTML(&buf, rep); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//`)
	if m := external.FindString(html); m != "" {
		t.Errorf("external asset reference %q", m)
	}
	for _, bad := range []string{"<script", "<img", "<link", "@import", "url("} {
		if strings.Contains(strings.ToLower(html), bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{"<!DOCTYPE html>", "<style>", "@media print", "stripe", "courts", "zendesk",
		"card number", "court order 2026-CV-0412", "dry run", "&lt;img src=x"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Balanced structure: every opened table element is closed.
	for _, tag := range []string{"table", "tr", "td", "ul", "main", "html", "body"} {
		open := strings.Count(html, "<"+tag+">") + strings.Count(html, "<"+tag+" ")
		if closed := strings.Count(html, "</"+tag+">"); open != closed {
			t.Errorf("<%s>: %d opened, %d closed", tag, open, closed)
		}
	}
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	rep := &Report{Recipients: []Recipient{{Vendor: "=HYPERLINK(\"x\")", Purpose: "+1", Count: 1}}}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), ",=") || strings.HasPrefix(strings.Split(buf.String(), "\n")[1], "=") {
		t.Fatalf("formula cell left active: %s", buf.String())
	}
}

func TestReportFromLedger(t *testing.T) {
	// End to end: records appended, queried back, reported.
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{MaxBytes: 2048})
	for _, r := range reportRecords() {
		if err := l.Append(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Close()
	files, _ := Files(path)
	since, until := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	recs, err := Query(files, Filter{Subject: "u-123", Since: since, Until: until})
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	_ = WriteJSON(&a, BuildReport(recs, "u-123", since, until))
	_ = WriteJSON(&b, goldenReport())
	if a.String() != b.String() {
		t.Fatalf("report from the ledger differs:\n%s\nwant\n%s", a.String(), b.String())
	}
}

// A report names each recipient by the identity recorded with the
// disclosure (name and contract), as GDPR Art. 15(1)(c) asks.
func TestReportNamesRecipients(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	recs := []Record{
		{Kind: KindDisclosure, Time: t0, DecisionID: "a", Vendor: "zendesk", Subject: "u-1", Purpose: "support",
			FieldsSent: []string{"ticket/requester/email"}},
		{Kind: KindDisclosure, Time: t0.Add(time.Hour), DecisionID: "b", Vendor: "zendesk", Subject: "u-1", Purpose: "support",
			Recipient: "Zendesk (contract SUP-2024-07)", FieldsSent: []string{"ticket/subject"}},
	}
	rep := BuildReport(recs, "u-1", time.Time{}, time.Time{})
	if len(rep.Recipients) != 1 || rep.Recipients[0].Display() != "Zendesk (contract SUP-2024-07)" {
		t.Fatalf("recipients = %+v", rep.Recipients)
	}
	var html, csv strings.Builder
	if err := WriteHTML(&html, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteCSV(&csv, rep); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"html": html.String(), "csv": csv.String()} {
		if !strings.Contains(out, "Zendesk (contract SUP-2024-07)") {
			t.Errorf("%s report does not name the recipient", name)
		}
	}
}
