package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Slow senders cannot starve others: 30 connections that declare a 10 MiB
// body each (more than the whole body memory) and send one byte do not
// hold the memory a normal request needs, and are cut off with 408 once
// they fall below the minimum rate.
func TestSlowSendersDoNotStarve(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support", Args: []string{"--max-body-memory", "64MiB"}})
	var slow []net.Conn
	for range 30 {
		c, err := net.Dial("tcp", p.Egress)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST http://%s/api/v2/tickets.json HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Data-Purpose: support\r\nContent-Length: %d\r\n\r\n{",
			hostZendesk, hostZendesk, 10<<20)
		slow = append(slow, c)
	}
	time.Sleep(200 * time.Millisecond) // every slow request is now waiting for its body
	wantOK(t, p.do(t, ticketRequest(t)))

	// The slow senders are cut off: 408 body_timeout, recorded.
	_ = slow[0].SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(slow[0]), nil)
	if err != nil {
		t.Fatalf("slow sender: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	ref := wantRefusal(t, response{Status: resp.StatusCode, Header: resp.Header, Body: b}, 408, "body_timeout")
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, ref.DecisionID)) > 0 })
	if r := recordsOf(recs, ref.DecisionID)[0]; r.Kind != "refusal" || r.Outcome != "body_timeout" {
		t.Errorf("ledger %+v, want a body_timeout refusal", r)
	}
}

// hmacLeavesEvents is a usage-event batch whose attendee_ref (an hmac
// transform in the sister company's contract) is an array of one-digit
// numbers, about n bytes: each two-byte element leaves as a 67-byte
// string, 33 times the input.
func hmacLeavesEvents(n int) []byte {
	b := []byte(`{"events":[{"type":"webinar.joined","attendee_ref":[0`)
	for len(b)+4 <= n {
		b = append(b, ",1"...)
	}
	return append(b, "]}]}"...)
}

// peakRSS is the process's peak resident memory, from Linux's
// /proc/PID/status (VmHWM); 0 when unknown.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

// A transform cannot make a body grow without bound: the filtered body is
// charged to the body memory as it grows and bounded by what a body of
// --max-body may become. A 10 MiB batch that would leave as ~330 MB is
// refused 413 body_too_large, recorded, and the sidecar's memory stays
// near what the body itself costs; a small one that grows 33 times
// passes, in a buffer charged first.
func TestTransformGrowthIsBounded(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "analytics", Consents: consentsFile(t)})
	events := func(body []byte) request {
		return request{Method: "POST", URL: "http://ingest.webinar-group.example/v1/events",
			Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json",
				"X-Data-Purpose", "processing", "X-Data-Subject", "u-123"),
			Body: body}
	}
	small := hmacLeavesEvents(64 << 10)
	_, got := allowed(t, p, events(small))
	if len(got) < 30*len(small) {
		t.Fatalf("the vendor received %d bytes for %d: the case does not grow", len(got), len(small))
	}
	if _, m := p.adminGet(t, "/metrics"); metricValue(m, "pare_egress_filter_regrowths_total") < 1 {
		t.Error("pare_egress_filter_regrowths_total did not count the regrowth")
	}

	before := peakRSS(p.cmd.Process.Pid)
	big := hmacLeavesEvents(10<<20 - 64)
	ref := refused(t, p, events(big), 413, "body_too_large")
	if !strings.Contains(ref.Reason, "transforms") {
		t.Errorf("reason %q does not say why", ref.Reason)
	}
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, ref.DecisionID)) > 0 })
	if r := recordsOf(recs, ref.DecisionID)[0]; r.Kind != "refusal" || r.Outcome != "body_too_large" {
		t.Errorf("ledger %+v, want a body_too_large refusal", r)
	}
	// Unbounded, the filtered body alone was 330 MB (and its buffer grew
	// by doubling past it); bounded, the request holds about twice 10 MiB
	// (measured: 57 MiB before it, 130 MiB peak, with the GC's slack).
	if rss := peakRSS(p.cmd.Process.Pid); rss > 256<<20 {
		t.Errorf("peak RSS %d MiB", rss>>20)
	} else {
		t.Logf("peak RSS %d MiB (%d MiB before the large body)", rss>>20, before>>20)
	}
}

// The method the vendor receives is the method the policy decided on: a
// lower-case "post" is decided and sent as POST, and a method that is no
// upper-case token after that is refused.
func TestMethodSentIsMethodDecided(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	r := ticketRequest(t)
	r.Method = "post"
	wantOK(t, p.do(t, r))
	if got := onlyReceived(t, p.Stub); got.Method != "POST" {
		t.Errorf("the vendor received method %q, want POST", got.Method)
	}
	p.Stub.Reset()
	r.Method = "Patch-me"
	wantRefusal(t, p.do(t, r), 400, "bad_request")
	wantNothingReceived(t, p.Stub)
}
