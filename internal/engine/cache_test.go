package engine

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/policies"
)

func TestDecisionCacheGenerations(t *testing.T) {
	d := &Decision{Vendor: "v", size: 100}
	n := entrySize([]byte("k000"), d)
	c := newDecisionCache(10 * n) // five entries per generation
	key := func(i int) []byte { return fmt.Appendf(nil, "k%03d", i) }
	for i := range 5 {
		c.put(key(i), d)
	}
	if c.len() != 5 || c.bytes() != 5*n {
		t.Fatalf("len %d bytes %d, want 5 and %d", c.len(), c.bytes(), 5*n)
	}
	// The sixth entry starts a new generation; the first five become old.
	c.put(key(5), d)
	if c.len() != 6 {
		t.Fatalf("len %d, want 6", c.len())
	}
	// A hit in the old generation brings the entry back to the current one...
	if _, ok := c.get(key(0)); !ok {
		t.Fatal("k000 lost at the first generation change")
	}
	// ...so it survives the next change, while the unused old ones go.
	for i := 6; i < 10; i++ {
		c.put(key(i), d)
	}
	c.put(key(10), d)
	if _, ok := c.get(key(0)); !ok {
		t.Error("k000, used, was dropped")
	}
	if _, ok := c.get(key(1)); ok {
		t.Error("k001, unused for two generations, is still there")
	}
	if b := c.bytes(); b > 10*n {
		t.Errorf("bytes %d over the budget %d", b, 10*n)
	}
}

func TestDecisionCacheSkipsLargeEntries(t *testing.T) {
	c := newDecisionCache(1 << 20)
	c.put(make([]byte, maxCacheEntry), &Decision{Vendor: "v", size: 100})
	if c.len() != 0 {
		t.Fatal("an entry over maxCacheEntry was cached")
	}
}

// TestCacheBoundedUnderHostilePaths is issue 10's attack on the decision
// cache: 8,000 requests with 60 KB paths, most of them refused for hosts no
// contract covers, some to a known host on no route (refused), on a route
// with dot segments (refused), or with a 60 KB resource id (allowed). The
// cache keeps nothing for the first, and one small entry per route shape for
// the others (the path is not in the route key), so memory stays where it
// was. (A known host's long path costs its route matching, linear in the
// path: ~75 ns/byte, mostly the dot-segment regex; an unknown host's none.)
func TestCacheBoundedUnderHostilePaths(t *testing.T) {
	if testing.Short() {
		t.Skip("8,000 evaluations")
	}
	ctx := context.Background()
	p, err := Load(ctx, policies.FS, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := New(Options{HMACKey: []byte("k"), EvalTimeout: time.Minute})
	long := strings.Repeat("a", 60<<10)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range 8000 {
		in := &Input{Method: "GET", Scheme: "http", Port: 80, Purpose: "payment", Service: "billing"}
		id := fmt.Sprintf("%s%d", long, i)
		shape := i % 40
		switch shape {
		default:
			in.Host, in.Path = fmt.Sprintf("h%d.unknown.example", i), "/"+id
		case 1:
			in.Host, in.Path = "api.stripe.com", "/"+id
		case 2:
			in.Host, in.Path = "api.stripe.com", "/v1/customers/"+id
		case 3:
			in.Host, in.Path = "api.stripe.com", "/v1/customers/../"+id
		}
		d, err := e.Decide(ctx, p, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := shape == 2; d.Allow != want {
			t.Fatalf("request %d: allow %v (%s), want %v", i, d.Allow, d.Reason, want)
		}
	}
	after := heap()
	st := p.CacheStats()
	t.Logf("cache %+v; heap %d KiB before, %d KiB after", st, before>>10, after>>10)
	if st.Entries > 8 || st.Bytes > 16<<10 {
		t.Errorf("cache %+v: the hostile requests filled it", st)
	}
	if st.RouteHits < 550 {
		t.Errorf("cache %+v: the known hosts' requests were not decided from the route key", st)
	}
	if after > before+8<<20 {
		t.Errorf("heap grew from %d to %d KiB", before>>10, after>>10)
	}
}
