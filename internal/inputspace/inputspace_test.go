package inputspace

import (
	"context"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

func bundled(t *testing.T) (*engine.Engine, *engine.Policy) {
	t.Helper()
	p, err := engine.Load(context.Background(), policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{HMACKey: []byte("k"), EvalTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return e, p
}

// The space is a pure function of the contracts, the options and the index:
// `proxy diff` evaluates two policies over the very same requests.
func TestCasesAreDeterministic(t *testing.T) {
	_, p := bundled(t)
	a := New(p.Contracts, Options{Seed: 3})
	b := New(p.Contracts, Options{Seed: 3})
	if a.Len() != b.Len() || a.Product() < 100_000 {
		t.Fatalf("len %d and %d, product %d: want equal, and at least 100,000 systematic cases", a.Len(), b.Len(), a.Product())
	}
	for _, i := range a.Sample(500) {
		if x, y := a.Case(i), b.Case(i); !reflect.DeepEqual(x, y) {
			t.Fatalf("case %d differs:\n%+v\n%+v", i, x, y)
		}
	}
	if c := New(p.Contracts, Options{Seed: 4}).Case(7); reflect.DeepEqual(c.Input, a.Case(7).Input) {
		t.Error("another seed drew the same request")
	}
}

// A sample of a few thousand cases takes every value of every dimension.
func TestSampleCoversEveryDimension(t *testing.T) {
	_, p := bundled(t)
	sp := New(p.Contracts, Options{})
	seen := map[string]map[any]bool{}
	mark := func(dim string, v any) {
		if seen[dim] == nil {
			seen[dim] = map[any]bool{}
		}
		seen[dim][v] = true
	}
	for _, i := range sp.Sample(3000) {
		d := sp.Case(i).Dims
		mark("random", d.Random)
		if d.Random {
			continue
		}
		mark("target", [3]any{d.Vendor, d.Route, d.Method})
		mark("purpose", d.Purpose)
		mark("consent", d.Consent)
		mark("gpc", d.GPC)
		mark("service", d.Service)
		mark("legal", d.Legal)
	}
	// Unknown hosts of different kinds share their dimensions.
	targets := map[[3]any]bool{}
	for _, tg := range sp.targets {
		targets[[3]any{tg.vendor, tg.route, tg.method}] = true
	}
	for dim, want := range map[string]int{
		"target": len(targets), "purpose": len(sp.purposes), "consent": len(ConsentStates),
		"gpc": 2, "service": len(sp.services), "legal": len(LegalStates), "random": 2,
	} {
		if got := len(seen[dim]); got != want {
			t.Errorf("%s: %d values in the sample, want %d", dim, got, want)
		}
	}
}

// Every route of every bundled contract is reached: some case drawn for it
// is allowed by the bundled policy, with that route matched. A generator
// whose paths did not match their globs would fail this.
func TestEveryRouteIsReached(t *testing.T) {
	e, p := bundled(t)
	sp := New(p.Contracts, Options{})
	ctx := context.Background()
	for ti, tg := range sp.targets {
		if tg.c == nil || !contains(tg.c.Routes[tg.route].Methods, tg.method) {
			continue
		}
		reached := false
		end := sp.product
		if ti+1 < len(sp.offsets) {
			end = sp.offsets[ti+1]
		}
		for i := sp.offsets[ti]; i < end && !reached; i += 7 {
			c := sp.Case(i)
			d, err := e.Decide(ctx, p, &c.Input, nil)
			if err != nil {
				t.Fatal(err)
			}
			reached = d.Allow && d.Route == tg.c.Routes[tg.route].Path && d.Vendor == tg.vendor
		}
		if !reached {
			t.Errorf("%s route %d (%s %s): no case drawn for it is allowed on it", tg.vendor, tg.route, tg.method, tg.c.Routes[tg.route].Path)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestNeighboursDifferInOneDimension(t *testing.T) {
	_, p := bundled(t)
	sp := New(p.Contracts, Options{})
	c := sp.Case(12345)
	ns := sp.Neighbours(c)
	if len(ns) < 5 {
		t.Fatalf("%d neighbours", len(ns))
	}
	for _, n := range ns {
		if n.Input.Host != c.Input.Host || n.Input.Path != c.Input.Path || n.Input.Subject != c.Input.Subject {
			t.Errorf("neighbour %+v moved the request itself", n.Dims)
		}
	}
	r := sp.Reroll(c, 1)
	if r.Dims != c.Dims || r.Input.Subject == c.Input.Subject {
		t.Errorf("reroll %+v of %+v: want the same dimensions, another subject", r.Dims, c.Dims)
	}
}

// Union of two loads of the same policy is the space of one: equal
// contracts that are not the same pointer add no route. A route, host,
// purpose or need-to-know service only the old version has is still tried.
func TestUnion(t *testing.T) {
	_, a := bundled(t)
	_, b := bundled(t)
	if a.Contracts["zendesk"] == b.Contracts["zendesk"] {
		t.Fatal("two loads share a contract: the test proves nothing")
	}
	one := New(a.Contracts, Options{})
	if u := New(Union(a.Contracts, b.Contracts), Options{}); u.Len() != one.Len() {
		t.Errorf("union of a policy with itself: %d cases, want %d", u.Len(), one.Len())
	}
	old := *a.Contracts["stripe"]
	old.Routes = append(old.Routes, contract.Route{Methods: []string{"POST"}, Path: "/v1/refunds", Fields: []string{"charge"}})
	old.Hosts = append(old.Hosts, "files.stripe.com")
	old.NeedToKnow = append(old.NeedToKnow, contract.NeedToKnow{Fields: []string{"charge"}, Services: []string{"refunds"}})
	withOld := maps.Clone(a.Contracts)
	withOld["stripe"] = &old
	u := Union(withOld, b.Contracts)
	s := u["stripe"]
	if n := len(s.Routes); n != len(b.Contracts["stripe"].Routes)+1 || s.Routes[n-1].Path != "/v1/refunds" {
		t.Errorf("union routes: %+v", s.Routes)
	}
	if !contains(s.Hosts, "files.stripe.com") {
		t.Errorf("union hosts: %v", s.Hosts)
	}
	if !contains(New(u, Options{}).services, "refunds") {
		t.Error("a service only the old need-to-know names is not tried")
	}
	if len(b.Contracts["stripe"].Routes) == len(s.Routes) {
		t.Error("union changed its argument")
	}
}
