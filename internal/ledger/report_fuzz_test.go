package ledger

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzSubjectReport: whatever a record holds (the subject and purpose come from the app's
// headers), the report for a person renders, and renders it as text, never as markup.
func FuzzSubjectReport(f *testing.F) {
	k := bundledCatalog(f)
	f.Add("u-123", "stripe", "payment", "POST", "/v1/payment_intents", "amount\npayment_method_data/card/number\nheader:accept", "metadata/crm_id", "hmac", false)
	f.Add("<script>x</script>", "mailchimp", "marketing", "POST", "/3.0/lists/a/members", "merge_fields/FNAME", "", "", true)
	f.Add("u-1", "hosting", "hosting", "PUT", "/recordings/a.mp4", "", "", "", false)
	f.Add("u-1", "nobody", "<b>x</b>", "GET", "/", "a/*/b\n\n*", "x", "rot13", true)
	f.Fuzz(func(t *testing.T, subject, vendor, purpose, method, path, fields, transformed, transform string, dry bool) {
		r := Record{Kind: KindDisclosure, Time: time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC), Subject: subject, Vendor: vendor,
			Purpose: purpose, Method: method, Path: path, FieldsSent: strings.Split(fields, "\n"), DryRun: dry,
			FieldsRemoved: []string{"company"}}
		if transformed != "" {
			r.Transformed = []string{transformed}
			r.Transforms = map[string]string{transformed: transform}
		}
		rep := BuildReportWith([]Record{r}, ReportOptions{Subject: subject, Catalog: k, Audience: AudienceSubject,
			Since: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
			Company: "Webinar Co", Contact: "privacy@webinar-co.example"})
		if rep.Disclosures != 1 || len(rep.Recipients) != 1 {
			t.Fatalf("one disclosure reported as %d in %d rows", rep.Disclosures, len(rep.Recipients))
		}
		var html, csv bytes.Buffer
		if err := WriteHTML(&html, rep); err != nil {
			t.Fatal(err)
		}
		if err := WriteCSV(&csv, rep); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToLower(html.String()), "<script") {
			t.Fatal("markup from a record reached the page")
		}
	})
}
