package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHotReloadUnderLoad sends thousands of tickets to Zendesk from 16
// goroutines while another rewrites the Zendesk contract over and over:
// version A (the bundled one), an invalid edit that must be rejected (the
// last good version stays), version B (without ticket/priority). No request
// may fail because of a reload, every body the vendor received must be
// exactly what A or B allows — never an unfiltered body — and each request
// must have been filtered by the revision its ledger record names.
func TestHotReloadUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		minRequests = 2000
		workers     = 16
		minCycles   = 3
	)
	dir := copyPolicies(t)
	contractFile := filepath.Join(dir, "contracts", "zendesk.yaml")
	versionA := string(readFile(t, contractFile))
	const priority = "        - ticket/priority\n"
	if !strings.Contains(versionA, priority) {
		t.Fatalf("zendesk.yaml no longer lists ticket/priority; update this test")
	}
	versionB := strings.Replace(versionA, priority, "", 1) // the POST route only
	invalid := strings.Replace(versionA, "  role: support\n", "  role: support\n  colour: blue\n", 1)
	if invalid == versionA {
		t.Fatal("could not build the invalid edit")
	}

	p := startProxy(t, proxyConfig{Policies: dir})
	revA := p.revision(t)

	ticket := payload(t, "ticket.json")
	var (
		sent     atomic.Int64
		done     atomic.Bool
		mu       sync.Mutex
		failures []string
		ids      = map[string]string{} // Authorization token -> decision id
	)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() || sent.Load() < minRequests {
				n := sent.Add(1)
				token := fmt.Sprintf("Bearer reload-%d", n)
				resp, err := p.try(ticketRequest(t).without("Authorization").with("Authorization", token).withBody(ticket))
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case resp.Status != 200:
					failures = append(failures, fmt.Sprintf("%d %s", resp.Status, resp.Body))
				default:
					ids[token] = resp.Header.Get("X-Pare-Decision-Id")
				}
				mu.Unlock()
			}
		}()
	}

	// The rewriter: each step waits until the proxy has seen it, so every
	// cycle really swaps twice and rejects once.
	revB := ""
	for cycle := 0; cycle < minCycles; cycle++ {
		writeAtomic(t, contractFile, []byte(versionB))
		rb := p.waitRevisionNot(t, revA)
		if revB != "" && rb != revB {
			t.Errorf("version B loaded as revision %s, then %s", revB, rb)
		}
		revB = rb
		fails := p.reloads(t, "failure")
		writeAtomic(t, contractFile, []byte(invalid))
		p.waitReloads(t, "failure", fails+1)
		if rev := p.revision(t); rev != revB {
			t.Errorf("after an invalid edit the revision is %s, want the last good %s", rev, revB)
		}
		writeAtomic(t, contractFile, []byte(versionA))
		if ra := p.waitRevisionNot(t, revB); ra != revA {
			t.Errorf("version A came back as revision %s, want %s", ra, revA)
		}
	}
	done.Store(true)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %s", len(failures), sent.Load(), failures[0])
	}

	// What Zendesk may receive under each version.
	base := []string{"ticket/comment/body", "ticket/comment/public", "ticket/requester/email",
		"ticket/requester/name", "ticket/subject", "ticket/tags", "ticket/via/channel"}
	allowedB := strings.Join(base, ",")
	allowedA := strings.Join(sortedCopy(append(base, "ticket/priority")), ",")

	recs := readLedger(t, p.Ledger)
	revOf := map[string]string{}
	for _, r := range recs {
		if r.Kind == "disclosure" {
			revOf[r.DecisionID] = r.Revision
		}
	}
	received := p.Stub.Received()
	if len(received) != len(ids) {
		t.Errorf("the vendor received %d requests, the app got %d answers", len(received), len(ids))
	}
	seen := map[string]int{}
	for _, r := range received {
		var body any
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("the vendor received a body that is not JSON: %v", err)
		}
		keys := strings.Join(leafPaths(body), ",")
		token := r.Header.Get("Authorization")
		rev := revOf[ids[token]]
		var want string
		switch rev {
		case revA:
			want = allowedA
		case revB:
			want = allowedB
		default:
			t.Fatalf("request %s: its disclosure record names revision %q, neither A nor B", token, rev)
		}
		if keys != want {
			t.Fatalf("request %s under revision %s sent %s, want %s", token, rev[:12], keys, want)
		}
		seen[rev]++
	}
	t.Logf("%d requests, %d under A, %d under B, %d reload cycles", len(received), seen[revA], seen[revB], minCycles)

	if got := p.reloads(t, "failure"); got < minCycles {
		t.Errorf(`pare_policy_reloads_total{result="failure"} = %v, want >= %d`, got, minCycles)
	}
	if got := p.reloads(t, "success"); got < 1+2*minCycles {
		t.Errorf(`pare_policy_reloads_total{result="success"} = %v, want >= %d`, got, 1+2*minCycles)
	}
	if !strings.Contains(p.logs.String(), "zendesk.yaml") {
		t.Error("the failed reload is not logged with the file name")
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// leafPaths lists the paths of a JSON value's leaves, sorted; arrays count
// as leaves (the contracts allow them whole, e.g. ticket/tags).
func leafPaths(v any) []string {
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			out = append(out, prefix)
			return
		}
		for k, c := range m {
			if prefix == "" {
				walk(k, c)
			} else {
				walk(prefix+"/"+k, c)
			}
		}
	}
	walk("", v)
	sort.Strings(out)
	return out
}

// revision is the loaded policy revision, from /debug/policy.
func (p *proxyProc) revision(t testing.TB) string {
	t.Helper()
	code, b := p.adminGet(t, "/debug/policy")
	if code != 200 {
		t.Fatalf("/debug/policy %d: %s", code, b)
	}
	var dp struct {
		Revision string `json:"revision"`
	}
	if err := json.Unmarshal(b, &dp); err != nil {
		t.Fatal(err)
	}
	return dp.Revision
}

// waitRevisionNot waits until the loaded revision differs from old.
func (p *proxyProc) waitRevisionNot(t testing.TB, old string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rev := p.revision(t); rev != old {
			return rev
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy revision stayed %s for 10s after an edit", old[:12])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reloads reads pare_policy_reloads_total{result=...}.
func (p *proxyProc) reloads(t testing.TB, result string) float64 {
	t.Helper()
	_, b := p.adminGet(t, "/metrics")
	v := metricValue(b, "pare_policy_reloads_total", fmt.Sprintf("result=%q", result))
	if v < 0 {
		return 0
	}
	return v
}

func (p *proxyProc) waitReloads(t testing.TB, result string, atLeast float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.reloads(t, result) < atLeast {
		if time.Now().After(deadline) {
			t.Fatalf(`pare_policy_reloads_total{result=%q} did not reach %v within 10s`, result, atLeast)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
