package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
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
