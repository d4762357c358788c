package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/enginetest"
	"github.com/pare-dev/pare/internal/ledger"
)

// Findings of the adversarial review (see e2e/findings_test.go): run them
// with go test ./... -run TestFinding.

// bundledPipeline is a pipeline on the bundled policies with a real ledger;
// it returns the ledger's path.
func bundledPipeline(t *testing.T, service string) (*Pipeline, string) {
	t.Helper()
	eng := enginetest.Bundled(t)
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	led, err := ledger.Open(path, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	p, err := New(Config{Engine: eng, Ledger: led, Service: service})
	if err != nil {
		t.Fatal(err)
	}
	return p, path
}

// ledgerLines returns the ledger's records of decision id, with the length
// of each line.
func ledgerLines(t *testing.T, path, id string) ([]ledger.Record, []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []ledger.Record
	var lens []int
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var r ledger.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("ledger line: %v", err)
		}
		if r.DecisionID == id {
			recs = append(recs, r)
			lens = append(lens, len(sc.Bytes()))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs, lens
}

// Finding 3: the ledger bounds each field list to 256 names, but not the
// length of a name. A support ticket whose free-text body is an object
// nested 900 deep, with a card number redacted at each level, lists 900
// distinct card paths of up to 20 KB each; the disclosure record is then
// over the ledger's 1 MiB line limit, Disclose fails, and the app gets
// 503 ledger_unavailable on a healthy ledger — with no record of the
// request at all (Refuse records nothing for ledger errors). Issue 10 asked
// that an over-large disclosure record never be a silent 503.
func TestFindingOversizedDisclosureRecord(t *testing.T) {
	p, path := bundledPipeline(t, "support")
	var b strings.Builder
	b.WriteString(`{"ticket":{"subject":"`)
	b.WriteString(strings.Repeat("x", 1<<20)) // room in the report's budget (twice the body)
	b.WriteString(`","comment":{"body":`)
	const depth = 900
	for range depth {
		b.WriteString(`{"payment_method_data":`) // a name the contracts use: recorded as it is
	}
	b.WriteString(`"4111111111111111"`)
	for range depth {
		b.WriteString(`,"c":"4111 1111 1111 1111"}`)
	}
	b.WriteString(`}}}`)
	body := []byte(b.String())
	h := http.Header{}
	h.Set("X-Data-Purpose", "support")
	h.Set("Content-Type", "application/json")
	x := p.Begin(&Request{Method: "POST", Scheme: "http", Host: "webinarco.zendesk.com", Path: "/api/v2/tickets.json",
		Header: h, Body: bytes.NewReader(body), ContentLength: int64(len(body))})
	_, err := x.Prepare(context.Background())
	if err == nil {
		err = x.Durable(context.Background())
	}
	if err != nil {
		rf := x.Refuse(err)
		t.Errorf("refused with %d %s: %s", rf.Status, rf.Code, rf.Reason)
	} else {
		x.Complete(200)
	}
	x.End()
	recs, lens := ledgerLines(t, path, x.ID())
	if len(recs) == 0 {
		t.Fatal("the ledger holds no record of the request")
	}
	for i, r := range recs {
		if lens[i] > 1<<20 {
			t.Errorf("%s record of %d bytes: over the ledger's line limit", r.Kind, lens[i])
		}
		if r.Kind == ledger.KindDisclosure && (!r.Truncated || len(r.CardsRedacted) == 0) {
			t.Errorf("disclosure record: truncated=%v, %d card paths; want the card paths listed and cut short", r.Truncated, len(r.CardsRedacted))
		}
	}
}

// Finding 4: the policy decides on the purpose lower-cased (egress.rego:
// purpose := lower(trim_space(p))), but the ledger, the logs and the
// metrics get it as the app spelled it. "Payment" is decided and sent to
// Stripe as a payment, yet recorded as purpose "Payment": the report for
// the person then gives the lawful basis of a purpose outside the contract
// ("consent") instead of the contract's ("contract"), a ledger query for
// purpose payment misses it, the requests metric counts it as "other", and
// "LEGAL" is not counted among the legal disclosures.
func TestFindingPurposeRecordedAsDecided(t *testing.T) {
	p, path := bundledPipeline(t, "billing")
	for _, purpose := range []string{"Payment", " PAYMENT "} {
		h := http.Header{}
		h.Set("X-Data-Purpose", purpose)
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		body := []byte("email=a%40example.org&name=Maria+Kowalska")
		x := p.Begin(&Request{Method: "POST", Scheme: "http", Host: "api.stripe.com", Path: "/v1/customers",
			Header: h, Body: bytes.NewReader(body), ContentLength: int64(len(body))})
		if _, err := x.Prepare(context.Background()); err != nil {
			x.End()
			t.Fatalf("purpose %q: %v", purpose, err)
		}
		if err := x.Durable(context.Background()); err != nil {
			t.Fatal(err)
		}
		if l := x.purposeLabel(); l != "payment" {
			t.Errorf("purpose %q: counted as %q in the metrics, want payment", purpose, l)
		}
		x.Complete(200)
		x.End()
		recs, _ := ledgerLines(t, path, x.ID())
		for _, r := range recs {
			if r.Purpose != "payment" {
				t.Errorf("purpose %q: decided as payment, recorded in the %s record as %q", purpose, r.Kind, r.Purpose)
			}
		}
		if c := p.cfg.Engine.Policy().Contracts["stripe"]; c != nil && len(recs) > 0 {
			if got := c.BasisFor(recs[0].Purpose); got != "contract" {
				t.Errorf("purpose %q: the person's report would give the lawful basis %q, want contract", purpose, got)
			}
		}
	}
}
