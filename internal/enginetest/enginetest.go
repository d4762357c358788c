// Package enginetest gives the tests of the front ends and the pipeline an
// engine on the bundled policies, as `proxy serve` runs it by default.
package enginetest

import (
	"context"
	"testing"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

// HMACKey is the pseudonymisation key of Bundled's engine: tests that check
// an hmac output compute it with the same key.
var HMACKey = []byte("0123456789abcdef")

// Bundled returns an engine with the bundled policies loaded.
func Bundled(tb testing.TB) *engine.Engine {
	tb.Helper()
	pol, err := engine.Load(context.Background(), policies.FS, engine.LoadOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	eng, err := engine.New(engine.Options{HMACKey: HMACKey})
	if err != nil {
		tb.Fatal(err)
	}
	eng.Swap(pol)
	return eng
}
