package ledger_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
)

func Example() {
	dir, err := os.MkdirTemp("", "ledger")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disclosures.jsonl")

	l, err := ledger.Open(path, ledger.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// Before the request goes to the vendor: Append returns once the record
	// is on disk. On error the proxy answers 503 and sends nothing.
	rec := &ledger.Record{
		Kind: ledger.KindDisclosure, DecisionID: "d-1", Vendor: "stripe",
		Host: "api.stripe.com", Method: "POST", Path: "/v1/charges",
		Purpose: "payment", Subject: "u-123", Service: "billing",
		FieldsSent: []string{"amount", "card/number"},
	}
	if err := l.Append(context.Background(), rec); err != nil {
		log.Fatal(err)
	}
	// After the vendor answered.
	if err := l.Append(context.Background(), &ledger.Record{
		Kind: ledger.KindOutcome, DecisionID: "d-1", Vendor: "stripe", Subject: "u-123", Outcome: "200",
	}); err != nil {
		log.Fatal(err)
	}
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	files, _ := ledger.Files(path)
	res, _ := ledger.Verify(files...)
	fmt.Println("chain ok:", res.OK, "records:", res.Records)

	recs, _ := ledger.Query(files, ledger.Filter{Subject: "u-123"})
	for _, r := range ledger.BuildReport(recs, "u-123", time.Time{}, time.Time{}).Recipients {
		fmt.Println(r.Vendor, r.Purpose, r.Count, r.Fields)
	}
	fmt.Println(ledger.Describe("customer/address/city"))
	// Output:
	// chain ok: true records: 2
	// stripe payment 1 [amount card number]
	// customer address city
}
