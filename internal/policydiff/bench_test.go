package policydiff

import (
	"context"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/inputspace"
	"github.com/pare-dev/pare/policies"
)

// BenchmarkCompare measures what `proxy diff` costs per case of the input
// space, against the baseline of deciding the same cases under one policy
// with the same engine (what the engine's differential test pays). Both
// run on one worker, on a sample of the bundled policy's space, with
// Zendesk's contract gaining a field. Compare decides every case twice, so
// the ratio compare/decide-one should be about 2; what it costs beyond
// that is the diff's own work (generating cases, comparing and grouping).
//
//	go test -run '^$' -bench Compare -benchtime 3x ./internal/policydiff/
//
// The whole space on every CPU, through the binary:
//
//	go run ./cmd/proxy diff policies git:HEAD
func BenchmarkCompare(b *testing.B) {
	const n = 2000
	ctx := context.Background()
	old := side(b, "old", policies.FS)
	new := side(b, "new", variant(b, zendeskPhone...))
	sp := inputspace.New(inputspace.Union(old.Policy.Contracts, new.Policy.Contracts), inputspace.Options{})
	idx := sp.Sample(n)
	e, err := engine.New(engine.Options{HMACKey: hmacKey, EvalTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decide-one", func(b *testing.B) {
		for b.Loop() {
			for _, i := range idx {
				c := sp.Case(i)
				if _, err := e.Decide(ctx, old.Policy, &c.Input, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/case")
	})
	b.Run("compare", func(b *testing.B) {
		for b.Loop() {
			if _, err := Compare(ctx, old, new, Options{Sample: n, Jobs: 1}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/case")
	})
}
