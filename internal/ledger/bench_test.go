package ledger

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func benchLedger(b *testing.B) *Ledger {
	b.Helper()
	return openT(b, filepath.Join(b.TempDir(), "ledger.jsonl"), Options{Now: time.Now})
}

func reportBench(b *testing.B, l *Ledger, start time.Time) {
	b.Helper()
	st := l.Stats()
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(st.Records)/elapsed, "records/s")
	b.ReportMetric(float64(st.Batches)/float64(st.Records), "fsyncs/record")
}

// BenchmarkAppendSerial is one appender: one fsync per record.
func BenchmarkAppendSerial(b *testing.B) {
	l := benchLedger(b)
	r := testRecord(1)
	start := time.Now()
	for b.Loop() {
		rec := *r
		if err := l.Append(context.Background(), &rec); err != nil {
			b.Fatal(err)
		}
	}
	reportBench(b, l, start)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendParallel is many appenders (GOMAXPROCS x 32 goroutines, as
// a busy proxy has many requests in flight): group commit shares fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	l := benchLedger(b)
	b.SetParallelism(32)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		r := testRecord(1)
		for pb.Next() {
			rec := *r
			if err := l.Append(context.Background(), &rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportBench(b, l, start)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}
