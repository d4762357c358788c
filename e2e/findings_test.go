package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Findings of the adversarial review (the app as the attacker: it controls
// every byte of its requests, not the sidecar's config or policies). Each
// test failed on the code it was written against; run them all with
// go test ./... -run TestFinding.

// Finding 1: an encoded ";" in a path segment is decoded for the policy
// and then sent to the vendor raw, where servers read it as a path
// parameter: "/recordings/..%3Bx/..%3Bx/assets/logo.png" matches the policy's
// "/recordings/**", and a server that strips ";x" (Tomcat, Spring, Jetty)
// resolves "/recordings/..;x/..;x/assets/logo.png" to "/assets/logo.png" —
// the raw-";" refusal of cleanPath, sidestepped. The vendor must receive
// the ";" still encoded.
func TestFindingEncodedSemicolonSentRaw(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	r := request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/..%3Bx/..%3Bx/assets/logo.png",
		Header: hdr("Content-Type", "image/png", "X-Data-Purpose", "hosting"), Body: []byte("not really a png")}
	p.Stub.Reset()
	resp := p.do(t, r)
	for _, got := range p.Stub.Received() {
		if strings.Contains(got.RequestURI, ";") {
			t.Fatalf("the hosting provider received %q (status to the app %d): a raw ';' path parameter the policy decided as data", got.RequestURI, resp.Status)
		}
	}
}

// Finding 2: the card guard scans the URL path one segment at a time, so a
// card number written with slashes — a separator the guard itself joins
// digits across ("4111/1111/1111/1111" in a body is refused) — reaches a
// vendor whose route has "**".
func TestFindingCardNumberAcrossPathSegments(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	for _, r := range []request{
		{Method: "DELETE", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/4111/1111/1111/1111",
			Header: hdr("X-Data-Purpose", "hosting")},
		{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/5555/5555/5555/4444/notes.txt",
			Header: hdr("Content-Type", "text/plain", "X-Data-Purpose", "hosting"), Body: []byte("notes")},
	} {
		refused(t, p, r, 403, "card_number")
	}
}

// Finding 5: the egress log line names the request's decoded path, and a
// card refusal's cause names the JSON path of the card — payload values
// (a card number, an email address) in the logs, which the ledger carefully
// keeps out ("Logs never contain payload values").
func TestFindingLogsCarryNoPayloadValues(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	put := request{Method: "PUT", URL: "http://webinarco.zendesk.com/api/v2/tickets/4111111111111111",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json", "X-Data-Purpose", "support"),
		Body:   []byte(`{"ticket":{"status":"solved"}}`)}
	id1 := refused(t, p, put, 403, "card_number").DecisionID
	put.URL = "http://webinarco.zendesk.com/api/v2/tickets/maria.kowalska@example.org"
	id2 := wantOK(t, p.do(t, put))
	attendee := request{Method: "POST", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json", "X-Data-Purpose", "event_registration"),
		Body:   []byte(`{"email":"a@example.org","first_name":{"jan.zielinski@example.org":"5555 5555 5555 4444"},"last_name":"Z"}`)}
	id3 := refused(t, p, attendee, 403, "card_number").DecisionID
	for _, id := range []string{id1, id2, id3} {
		if !p.waitLog(t, id) {
			t.Fatalf("no log line for %s:\n%s", id, p.logs)
		}
	}
	logs := p.logs.String()
	for _, v := range []string{"4111111111111111", "maria.kowalska@example.org", "jan.zielinski@example.org"} {
		if strings.Contains(logs, v) {
			t.Errorf("the proxy's log holds the payload value %q", v)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}

// Finding 6: one app connection makes Pare hold far more than its HTTP/2
// windows. Inside a tunnel, HPACK lets a header block refer to a 4 KB
// entry of its dynamic table again and again: 15 references, 20 bytes on
// the wire, are a 60 KB header list that Pare decodes and holds for as
// long as the request lasts (here the 5 s grace of the minimum body rate;
// a slow vendor holds it up to --upstream-timeout). 100 streams per
// connection, --max-conns 4096 connections: about 25 GiB for ~70 MB sent.
// The limits table promises 64 KiB per stream and 1 MiB per connection of
// buffering; nothing bounds the headers of all requests as
// --max-body-memory bounds their bodies.
func TestFindingHTTP2HeaderMemory(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	heap := func() float64 {
		_, m := p.adminGet(t, "/metrics")
		return metricValue(m, "go_memstats_heap_inuse_bytes")
	}
	before := heap()
	const conns, streams = 20, 100
	sent := 0
	for range conns {
		sent += floodHeaders(t, p, streams)
	}
	// Every stream is either held in flight or refused at once as
	// overloaded (the connection's header budget): wait until all are
	// accounted for, so the heap is measured with everything admitted.
	inFlight, overloaded := streamsAccounted(t, p, conns*streams)
	if inFlight+overloaded < conns*streams {
		t.Errorf("of %d streams, %.0f are in flight and %.0f refused: the rest are unaccounted for", conns*streams, inFlight, overloaded)
	}
	grown := heap() - before
	t.Logf("%d connections sent %d bytes of headers; Pare's heap grew by %.0f MiB", conns, sent, grown/(1<<20))
	if limit := float64(conns * 2 << 20); grown > limit {
		t.Errorf("%d app connections made Pare hold %.0f MiB of heap, over %.0f MiB (2 MiB a connection: its 1 MiB of HTTP/2 windows, and as much again)",
			conns, grown/(1<<20), limit/(1<<20))
	}
}

// floodHeaders opens a tunnel to Zendesk, speaks HTTP/2 in it by hand and
// starts n requests whose bodies never come, each with a 60 KB header list
// made of references to one 4 KB dynamic-table entry. It returns the bytes
// sent.
func floodHeaders(t *testing.T, p *proxyProc, n int) int {
	t.Helper()
	raw, resp := rawConnect(t, p.Egress, hostZendesk+":443")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	_ = raw.SetReadDeadline(time.Time{})
	tc := tls.Client(raw, &tls.Config{RootCAs: p.caPool(t), ServerName: hostZendesk, NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("TLS in the tunnel: %v (ALPN %q)", err, tc.ConnectionState().NegotiatedProtocol)
	}
	go func() { _, _ = io.Copy(io.Discard, tc) }()
	var out bytes.Buffer
	out.WriteString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out.Write(h2Frame(0x4, 0, 0, nil)) // SETTINGS
	out.Write(h2Frame(0x4, 1, 0, nil)) // SETTINGS ACK of the server's
	for s := range n {
		blk := []byte{0x83, 0x87} // :method POST, :scheme https
		blk = hpackString(append(blk, 0x04), "/api/v2/tickets.json")
		blk = hpackString(append(blk, 0x01), hostZendesk)
		blk = hpackString(hpackString(append(blk, 0x00), "content-type"), "application/json")
		blk = hpackString(hpackString(append(blk, 0x00), "x-data-purpose"), "support")
		refs := 15
		if s == 0 { // the 4 KB entry, added to the dynamic table (index 62)
			blk = hpackString(hpackString(append(blk, 0x40), "x-pad"), strings.Repeat("a", 4000))
			refs--
		}
		for range refs {
			blk = append(blk, 0x80|62)
		}
		out.Write(h2Frame(0x1, 0x4, uint32(2*s+1), blk)) // HEADERS, END_HEADERS, no END_STREAM
	}
	if _, err := tc.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	return out.Len()
}

// streamsAccounted waits (up to 10 s) until n streams are either in flight
// or refused as overloaded, and returns both counts.
func streamsAccounted(t *testing.T, p *proxyProc, n int) (inFlight, overloaded float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, m := p.adminGet(t, "/metrics")
		inFlight = metricValue(m, "pare_egress_requests_in_flight")
		overloaded = metricValue(m, "pare_egress_requests_total", `outcome="overloaded"`)
		if inFlight+overloaded >= float64(n) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%.0f streams in flight, %.0f refused as overloaded", inFlight, overloaded)
	return inFlight, overloaded
}

func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	h := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[5:], stream)
	return append(h, payload...)
}

// hpackString appends an HPACK string literal (no Huffman coding).
func hpackString(b []byte, s string) []byte {
	v := len(s)
	if v < 127 {
		b = append(b, byte(v))
	} else {
		b = append(b, 127)
		for v -= 127; v >= 128; v >>= 7 {
			b = append(b, byte(v&127|128))
		}
		b = append(b, byte(v))
	}
	return append(b, s...)
}

// Finding 7: dry run sends the app's own headers, and the check that
// keeps card numbers out of a dry-run original scans header values only.
// A card number in a header's name — any name, in dry run — reaches a
// vendor that may not receive card data ("card data reaches a vendor not
// entitled to it in no mode").
func TestFindingDryRunCardInHeaderName(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Args: []string{"--dry-run"}, Consents: consentsFile(t)})
	body := []byte(`{"email":"attendee@example.org","first_name":"Jan","last_name":"Zielinski"}`)
	p.Stub.Reset()
	resp := p.do(t, attendeeRequest(t, "event_registration", "u-123", body).with("X-Ref-4111-1111-1111-1111", "1"))
	for _, got := range p.Stub.Received() {
		for name := range got.Header {
			if strings.Contains(name, "4111") {
				t.Errorf("Eventbrite received the header %q (status to the app %d)", name, resp.Status)
			}
		}
	}
}

// Finding 8: an upload streamed without a declared length (chunked, or
// HTTP/2 without content-length) is recorded as 0 bytes in and out, in the
// disclosure and in the outcome, however much left; and an app that
// breaks off its upload half-way is recorded as "vendor_unreachable" (502),
// which blames a vendor that was reached and sent the partial body.
func TestFindingStreamedUploadRecord(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	head := fmt.Sprintf("PUT http://%[1]s/recordings/2026/%%s.mp4 HTTP/1.1\r\nHost: %[1]s\r\nContent-Type: video/mp4\r\n"+
		"X-Data-Purpose: hosting\r\nTransfer-Encoding: chunked\r\n\r\n", hostHosting)
	chunk := fmt.Sprintf("4000\r\n%s\r\n", bytes.Repeat([]byte("v"), 0x4000))
	// A whole upload of 5 chunks.
	c, err := net.Dial("tcp", p.Egress)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, head, "whole")
	fmt.Fprint(c, strings.Repeat(chunk, 5)+"0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	whole := decisionID(t, response{Status: resp.StatusCode, Header: resp.Header})
	// An upload broken off after 5 chunks.
	c2, err := net.Dial("tcp", p.Egress)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c2, head, "broken")
	fmt.Fprint(c2, strings.Repeat(chunk, 5))
	time.Sleep(300 * time.Millisecond)
	c2.Close()
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool {
		n := 0
		for _, r := range rs {
			if r.Kind == "outcome" {
				n++
			}
		}
		return n >= 2
	})
	for _, r := range recs {
		switch {
		case r.DecisionID == whole && r.Kind == "outcome" && (r.BytesIn != 5*0x4000 || r.BytesOut != 5*0x4000):
			t.Errorf("a whole upload of %d bytes: outcome record says %d bytes in, %d out", 5*0x4000, r.BytesIn, r.BytesOut)
		case r.DecisionID != whole && r.Kind == "outcome" && r.Outcome == "vendor_unreachable":
			t.Errorf("an upload the app broke off is recorded as %s (%d): the vendor was reached", r.Outcome, r.Status)
		}
	}
}

// The headers of intercepted requests in flight are charged to the body
// memory too: with --max-body-memory 1MiB, 20 connections of stalled 60 KB
// header lists hold at most about 1 MiB of them, not 20 times each
// connection's 256 KiB; the rest are refused as overloaded at once.
func TestHeaderMemoryBoundedByBodyMemory(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support", Args: []string{"--max-body-memory", "1MiB"}})
	const conns, streams = 20, 20
	for range conns {
		floodHeaders(t, p, streams)
	}
	inFlight, overloaded := streamsAccounted(t, p, conns*streams)
	if inFlight+overloaded < conns*streams {
		t.Fatalf("of %d streams, %.0f are in flight and %.0f refused: the rest are unaccounted for", conns*streams, inFlight, overloaded)
	}
	// Each list is ~61 KB as HTTP/2 counts it: 1 MiB holds 17.
	if inFlight > 17 {
		t.Errorf("%.0f stalled requests in flight hold ~%.0f KB of headers, over the 1 MiB of body memory", inFlight, inFlight*61)
	}
}
