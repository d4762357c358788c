package engine_test

import (
	"context"
	"testing"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

func stripeInput() *engine.Input {
	return &engine.Input{Method: "POST", Scheme: "http", Host: "api.stripe.com", Port: 80,
		Path: "/v1/payment_intents", Purpose: "payment", Subject: "u-123", Service: "billing",
		Headers: map[string]string{"content-type": "application/x-www-form-urlencoded",
			"authorization": "[present]", "idempotency-key": "b7d1e3a0", "x-request-id": "r-1"}}
}

// A typical request against the bundled policies: the cached path is what
// serve pays per request; uncached is the cost of a policy evaluation.
func BenchmarkDecideBundled(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := engine.Load(ctx, policies.FS, engine.LoadOptions{CacheSize: bc.cache})
			if err != nil {
				b.Fatal(err)
			}
			e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
			in := stripeInput()
			b.ReportAllocs()
			for b.Loop() {
				d, err := e.Decide(ctx, p, in, nil)
				if err != nil || !d.Allow {
					b.Fatalf("decision %+v err %v", d, err)
				}
			}
		})
	}
}

func TestBundledPoliciesDoNotReadTheBody(t *testing.T) {
	p, err := engine.Load(context.Background(), policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.NeedsBody() {
		t.Fatal("the bundled policies refer to input.body: every request would pay for parsing it twice")
	}
}

// Request ids, idempotency keys and subject ids differ on every request; the
// bundled policy does not read them, so they must not split the cache.
func TestBundledDecisionsAreShared(t *testing.T) {
	ctx := context.Background()
	p, err := engine.Load(ctx, policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
	a, err := e.Decide(ctx, p, stripeInput(), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := stripeInput()
	in.Subject, in.Headers["x-request-id"], in.Headers["idempotency-key"] = "u-999", "r-2", "other"
	b, err := e.Decide(ctx, p, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("a request differing only in subject and request ids was decided again")
	}
}
