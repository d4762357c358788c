package engine_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/cputime"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

func stripeInput() *engine.Input {
	return &engine.Input{Method: "POST", Scheme: "http", Host: "api.stripe.com", Port: 80,
		Path: "/v1/payment_intents", Purpose: "payment", Subject: "u-123", Service: "billing",
		Headers: map[string]string{"content-type": "application/x-www-form-urlencoded",
			"authorization": "[present]", "idempotency-key": "b7d1e3a0", "x-request-id": "r-1"}}
}

// BenchmarkDecideBundled measures the decisions of the bundled policy for a
// card payment from billing to Stripe:
//   - cached: the same request again (the exact key hits);
//   - new-resource: a request for another resource id on a known route
//     (GET /v1/customers/cus_N with N new every time) from a new subject: the
//     engine evaluates route_match and finds the decision under the route key;
//   - uncached: the cache off, every decision evaluated in full.
//
// cpu-ns/op is the process's CPU time per decision: on a shared machine
// ns/op also counts the time spent waiting for a CPU.
func BenchmarkDecideBundled(b *testing.B) {
	ctx := context.Background()
	load := func(b *testing.B, cache int64) (*engine.Engine, *engine.Policy) {
		p, err := engine.Load(ctx, policies.FS, engine.LoadOptions{CacheBytes: cache})
		if err != nil {
			b.Fatal(err)
		}
		// A generous timeout: on a busy machine a 250 ms budget can run out
		// and fail the benchmark with a policy_timeout.
		e, _ := engine.New(engine.Options{HMACKey: []byte("k"), EvalTimeout: time.Minute})
		return e, p
	}
	b.Run("cached", func(b *testing.B) {
		e, p := load(b, 0)
		in := stripeInput()
		b.ReportAllocs()
		defer cputime.Report(b)()
		for b.Loop() {
			if d, err := e.Decide(ctx, p, in, nil); err != nil || !d.Allow {
				b.Fatalf("decision %+v err %v", d, err)
			}
		}
	})
	b.Run("new-resource", func(b *testing.B) {
		e, p := load(b, 0)
		in := stripeInput()
		in.Method, in.Path = "GET", "/v1/customers/cus_0"
		if _, err := e.Decide(ctx, p, in, nil); err != nil {
			b.Fatal(err)
		}
		// The inputs are built before the clock runs: a front end builds one
		// per request anyway, and building it is not the decision's cost.
		ins := make([]*engine.Input, 1<<14)
		for i := range ins {
			x := *in
			x.Path = "/v1/customers/cus_" + strconv.Itoa(i+1)
			x.Subject = "u-" + strconv.Itoa(i)
			ins[i] = &x
		}
		b.ReportAllocs()
		defer cputime.Report(b)()
		i := 0
		for b.Loop() {
			if d, err := e.Decide(ctx, p, ins[i%len(ins)], nil); err != nil || !d.Allow {
				b.Fatalf("decision %+v err %v", d, err)
			}
			i++
		}
	})
	b.Run("uncached", func(b *testing.B) {
		e, p := load(b, -1)
		in := stripeInput()
		b.ReportAllocs()
		defer cputime.Report(b)()
		for b.Loop() {
			if d, err := e.Decide(ctx, p, in, nil); err != nil || !d.Allow {
				b.Fatalf("decision %+v err %v", d, err)
			}
		}
	})
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
