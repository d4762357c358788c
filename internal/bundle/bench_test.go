package bundle

import (
	"context"
	"os"
	"testing"

	"github.com/pare-dev/pare/internal/engine"
)

// BenchmarkActivate compares what a sidecar spends to activate the policy
// from a bundle (gzip, tar, signature and hash checks, then the same
// engine.Load) with loading the same policy from a directory: the cost of
// verification, per activation (not per request). Report the ratio of the
// two in one run.
func BenchmarkActivate(b *testing.B) {
	key := newECKey(b)
	raw := build(b, os.DirFS(policiesDir), key)
	vc := verifier(b, key)
	ctx := context.Background()
	b.Run("directory", func(b *testing.B) {
		for b.Loop() {
			if _, err := engine.LoadDir(ctx, policiesDir, engine.LoadOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bundle", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, _, err := LoadPolicy(ctx, raw, vc, 0, engine.LoadOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify_only", func(b *testing.B) {
		for b.Loop() {
			if _, err := Read(raw, vc, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
