package ropa

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
)

// benchLedger writes n disclosures shaped like the proxy's (about 20 paths each) and returns
// the files.
func benchLedger(b *testing.B, n int) []string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "ledger.jsonl")
	l, err := ledger.Open(path, ledger.Options{})
	if err != nil {
		b.Fatal(err)
	}
	fields := []string{"amount", "currency", "description", "confirm", "payment_method_data/type", "payment_method_data/card/number",
		"payment_method_data/card/exp_month", "payment_method_data/card/exp_year", "payment_method_data/card/cvc",
		"payment_method_data/billing_details/address/country", "payment_method_data/billing_details/address/postal_code",
		"metadata/order_id", "header:authorization", "header:idempotency-key", "header:content-type"}
	recs := make([]ledger.Record, 0, 256)
	for i := 0; i < n; i++ {
		recs = append(recs, ledger.Record{Kind: ledger.KindDisclosure, Time: time.Date(2026, 10, 1+i%28, 0, 0, 0, 0, time.UTC),
			Vendor: "stripe", Purpose: "payment", Service: "billing", Subject: fmt.Sprintf("u-%d", i), Method: "POST",
			Path: "/v1/payment_intents", FieldsSent: fields, Transformed: []string{"metadata/crm_id"},
			Transforms: map[string]string{"metadata/crm_id": "hmac"}})
		if len(recs) == cap(recs) || i == n-1 {
			for j := range recs {
				if err := l.Submit(&recs[j]); err != nil {
					b.Fatal(err)
				}
			}
			recs = recs[:0]
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	files, err := ledger.Files(path)
	if err != nil {
		b.Fatal(err)
	}
	return files
}

// BenchmarkScan is the baseline: reading and decoding the ledger, doing nothing with it.
// BenchmarkScanObserve adds the Art. 30 usage. Compare the two in the same run: the difference is
// what the observer costs per record.
func BenchmarkScan(b *testing.B) {
	files := benchLedger(b, 20000)
	b.ResetTimer()
	for b.Loop() {
		if err := ledger.Scan(files, func(*ledger.Record) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
}

func BenchmarkScanObserve(b *testing.B) {
	files := benchLedger(b, 20000)
	k := catalog(b)
	b.ResetTimer()
	for b.Loop() {
		o := NewObserver(k, time.Time{}, time.Time{})
		if err := ledger.Scan(files, o.Add); err != nil {
			b.Fatal(err)
		}
		_ = o.Usage()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/record")
}
