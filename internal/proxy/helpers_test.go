package proxy

import (
	"testing"

	"github.com/pare-dev/pare/internal/pipeline"
)

// newProxy builds a proxy on a pipeline made from pc.
func newProxy(t testing.TB, pc pipeline.Config, up UpstreamOptions) *Proxy {
	t.Helper()
	pl, err := pipeline.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	px, err := New(Config{Pipeline: pl, Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return px
}
