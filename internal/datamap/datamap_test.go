package datamap

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
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

// traffic writes a month of three services' disclosures to a real ledger and observes it.
func traffic(t *testing.T, k *contract.Catalog) *Observer {
	at := func(d int) time.Time { return time.Date(2026, 10, d, 12, 0, 0, 0, time.UTC) }
	var recs []ledger.Record
	add := func(n int, svc, vendor, purpose, method, path string, fields ...string) {
		for i := 0; i < n; i++ {
			recs = append(recs, ledger.Record{Kind: ledger.KindDisclosure, Time: at(1 + i%27), Service: svc, Vendor: vendor,
				Purpose: purpose, Method: method, Path: path, Subject: fmt.Sprintf("u-%d", i), FieldsSent: fields})
		}
	}
	add(30, "billing", "stripe", "payment", "POST", "/v1/payment_intents", "amount", "currency", "payment_method_data/card/number", "header:authorization")
	add(10, "billing", "stripe", "payment", "POST", "/v1/customers", "email", "name")
	add(15, "web", "zendesk", "support", "POST", "/api/v2/tickets.json", "ticket/subject", "ticket/comment/body", "ticket/requester/email")
	add(8, "web", "mailchimp", "marketing", "POST", "/3.0/lists/a/members", "email_address", "merge_fields/FNAME")
	add(12, "web", "hosting", "hosting", "PUT", "/recordings/2026/a.mp4")
	add(20, "analytics", "sister", "processing", "POST", "/v1/events", "events/*/type", "events/*/country")
	add(2, "web", "zendesk", "product_research", "POST", "/api/v2/tickets.json", "ticket/subject") // off contract, with consent
	recs = append(recs, ledger.Record{Kind: ledger.KindRefusal, Time: at(3), Service: "web", Vendor: "mailchimp", Purpose: "marketing", Outcome: "gpc_opt_out"})
	recs = append(recs, ledger.Record{Kind: ledger.KindDisclosure, Time: at(30), Service: "web", Vendor: "eventbrite", Purpose: "event_registration"}) // after the period
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
	o := NewObserver(k, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC))
	if err := ledger.Scan(files, o.Add); err != nil {
		t.Fatal(err)
	}
	return o
}

var generated = time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)

func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		_ = os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs; run with -update and review the diff", path)
	}
}

func TestMap(t *testing.T) {
	k := catalog(t)
	m := Build(k, traffic(t, k), "Webinar Co", generated)
	flows := map[string]Flow{}
	for _, f := range m.Flows {
		flows[f.Service+">"+f.Vendor+">"+f.Purpose] = f
	}
	for key, want := range map[string]int{
		"billing>stripe>payment": 40, "web>zendesk>support": 15, "web>mailchimp>marketing": 8, "web>hosting>hosting": 12,
		"analytics>sister>processing": 20, "web>zendesk>product_research": 2,
		// Allowed by the contracts, not seen in the period (the eventbrite disclosure is after it).
		">eventbrite>event_registration": 0, ">legal>legal": 0, ">mailchimp>opt_out": 0, ">sister>storage": 0,
	} {
		f, ok := flows[key]
		if !ok || f.Count != want {
			t.Errorf("flow %s: %+v, want %d disclosures", key, f, want)
		}
	}
	if len(flows) != 10 {
		t.Errorf("%d flows, want 10", len(flows))
	}
	if f := flows["billing>stripe>payment"]; strings.Join(f.Categories, ", ") != "identity, contact details, financial and transaction details, payment card details" {
		t.Errorf("stripe flow categories: %v", f.Categories)
	}
	if f := flows["web>hosting>hosting"]; strings.Join(f.Categories, ", ") != "audio and video recordings" {
		t.Errorf("hosting flow categories (an opaque body): %v", f.Categories)
	}
	if flows["web>zendesk>product_research"].Contracted || !flows["web>zendesk>support"].Contracted {
		t.Error("contracted: a purpose outside the contract left with consent, not under it")
	}
	var html, svgOut bytes.Buffer
	if err := WriteHTML(&html, m); err != nil {
		t.Fatal(err)
	}
	if err := WriteSVG(&svgOut, m); err != nil {
		t.Fatal(err)
	}
	golden(t, "datamap.golden.html", html.Bytes())
	golden(t, "datamap.golden.svg", svgOut.Bytes())
	headlesstest.Golden(t, html.Bytes(), filepath.Join("testdata", "datamap.golden.png"))
}

// The contracts alone: every vendor and purpose as a dashed line from "any service".
func TestMapContractsOnly(t *testing.T) {
	m := Build(catalog(t), nil, "Webinar Co", generated)
	if m.Observed || len(m.Flows) != 9 {
		t.Fatalf("observed %v, %d flows; want 9 allowed flows", m.Observed, len(m.Flows))
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, m); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), `stroke-dasharray="5 4"`); n != 9 {
		t.Errorf("%d dashed flows, want 9", n)
	}
	if strings.Contains(b.String(), "Disclosures</th>") {
		t.Error("no ledger, no disclosure counts")
	}
}

// Width by volume: linear, with a floor so one disclosure stays visible.
func TestBandWidth(t *testing.T) {
	if a, b := bandWidth(30, 100), bandWidth(60, 100); b != 2*a {
		t.Errorf("twice the disclosures: %v and %v", a, b)
	}
	if w := bandWidth(1, 1_000_000); w != bandMin {
		t.Errorf("one in a million: %v, want the floor %v", w, bandMin)
	}
	if w := bandWidth(100, 100); w != bandMax {
		t.Errorf("all of them: %v", w)
	}
	if w := bandWidth(0, 100); w != allowedW {
		t.Errorf("none: %v", w)
	}
}

// Names from the ledger (service, purpose, vendor) are text in the picture, never markup.
func TestMapEscapes(t *testing.T) {
	k := catalog(t)
	o := NewObserver(k, time.Time{}, time.Time{})
	_ = o.Add(&ledger.Record{Kind: ledger.KindDisclosure, Service: `<script>alert(1)</script>`, Vendor: `"><img src=x>`,
		Purpose: `</svg><script>x</script>`, FieldsSent: []string{"a"}})
	m := Build(k, o, `<b>Co</b>`, generated)
	for _, write := range []func(*bytes.Buffer, *Map) error{
		func(b *bytes.Buffer, m *Map) error { return WriteHTML(b, m) },
		func(b *bytes.Buffer, m *Map) error { return WriteSVG(b, m) },
	} {
		var b bytes.Buffer
		if err := write(&b, m); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"<script", "<img", "<b>Co"} {
			if strings.Contains(b.String(), bad) {
				t.Errorf("unescaped %q", bad)
			}
		}
	}
}

// The purpose is the app's header: an app that invents purposes cannot grow the observer.
func TestObserverBounded(t *testing.T) {
	o := NewObserver(catalog(t), time.Time{}, time.Time{})
	for i := 0; i < 3*maxFlows; i++ {
		_ = o.Add(&ledger.Record{Kind: ledger.KindDisclosure, Service: "web", Vendor: "zendesk", Purpose: fmt.Sprintf("p%d", i)})
	}
	if len(o.flows) > maxFlows+1 {
		t.Errorf("%d flows kept, want at most %d", len(o.flows), maxFlows+1)
	}
	total := 0
	for _, f := range o.flows {
		total += f.count
	}
	if total != 3*maxFlows {
		t.Errorf("counted %d, want %d", total, 3*maxFlows)
	}
}
