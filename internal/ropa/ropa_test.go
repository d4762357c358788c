package ropa

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/headless/headlesstest"
	"github.com/pare-dev/pare/internal/ledger"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func catalog(t testing.TB) *contract.Catalog {
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

var opts = Options{Company: "Webinar Co", Contact: "privacy@webinar-co.example", Generated: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)}

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs; run with -update and review the diff:\n%s", path, got)
	}
}

func write(t *testing.T, rec *Record, fn func(*bytes.Buffer, *Record) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := fn(&buf, rec); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func htmlOf(b *bytes.Buffer, r *Record) error { return WriteHTML(b, r) }
func csvOf(b *bytes.Buffer, r *Record) error  { return WriteCSV(b, r) }
func jsonOf(b *bytes.Buffer, r *Record) error { return WriteJSON(b, r) }

// The Art. 30 record of the bundled contracts.
func TestBundledGolden(t *testing.T) {
	rec := Build(catalog(t), opts)
	golden(t, "ropa.golden.html", write(t, rec, htmlOf))
	golden(t, "ropa.golden.csv", write(t, rec, csvOf))
}

func TestBundledActivities(t *testing.T) {
	rec := Build(catalog(t), opts)
	if len(rec.Undeclared) != 0 {
		t.Errorf("undeclared: %v", rec.Undeclared)
	}
	got := map[string]Activity{}
	for _, a := range rec.Activities {
		got[a.Vendor+"/"+a.Purpose] = a
	}
	if len(got) != 9 {
		t.Errorf("%d activities, want 9 (one per vendor and purpose)", len(got))
	}
	s := got["stripe/payment"]
	if !s.ThirdCountry || s.Country != "United States" || s.TransferArticle != "GDPR Art. 45" || s.BasisArticle != "GDPR Art. 6(1)(b)" ||
		!slices.Contains(s.Categories, "payment card details") || !slices.Contains(s.Data, "customer reference (pseudonymised)") ||
		slices.Contains(s.Data, "confirm") {
		t.Errorf("stripe/payment: %+v", s)
	}
	if h := got["hosting/hosting"]; h.ThirdCountry || h.Transfer != "" || !slices.Contains(h.Data, "webinar recording (video and audio)") ||
		slices.Contains(h.Data, "website files (images, style sheets)") {
		t.Errorf("hosting: %+v", h)
	}
	// Only the routes that serve a purpose count: unsubscribing sends the status alone.
	if m := got["mailchimp/opt_out"]; !slices.Equal(m.Data, []string{"subscription status"}) || m.ConsentChecked {
		t.Errorf("mailchimp/opt_out: %+v", m)
	}
	if m := got["mailchimp/marketing"]; !m.ConsentChecked || !slices.Contains(m.Measures, "sent only with the person's granted consent; Global Privacy Control refuses it") {
		t.Errorf("mailchimp/marketing: %+v", m)
	}
	if l := got["legal/legal"]; !slices.Contains(l.Measures, "needs a legal basis reference and a second person's approval") {
		t.Errorf("legal: %+v", l)
	}
}

// A contract that says nothing about its data is listed as incomplete, not left out.
func TestUndeclared(t *testing.T) {
	c := &contract.Contract{ID: "bare", Name: "Bare", Reference: "B-1", Role: "support", Hosts: []string{"bare.example"},
		Purposes: []string{"support"}, Routes: []contract.Route{{Methods: []string{"POST"}, Path: "/t", Fields: []string{"email"}}}}
	k, err := contract.NewCatalog(map[string]*contract.Contract{"bare": c})
	if err != nil {
		t.Fatal(err)
	}
	rec := Build(k, opts)
	html := string(write(t, rec, htmlOf))
	if !slices.Equal(rec.Undeclared, []string{"bare"}) || !strings.Contains(html, "do not say what their data is") ||
		!strings.Contains(html, "email address") {
		t.Errorf("undeclared contract: %+v", rec)
	}
}

// traffic is a month of the bundled vendors, written to a real ledger.
func traffic(t *testing.T) []string {
	at := func(d int) time.Time { return time.Date(2026, 10, d, 12, 0, 0, 0, time.UTC) }
	hdr := []string{"header:authorization", "header:content-type"}
	disc := func(d int, vendor, purpose, method, path string, fields ...string) ledger.Record {
		return ledger.Record{Kind: ledger.KindDisclosure, Time: at(d), Vendor: vendor, Purpose: purpose, Subject: "u-1",
			Method: method, Path: path, FieldsSent: append(fields, hdr...)}
	}
	refusal := func(d int, vendor, code string) ledger.Record {
		return ledger.Record{Kind: ledger.KindRefusal, Time: at(d), Vendor: vendor, Outcome: code, Subject: "u-2"}
	}
	pay := disc(2, "stripe", "payment", "POST", "/v1/payment_intents", "amount", "currency", "payment_method_data/card/number")
	pay.Transformed, pay.Transforms = []string{"metadata/crm_id"}, map[string]string{"metadata/crm_id": "hmac"}
	recs := []ledger.Record{
		disc(1, "stripe", "payment", "POST", "/v1/customers", "email", "name"),
		pay,
		disc(3, "zendesk", "support", "POST", "/api/v2/tickets.json", "ticket/subject", "ticket/comment/body", "ticket/requester/email"),
		disc(4, "zendesk", "support", "POST", "/api/v2/tickets", "ticket/subject"),
		disc(5, "hosting", "hosting", "PUT", "/recordings/2026/a.mp4"),
		disc(6, "eventbrite", "event_registration", "POST", "/v3/events/e1/attendees/batch/", "attendees/*/email"),
		disc(7, "oldcrm", "support", "POST", "/contacts", "email"), // a contract since removed
		refusal(8, "mailchimp", "consent_required"), refusal(9, "mailchimp", "consent_required"), refusal(9, "", "unknown_vendor"),
		disc(30, "legal", "legal", "POST", "/v1/disclosures", "reference"), // outside the period
		refusal(30, "stripe", "source_not_allowed"),                        // outside the period
	}
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := ledger.Open(path, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := l.Append(context.Background(), &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := ledger.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func observe(t *testing.T, k *contract.Catalog, files []string, since, until time.Time) *Observer {
	t.Helper()
	o := NewObserver(k, since, until)
	if err := ledger.Scan(files, o.Add); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestUsage(t *testing.T) {
	k := catalog(t)
	since, until := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	rec := Build(k, opts)
	rec.AddUsage(observe(t, k, traffic(t), since, until))
	u := rec.Usage
	if u.Disclosures != 7 || u.Refused != 3 {
		t.Errorf("disclosures %d refused %d, want 7 and 3 (the 30th is outside the period)", u.Disclosures, u.Refused)
	}
	routes := map[string]RouteUsage{}
	vendors := map[string]VendorUsage{}
	for _, v := range u.Vendors {
		vendors[v.Vendor] = v
		for _, r := range v.Routes {
			routes[v.Vendor+" "+r.Route] = r
		}
	}
	for _, tc := range []struct {
		route string
		n     int
		never []string
	}{
		{"stripe POST /v1/customers", 1, []string{"address/country", "address/postal_code"}},
		{"stripe GET /v1/customers/*", 0, []string{"query:expand"}},
		{"zendesk POST /api/v2/tickets{,.json}", 2, []string{"ticket/comment/public", "ticket/priority", "ticket/requester/name", "ticket/tags", "ticket/via/channel"}},
		{"hosting PUT,POST /recordings/**", 1, []string{"query:partNumber", "query:uploadId", "query:uploads"}},
		{"eventbrite POST /v3/events/*/attendees/batch/", 1, []string{"attendees/*/first_name", "attendees/*/last_name"}},
		{"eventbrite POST /v3/events/*/attendees/", 0, []string{"email", "first_name", "last_name"}},
	} {
		r, ok := routes[tc.route]
		if !ok {
			t.Errorf("no route %s", tc.route)
			continue
		}
		if r.Disclosures != tc.n || !slices.Equal(r.NeverSent, tc.never) {
			t.Errorf("%s: %d disclosures, never sent %v; want %d, %v", tc.route, r.Disclosures, r.NeverSent, tc.n, tc.never)
		}
	}
	if p := routes["stripe POST /v1/payment_intents"]; slices.Contains(p.NeverSent, "metadata/crm_id") || !slices.Contains(p.NeverSent, "payment_method_data/card/cvc") {
		t.Errorf("payment_intents never sent %v: the transformed crm_id left, the cvc did not", p.NeverSent)
	}
	for _, v := range []string{"mailchimp", "sister", "legal"} {
		if vendors[v].Disclosures != 0 {
			t.Errorf("%s: %d disclosures, want none in the period", v, vendors[v].Disclosures)
		}
	}
	if !slices.Equal(vendors["stripe"].HeadersNeverSent, []string{"idempotency-key", "stripe-version", "accept"}) {
		t.Errorf("stripe headers never sent: %v", vendors["stripe"].HeadersNeverSent)
	}
	want := []RefusalCount{{"consent_required", "mailchimp", 2}, {"unknown_vendor", "", 1}}
	if !slices.Equal(u.Refusals, want) {
		t.Errorf("refusals %v, want %v", u.Refusals, want)
	}
	if !slices.Equal(u.Uncontracted, []Count{{"oldcrm", 1}}) {
		t.Errorf("uncontracted %v", u.Uncontracted)
	}
	for _, a := range rec.Activities {
		if a.Vendor == "zendesk" && a.Disclosures != 2 {
			t.Errorf("zendesk/support: %d disclosures", a.Disclosures)
		}
	}
	golden(t, "ropa_usage.golden.html", write(t, rec, htmlOf))
	golden(t, "ropa_usage.golden.csv", write(t, rec, csvOf))
	headlesstest.Golden(t, write(t, rec, htmlOf), filepath.Join("testdata", "ropa_usage.golden.png"))
}

// A hostile or damaged ledger cannot grow the observer: distinct codes and vendors past maxKeys
// are counted together.
func TestObserverBounded(t *testing.T) {
	o := NewObserver(catalog(t), time.Time{}, time.Time{})
	for i := 0; i < 3*maxKeys; i++ {
		_ = o.Add(&ledger.Record{Kind: ledger.KindRefusal, Outcome: fmt.Sprintf("code-%d", i)})
		_ = o.Add(&ledger.Record{Kind: ledger.KindDisclosure, Vendor: fmt.Sprintf("v-%d", i), FieldsSent: []string{"x"}})
		_ = o.Add(&ledger.Record{Kind: ledger.KindDisclosure, Vendor: "zendesk", Method: "POST", Path: "/api/v2/tickets",
			FieldsSent: []string{fmt.Sprintf("ticket/custom/%d", i)}})
	}
	u := o.Usage()
	if len(u.Refusals) > maxKeys+1 || len(u.Uncontracted) > maxKeys+1 {
		t.Errorf("%d refusal keys, %d vendors: want at most %d", len(u.Refusals), len(u.Uncontracted), maxKeys+1)
	}
	total := 0
	for _, r := range u.Refusals {
		total += r.Count
	}
	if total != 3*maxKeys {
		t.Errorf("refusals counted %d, want %d: overflow must be counted, not dropped", total, 3*maxKeys)
	}
	if n := len(o.routes["zendesk"][0].seen); n != 0 {
		t.Errorf("paths the contract does not name were kept: %d", n)
	}
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	rec := &Record{Company: "=cmd()", Contact: "+1", Activities: []Activity{{Recipient: "@x", Reference: "-1"}}}
	out := string(write(t, rec, csvOf))
	if strings.Contains(out, ",=") || strings.Contains(out, "\n=") || strings.Contains(out, ",+1") || strings.Contains(out, ",@") {
		t.Errorf("formula cells left active:\n%s", out)
	}
	if !json.Valid(write(t, rec, jsonOf)) {
		t.Error("json")
	}
}
