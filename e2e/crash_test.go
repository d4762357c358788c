package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKill9KeepsEveryAcknowledgedDisclosure sends requests from 8 goroutines,
// SIGKILLs the proxy mid-way, and checks the promise "no disclosure without a
// record": the chain verifies (a torn last line is the only damage a crash
// may leave, and reopening the ledger removes it), every request the app got
// a 200 for has its disclosure record, and the vendor received no more
// requests than there are disclosure records. A proxy restarted on the same
// ledger continues the chain.
func TestKill9KeepsEveryAcknowledgedDisclosure(t *testing.T) {
	t.Parallel()
	stub := startStub(t)
	p := startProxy(t, proxyConfig{Stub: stub})

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req := ticketRequest(t).without("Authorization").with("Authorization", fmt.Sprintf("Bearer kill-%d-%d", w, n))
				resp, err := p.try(req)
				if err != nil {
					return // the proxy is gone
				}
				if resp.Status == 200 {
					mu.Lock()
					acked = append(acked, resp.Header.Get("X-Pare-Decision-Id"))
					mu.Unlock()
				}
			}
		}(w)
	}
	// Kill once a few hundred requests were acknowledged (or after 3s).
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Kill()
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no request was acknowledged before the kill")
	}

	// verify either passes, or reports only a torn last line.
	_, errOut, code := runCLI(t, "ledger", "verify", p.Ledger)
	if code != 0 && !strings.Contains(errOut, "torn") {
		t.Fatalf("ledger verify after kill -9: exit %d, and not a torn tail:\n%s", code, errOut)
	}
	if code != 0 {
		t.Logf("verify after the kill reports a torn tail (expected sometimes): %s", errOut)
	}

	recs := readLedger(t, p.Ledger) // a torn last line is skipped
	disclosed := map[string]bool{}
	for _, r := range recs {
		if r.Kind == "disclosure" {
			disclosed[r.DecisionID] = true
		}
	}
	missing := 0
	for _, id := range acked {
		if !disclosed[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged requests have no disclosure record", missing, len(acked))
	}
	if got := len(stub.Received()); got > len(disclosed) {
		t.Errorf("the vendor received %d requests but only %d disclosures are recorded", got, len(disclosed))
	}
	t.Logf("%d acknowledged, %d disclosures recorded, %d received by the vendor", len(acked), len(disclosed), len(stub.Received()))

	// Restart on the same ledger: Open removes a torn tail and continues the
	// chain, so after one more request verify passes.
	p2 := startProxy(t, proxyConfig{Stub: stub, Ledger: p.Ledger})
	id := wantOK(t, p2.do(t, ticketRequest(t)))
	p2.Stop(t)
	out, errOut, code := runCLI(t, "ledger", "verify", p.Ledger)
	if code != 0 {
		t.Fatalf("ledger verify after the restart: exit %d: %s%s", code, out, errOut)
	}
	if len(recordsOf(readLedger(t, p.Ledger), id)) == 0 {
		t.Error("the request after the restart is not in the ledger")
	}
}

// TestLedgerUnwritableRefuses points the ledger at /dev/full (through a
// symlink, so the lock file lives in a temp dir): the proxy starts, but
// every write fails with ENOSPC, so every request is refused 503
// ledger_unavailable and nothing is sent — a disclosure is never made
// unrecorded. (A read-only directory would not do: the tests may run as
// root.)
func TestLedgerUnwritableRefuses(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	led := filepath.Join(t.TempDir(), "ledger.jsonl")
	if err := os.Symlink("/dev/full", led); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyConfig{Ledger: led})
	for _, r := range []request{ticketRequest(t), paymentRequest(t)} {
		wantRefusal(t, p.do(t, r), 503, "ledger_unavailable")
	}
	wantNothingReceived(t, p.Stub)
	_, m := p.adminGet(t, "/metrics")
	if v := metricValue(m, "pare_ledger_write_errors_total"); v < 2 {
		t.Errorf("pare_ledger_write_errors_total = %v, want >= 2", v)
	}
	if v := metricValue(m, "pare_egress_requests_total", `outcome="ledger_unavailable"`); v < 2 {
		t.Errorf(`pare_egress_requests_total{outcome="ledger_unavailable"} = %v, want >= 2`, v)
	}
}
