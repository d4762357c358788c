package ledger

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// benchModes runs a benchmark with checkpoints off (the hash chain only)
// and on (the Merkle tree, a signed checkpoint every
// DefaultCheckpointEvery records, written to the log and a witness file):
// sub-benchmarks of one run, so their ratio is what checkpoints cost on
// this machine as it is now.
func benchModes(b *testing.B, run func(b *testing.B, l *Ledger)) {
	skey, _, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		opt  func(dir string) Options
	}{
		{"checkpoints=off", func(string) Options { return Options{Now: time.Now} }},
		{"checkpoints=on", func(dir string) Options {
			return Options{Now: time.Now, Signer: s, WitnessPath: filepath.Join(dir, "witness")}
		}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			dir := b.TempDir()
			l := openT(b, filepath.Join(dir, "ledger.jsonl"), mode.opt(dir))
			start := time.Now()
			run(b, l)
			reportBench(b, l, start)
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func reportBench(b *testing.B, l *Ledger, start time.Time) {
	b.Helper()
	st := l.Stats()
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(st.Records)/elapsed, "records/s")
	b.ReportMetric(float64(st.Batches)/float64(st.Records), "fsyncs/record")
	b.ReportMetric(float64(st.Checkpoints), "checkpoints")
}

// BenchmarkAppendSerial is one appender: one fsync per record.
func BenchmarkAppendSerial(b *testing.B) {
	benchModes(b, func(b *testing.B, l *Ledger) {
		r := testRecord(1)
		for b.Loop() {
			rec := *r
			if err := l.Append(context.Background(), &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendParallel is many appenders (GOMAXPROCS x 32 goroutines, as
// a busy proxy has many requests in flight): group commit shares fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	benchModes(b, func(b *testing.B, l *Ledger) {
		b.SetParallelism(32)
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
	})
}

// BenchmarkTreeAdd is the CPU the Merkle tree adds to each record in the
// writer goroutine: the leaf hash of a typical line and its share of
// interior hashes. Compare with BenchmarkHashLine, the chain hash every
// record already pays.
func BenchmarkTreeAdd(b *testing.B) {
	line := appendLine(nil, mustMid(b), 123456, "ab")
	var t frontier
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		t.add(leafHash(line), nil)
	}
}

func BenchmarkHashLine(b *testing.B) {
	line := appendLine(nil, mustMid(b), 123456, "ab")
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_ = hashLine(line)
	}
}

// BenchmarkCheckpointSign is one checkpoint's signature (Ed25519 over the
// note), paid once per DefaultCheckpointEvery records or
// DefaultCheckpointInterval, off the writer goroutine.
func BenchmarkCheckpointSign(b *testing.B) {
	skey, _, _ := GenerateKey()
	s, _ := note.NewSigner(skey)
	var t frontier
	for i := range 1_000_003 {
		t.add(leafHash([]byte{byte(i)}), nil)
	}
	for b.Loop() {
		if _, err := note.Sign(&note.Note{Text: checkpointText(OriginPrefix+"x", t.n, t.root())}, s); err != nil {
			b.Fatal(err)
		}
	}
}

func mustMid(b *testing.B) []byte {
	r := testRecord(1)
	r.Time = time.Now()
	rec, err := prepare(r)
	if err != nil {
		b.Fatal(err)
	}
	mid, err := encodeMid(&rec)
	if err != nil {
		b.Fatal(err)
	}
	return mid
}

// BenchmarkOpen opens a signed ledger of about 40,000 records in 4 MiB
// files: from its checkpoint log (the tree continues from the last
// checkpoint's frontier) and, for comparison, without the log (the tree is
// rebuilt from every record, as for a ledger written before checkpoints).
func BenchmarkOpen(b *testing.B) {
	skey, _, _ := GenerateKey()
	s, _ := note.NewSigner(skey)
	path := filepath.Join(b.TempDir(), "ledger.jsonl")
	l := openT(b, path, Options{Signer: s, MaxBytes: 4 << 20, Now: time.Now})
	for i := range 40_000 {
		if err := l.Submit(testRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	files, _ := Files(path)
	b.Logf("%d files", len(files))
	log := CheckpointLogName(path)
	saved, err := os.ReadFile(log)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"from-checkpoint", "rebuild"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				if err := os.WriteFile(log, saved, 0o600); err != nil {
					b.Fatal(err)
				}
				if mode == "rebuild" {
					_ = os.Remove(log)
				}
				b.StartTimer()
				l, err := Open(path, Options{Signer: s, Logger: quietLogger(nil)})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
