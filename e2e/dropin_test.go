package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// dropInClient is an HTTPS client that uses the sidecar as its
// HTTPS_PROXY and trusts the drop-in CA — HTTP/2 when the server offers it.
func (p *proxyProc) dropInClient(t testing.TB, keepAlive bool) *http.Client {
	t.Helper()
	proxyURL, _ := url.Parse("http://" + p.Egress)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: p.caPool(t)},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: !keepAlive,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (p *proxyProc) caPool(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(readFile(t, p.CAFile())) {
		t.Fatalf("no CA certificate in %s", p.CAFile())
	}
	return pool
}

// zendeskCase is the realistic Zendesk ticket of TestVendorGolden, whose
// golden says what the vendor must receive.
func zendeskCase(t testing.TB) request {
	for _, c := range vendorCases(t) {
		if c.name == "zendesk-ticket" {
			return c.req
		}
	}
	t.Fatal("no zendesk-ticket case")
	return request{}
}

func sendWith(t testing.TB, c *http.Client, r request) (response, *http.Response) {
	t.Helper()
	req, err := r.httpRequest(context.Background(), httpsURL(r.URL))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, httpsURL(r.URL), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, resp
}

// rawConnect opens a CONNECT tunnel by hand and returns the connection
// after the proxy's answer, with that answer.
func rawConnect(t testing.TB, egress, hostport string) (net.Conn, *http.Response) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", egress, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hostport, hostport)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", hostport, err)
	}
	return conn, resp
}

// An app whose SDK calls https:// URLs through HTTPS_PROXY gets the same
// minimisation as a plain request, over HTTP/2, with many requests sharing
// one tunnel; the ledger records each.
func TestDropInHTTP2OneTunnel(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	c := p.dropInClient(t, true)
	var ids []string
	for i := range 5 {
		p.Stub.Reset()
		resp, raw := sendWith(t, c, zendeskCase(t))
		ids = append(ids, wantOK(t, resp))
		if raw.ProtoMajor != 2 {
			t.Errorf("request %d: app spoke %s to Pare, want HTTP/2", i, raw.Proto)
		}
		got := onlyReceived(t, p.Stub)
		wantNoControlHeaders(t, got)
		golden(t, "zendesk-ticket.golden", renderReceived(got))
	}
	_, metrics := p.adminGet(t, "/metrics")
	if n := metricValue(metrics, "pare_tunnel_connections_total", `mode="connect"`, `result="intercepted"`); n != 1 {
		t.Errorf("tunnels intercepted = %v, want 1 for 5 requests on one connection", n)
	}
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, ids[4])) >= 2 })
	for _, id := range ids {
		if d := kindOf(t, recordsOf(recs, id), "disclosure"); d.Vendor != "zendesk" {
			t.Errorf("disclosure %s vendor %q", id, d.Vendor)
		}
	}
}

// No blind tunnels: CONNECT to a host no contract names is refused with a
// reason, recorded, and nothing is sent anywhere.
func TestDropInUnknownHost(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	_, resp := rawConnect(t, p.Egress, "api.tracking-pixels.example:443")
	b, _ := io.ReadAll(resp.Body)
	ref := wantRefusal(t, response{Status: resp.StatusCode, Header: resp.Header, Body: b}, 403, "unknown_vendor")
	if !strings.Contains(ref.Reason, "api.tracking-pixels.example") {
		t.Errorf("reason %q does not name the host", ref.Reason)
	}
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, ref.DecisionID)) > 0 })
	r := recordsOf(recs, ref.DecisionID)[0]
	if r.Kind != "refusal" || r.Outcome != "unknown_vendor" || r.Host != "api.tracking-pixels.example" {
		t.Errorf("ledger record %+v, want a refusal of the host", r)
	}
	// Through a real client too: the tunnel fails, the app sees 403.
	_, err := p.dropInClient(t, false).Get("https://api.tracking-pixels.example/collect")
	if err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("client through a refused tunnel: %v, want a 403 from the proxy", err)
	}
	wantNothingReceived(t, p.Stub)
}

// An app that does not trust Pare's CA fails its handshake: nothing is
// decided, sent or disclosed, and the failure is counted.
func TestDropInUntrustedClient(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	proxyURL, _ := url.Parse("http://" + p.Egress)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	req, _ := ticketRequest(t).httpRequest(context.Background(), httpsURL(ticketRequest(t).URL))
	if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the CA: %v, want a certificate error", err)
	}
	wantNothingReceived(t, p.Stub)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, metrics := p.adminGet(t, "/metrics")
		if metricValue(metrics, "pare_tunnel_handshake_failures_total", `mode="connect"`) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed handshake was not counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range readLedger(t, p.Ledger) {
		if r.Kind == "disclosure" {
			t.Errorf("a disclosure was recorded: %+v", r)
		}
	}
}

// A tunnel that carries anything but TLS is closed: plain HTTP inside a
// CONNECT to a vendor must not become an unencrypted, unfiltered path.
func TestDropInGarbageInTunnel(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	conn, resp := rawConnect(t, p.Egress, hostZendesk+":443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT to a vendor: %d", resp.StatusCode)
	}
	body := `{"ticket":{"subject":"s","requester":{"email":"maria.kowalska@example.org"}}}`
	fmt.Fprintf(conn, "POST /api/v2/tickets.json HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Data-Purpose: support\r\nContent-Length: %d\r\n\r\n%s",
		hostZendesk, len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, _ := io.ReadAll(conn)
	if strings.Contains(string(rest), "HTTP/1.1 200") {
		t.Fatalf("plain HTTP inside the tunnel was answered: %q", rest)
	}
	wantNothingReceived(t, p.Stub)
}

// Inside a tunnel to one vendor, a Host header naming another is refused:
// the policy decides for the tunnel's host, which is where it goes.
func TestDropInHostMismatch(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	conn, resp := rawConnect(t, p.Egress, hostStripe+":443")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: hostStripe, RootCAs: p.caPool(t), NextProtos: []string{"http/1.1"}})
	fmt.Fprintf(tc, "POST /api/v2/tickets.json HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Data-Purpose: support\r\nContent-Length: 2\r\n\r\n{}", hostZendesk)
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	wantRefusal(t, response{Status: r.StatusCode, Header: r.Header, Body: b}, 400, "bad_request")
	wantNothingReceived(t, p.Stub)
}

// Many apps' tunnels at once: every request is minimised and delivered.
func TestDropInConcurrentTunnels(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	const n = 40
	c := p.dropInClient(t, false) // no keep-alive: one tunnel per request
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ticketRequest(t)
			req, _ := r.httpRequest(context.Background(), httpsURL(r.URL))
			resp, err := c.Do(req)
			if err != nil {
				errs <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("request %d: status %d", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(p.Stub.Received()); got != n {
		t.Errorf("the vendor received %d requests, want %d", got, n)
	}
	for _, r := range p.Stub.Received() {
		if strings.Contains(string(r.Body), "maria.kowalska") && strings.Contains(string(r.Body), "phone") {
			t.Fatalf("an unminimised body reached the vendor: %s", r.Body)
		}
	}
}

// The transparent listener: connections redirected to it (iptables) are
// intercepted by their SNI; an unknown or missing SNI fails the handshake
// and is recorded.
func TestTransparent(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support", Args: []string{"--transparent", "127.0.0.1:0"}})
	if p.Transparent == "" {
		t.Fatal("serve did not report the transparent listener")
	}
	pool := p.caPool(t)
	// An app that dials the vendor and is redirected: it connects to the
	// transparent listener with the vendor's name.
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.Transparent)
		},
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	resp, raw := sendWith(t, &http.Client{Transport: tr, Timeout: 20 * time.Second}, zendeskCase(t))
	id := wantOK(t, resp)
	got := onlyReceived(t, p.Stub)
	golden(t, "zendesk-ticket.golden", renderReceived(got))
	if raw.ProtoMajor != 2 {
		t.Errorf("transparent connection spoke %s, want HTTP/2", raw.Proto)
	}
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, id)) >= 2 })
	if d := kindOf(t, recordsOf(recs, id), "disclosure"); d.Vendor != "zendesk" {
		t.Errorf("disclosure vendor %q", d.Vendor)
	}

	for _, sni := range []string{"api.tracking-pixels.example", ""} {
		p.Stub.Reset()
		conn, err := tls.Dial("tcp", p.Transparent, &tls.Config{ServerName: sni, RootCAs: pool, InsecureSkipVerify: sni == ""})
		if err == nil {
			conn.Close()
			t.Errorf("SNI %q: the handshake succeeded", sni)
		}
		wantNothingReceived(t, p.Stub)
	}
	recs = waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool {
		n := 0
		for _, r := range rs {
			if r.Kind == "refusal" && r.Outcome == "unknown_vendor" {
				n++
			}
		}
		return n >= 2
	})
	found := false
	for _, r := range recs {
		if r.Kind == "refusal" && r.Host == "api.tracking-pixels.example" {
			found = true
		}
	}
	if !found {
		t.Error("the refused SNI is not in the ledger")
	}
}

// A configured pass-through host (an internal service with no personal
// data) is tunnelled without inspection, and logged and counted.
func TestDropInPassthrough(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }() // echo
		}
	}()
	p := startProxy(t, proxyConfig{Args: []string{"--passthrough", "127.0.0.1"}})
	conn, resp := rawConnect(t, p.Egress, ln.Addr().String())
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT to a pass-through host: %d", resp.StatusCode)
	}
	fmt.Fprint(conn, "ping\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("through the tunnel: %q, %v", line, err)
	}
	conn.Close()
	if !p.waitLog(t, "tunnel: pass-through") {
		t.Error("the pass-through tunnel was not logged")
	}
	_, metrics := p.adminGet(t, "/metrics")
	if metricValue(metrics, "pare_tunnel_connections_total", `result="passthrough"`) != 1 {
		t.Error("the pass-through tunnel was not counted")
	}
	// A host not on the list is refused even though it is reachable.
	_, resp = rawConnect(t, p.Egress, "localhost:"+strings.Split(ln.Addr().String(), ":")[1])
	if resp.StatusCode != 403 {
		t.Errorf("CONNECT to an unlisted host: %d, want 403", resp.StatusCode)
	}
}

// The generated CA is name-constrained to the contract hosts it was made
// for: a vendor added later is refused with the way out, instead of being
// served a certificate clients would reject.
func TestDropInCAConstraints(t *testing.T) {
	t.Parallel()
	pol := copyPolicies(t)
	p := startProxy(t, proxyConfig{Policies: pol})
	contract := `newvendor:
  name: New Vendor
  reference: NV-1
  role: support
  hosts: [api.newvendor.example]
  purposes: [support]
  routes:
    - methods: [POST]
      path: /v1/items
      fields: [title]
`
	writeAtomic(t, filepath.Join(pol, "contracts", "newvendor.yaml"), []byte(contract))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, b := p.adminGet(t, "/debug/policy")
		if strings.Contains(string(b), "api.newvendor.example") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new contract was not loaded")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, resp := rawConnect(t, p.Egress, "api.newvendor.example:443")
	b, _ := io.ReadAll(resp.Body)
	ref := wantRefusal(t, response{Status: resp.StatusCode, Header: resp.Header, Body: b}, 403, "denied")
	if !strings.Contains(ref.Reason, "name constraints") || !strings.Contains(ref.Reason, "proxy ca init --force") {
		t.Errorf("reason %q does not explain the constraint and the way out", ref.Reason)
	}
	// `proxy ca export` prints what the app must trust: the same CA.
	out, _, code := runCLI(t, "ca", "export", "--state-dir", p.StateDir)
	if code != 0 || out != string(readFile(t, p.CAFile())) {
		t.Errorf("ca export: exit %d, %d bytes, want the CA file", code, len(out))
	}
	if st, err := os.Stat(filepath.Join(p.StateDir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
}
