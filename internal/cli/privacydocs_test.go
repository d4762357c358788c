package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pare-dev/pare/internal/headless/headlesstest"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), code
}

var (
	demoOnce   sync.Once
	demoLedger string
	demoErr    string
)

// demoLedgerFile runs `proxy demo --ledger` once: the real proxy against the local vendor stubs,
// so the documents are built from a ledger Pare wrote, as the README's examples are.
func demoLedgerFile(t *testing.T) string {
	t.Helper()
	demoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pare-docs-")
		if err != nil {
			demoErr = err.Error()
			return
		}
		demoLedger = filepath.Join(dir, "demo.jsonl")
		var out, errOut bytes.Buffer
		if code := runDemo(context.Background(), []string{"--ledger", demoLedger}, nil, &out, &errOut); code != 0 {
			demoErr = errOut.String()
		}
	})
	if demoErr != "" {
		t.Fatalf("demo: %s", demoErr)
	}
	return demoLedger
}

func TestMain(m *testing.M) {
	code := m.Run()
	if demoLedger != "" {
		os.RemoveAll(filepath.Dir(demoLedger))
	}
	os.Exit(code)
}

var company = []string{"--company", "Webinar Co", "--privacy-contact", "privacy@webinar-co.example"}

func TestDemoLedgerKeepsOnlyANewFile(t *testing.T) {
	led := demoLedgerFile(t)
	_, errOut, code := run(t, "demo", "--ledger", led)
	if code != exitUsage || !strings.Contains(errOut, "exists") {
		t.Errorf("demo --ledger over an existing file: exit %d %s", code, errOut)
	}
}

func TestReportForSubject(t *testing.T) {
	led := demoLedgerFile(t)
	out, errOut, code := run(t, append([]string{"ledger", "report", "--subject", "u-123", "--for", "subject"}, append(company, led)...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Webinar Co", "privacy@webinar-co.example", "card number", "first name", "your consent",
		"to perform our contract with you", "United States", "card numbers in it removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{"header", "merge_fields", "200 ×", "start of the records", "end of the records"} {
		if strings.Contains(out, bad) {
			t.Errorf("report for a person contains %q", bad)
		}
	}
	// The staff version, the default, keeps the detail.
	out, _, code = run(t, "ledger", "report", "--subject", "u-123", led)
	if code != 0 || !strings.Contains(out, "200 ×") || !strings.Contains(out, "merge_fields/FNAME") {
		t.Errorf("staff report exit %d lacks the technical detail", code)
	}
}

func TestReportForSubjectConfig(t *testing.T) {
	led := demoLedgerFile(t)
	cfg := filepath.Join(t.TempDir(), "pare.yaml")
	os.WriteFile(cfg, []byte("company_name: Webinar Co\nprivacy_contact: dpo@webinar-co.example\nledger: "+led+"\n"), 0o600)
	out, errOut, code := run(t, "ledger", "report", "--subject", "u-123", "--for", "subject", "--format", "csv", "--config", cfg)
	if code != 0 || !strings.Contains(out, "Stripe") {
		t.Fatalf("report from --config exit %d: %s%s", code, errOut, out)
	}
	out, _, _ = run(t, "ledger", "report", "--subject", "u-123", "--for", "subject", "--config", cfg)
	if !strings.Contains(out, "dpo@webinar-co.example") {
		t.Error("the contact from the config is not in the report")
	}
}

func TestDocumentErrors(t *testing.T) {
	led := demoLedgerFile(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("company_nme: x\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ledger", "report", "--subject", "u-123", "--for", "subject", led}, "--company and --privacy-contact"},
		{[]string{"ledger", "report", "--subject", "u-123", "--for", "dpo", led}, `--for "dpo"`},
		{[]string{"ledger", "report", "--subject", "u-123", "--format", "docx", led}, `--format "docx"`},
		{[]string{"ledger", "report", "--subject", "u-123", "--config", bad, led}, "company_nme"},
		{[]string{"ledger", "report", "--subject", "u-123", "--policies", t.TempDir(), led}, "contracts"},
		{[]string{"ledger", "report", "--subject", "u-123", "--since", "2026-12-01", "--until", "2026-11-01", led}, "before --since"},
		{[]string{"ropa", led}, "GDPR Art. 30(1)(a)"},
		{[]string{"ropa", "--company", "C", "--privacy-contact", "P", "--until", "2026-01-01"}, "give a ledger"},
		{[]string{"datamap", "--format", "png"}, `--format "png"`},
	} {
		_, errOut, code := run(t, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestRopaAndDatamapFromTheDemo(t *testing.T) {
	led := demoLedgerFile(t)
	out, errOut, code := run(t, append(append([]string{"ropa", "--format", "json"}, company...), led)...)
	if code != 0 {
		t.Fatalf("ropa exit %d: %s", code, errOut)
	}
	var rec struct {
		Activities []struct{ Vendor, Purpose string }
		Usage      struct {
			Disclosures int
			Refusals    []struct {
				Code  string
				Count int
			}
			Vendors []struct {
				Vendor      string
				Disclosures int
				Routes      []struct {
					Route     string
					NeverSent []string `json:"never_sent"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Activities) != 9 || rec.Usage.Disclosures != 4 {
		t.Errorf("%d activities, %d disclosures; want 9 and the demo's 4", len(rec.Activities), rec.Usage.Disclosures)
	}
	codes := map[string]int{}
	for _, r := range rec.Usage.Refusals {
		codes[r.Code] += r.Count
	}
	if codes["unknown_vendor"] != 1 || codes["gpc_opt_out"] != 1 || codes["consent_required"] != 1 || codes["malformed_body"] != 1 {
		t.Errorf("refusals by code: %v", codes)
	}
	for _, v := range rec.Usage.Vendors {
		if v.Vendor == "eventbrite" && v.Disclosures != 0 {
			t.Error("eventbrite: the demo sends it nothing")
		}
		if v.Vendor == "stripe" && !strings.Contains(strings.Join(v.Routes[1].NeverSent, ","), "payment_method") {
			t.Errorf("stripe payment_intents never sent: %v", v.Routes[1].NeverSent)
		}
	}
	for _, f := range []string{"html", "csv"} {
		if _, errOut, code := run(t, append(append([]string{"ropa", "--format", f}, company...), led)...); code != 0 {
			t.Errorf("ropa --format %s exit %d: %s", f, code, errOut)
		}
	}
	out, errOut, code = run(t, "datamap", "--company", "Webinar Co", led)
	if code != 0 || !strings.Contains(out, "<svg") || !strings.Contains(out, "billing → Stripe for payment processing: 1 disclosure") {
		t.Errorf("datamap exit %d: %s", code, errOut)
	}
	out, _, code = run(t, "datamap", "--format", "svg")
	if code != 0 || !strings.HasPrefix(out, "<svg") {
		t.Errorf("datamap --format svg exit %d", code)
	}
}

// PDF through headless Chromium (skipped without it, except under CI=true).
func TestPDF(t *testing.T) {
	headlesstest.Browser(t)
	led := demoLedgerFile(t)
	for _, args := range [][]string{
		append(append([]string{"ledger", "report", "--subject", "u-123", "--for", "subject", "--format", "pdf"}, company...), led),
		append(append([]string{"ropa", "--format", "pdf"}, company...), led),
		{"datamap", "--format", "pdf", led},
	} {
		out, errOut, code := run(t, args...)
		if code != 0 || !strings.HasPrefix(out, "%PDF-") {
			t.Errorf("%v: exit %d, %d bytes: %s", args[:2], code, len(out), errOut)
		}
	}
}
