package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAppSpeaksPlainHTTPToSidecar is the README's first promise to an app:
// it sends plain HTTP (http://vendor/..., absolute-form or by Host) and Pare
// originates TLS. The request's scheme towards the sidecar must therefore
// not count as "no TLS" in the policy.
func TestAppSpeaksPlainHTTPToSidecar(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	for name, send := range map[string]func(testing.TB, request) response{
		"absolute-form": p.do, "origin-form": p.doOrigin,
	} {
		p.Stub.Reset()
		resp := send(t, ticketRequest(t))
		if resp.Status != 200 {
			t.Errorf("%s http:// request: %d %s", name, resp.Status, resp.Body)
			continue
		}
		if got := onlyReceived(t, p.Stub); !got.TLS {
			t.Errorf("%s: the vendor was reached without TLS", name)
		}
	}
}

// TestServeBothListenersOnPortZero: "--listen 127.0.0.1:0 --admin
// 127.0.0.1:0" are two different listeners (each gets its own free port),
// yet serve refuses them as "the same address".
func TestServeBothListenersOnPortZero(t *testing.T) {
	t.Parallel()
	stub := startStub(t)
	led := filepath.Join(t.TempDir(), "ledger.jsonl")
	p := launch(t, proxyConfig{Stub: stub, Ledger: led}, []string{"serve", "--state-dir", t.TempDir(),
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json",
		"--ledger", led, "--upstream-ca", stub.CAFile})
	if p.Egress == p.Admin {
		t.Fatalf("egress and admin both on %s", p.Egress)
	}
}

// TestServeConfigFile: --config takes the serve settings as YAML, flags
// override it, and an unknown key is an error (exit 2) — a misspelled
// setting silently ignored could be a leak.
func TestServeConfigFile(t *testing.T) {
	t.Parallel()
	stub := startStub(t)
	dir := t.TempDir()
	led := filepath.Join(dir, "from-config.jsonl")
	var resolve strings.Builder
	for _, h := range vendorHosts {
		fmt.Fprintf(&resolve, "  - %s:443:%s\n", h, stub.Addr)
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadmin: localhost:0\nledger: %s\nstate_dir: %s\nservice: support\nlog_format: json\nmax_body: 2KiB\nupstream_ca: [%s]\nresolve:\n%s",
		led, filepath.Join(dir, "state"), stub.CAFile, resolve.String())
	cfgFile := filepath.Join(dir, "pare.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// --service on the command line overrides the file's "support".
	p := launch(t, proxyConfig{Stub: stub, Ledger: led}, []string{"serve", "--config", cfgFile, "--service", "billing"})
	wantOK(t, p.do(t, paymentRequest(t))) // card data: billing only, so the flag won
	big := fmt.Sprintf(`{"ticket":{"subject":"s","comment":{"body":%q}}}`, strings.Repeat("x", 3000))
	wantRefusal(t, p.do(t, ticketRequest(t).withBody([]byte(big))), 413, "body_too_large") // max_body from the file
	if len(readLedger(t, led)) == 0 {
		t.Error("the ledger named in the config file is empty")
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:0\nmax_bodyy: 1KiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, "serve", "--config", bad)
	if code != 2 || !strings.Contains(errOut, "max_bodyy") {
		t.Errorf("serve with an unknown config key: exit %d, want 2 naming the key:\n%s", code, errOut)
	}
}

// TestVendorResponsePassedThrough: the vendor's answer reaches the app as it
// was — status, headers, body — redirects are returned, never followed, and
// a streaming answer is not buffered.
func TestVendorResponsePassedThrough(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})

	t.Run("redirect is returned, not followed", func(t *testing.T) {
		p.Stub.Reset()
		p.Stub.SetRespond(func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.Header().Set("Location", "https://evil.example/collect")
			w.Header().Set("X-Vendor-Trace", "zd-123")
			w.WriteHeader(http.StatusFound)
		})
		defer p.Stub.SetRespond(nil)
		resp := p.do(t, ticketRequest(t))
		if resp.Status != http.StatusFound || resp.Header.Get("Location") != "https://evil.example/collect" {
			t.Errorf("got %d Location %q, want the vendor's 302", resp.Status, resp.Header.Get("Location"))
		}
		if resp.Header.Get("X-Vendor-Trace") != "zd-123" || resp.Header.Get("X-Pare-Decision-Id") == "" {
			t.Errorf("response headers %v", resp.Header)
		}
		onlyReceived(t, p.Stub)
	})

	t.Run("streamed unbuffered", func(t *testing.T) {
		p.Stub.Reset()
		release := make(chan struct{})
		var once sync.Once
		done := func() { once.Do(func() { close(release) }) }
		defer done()
		p.Stub.SetRespond(func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: ticket.created\ndata: 1\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			fmt.Fprint(w, "event: done\n\n")
		})
		defer p.Stub.SetRespond(nil)
		req, err := ticketRequest(t).httpRequest(t.Context(), ticketRequest(t).URL)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := p.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		first := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(resp.Body).ReadString('\n')
			first <- line
		}()
		select {
		case line := <-first:
			if line != "event: ticket.created\n" {
				t.Errorf("first line %q", line)
			}
		case <-time.After(2 * time.Second):
			t.Error("the first event did not arrive while the vendor kept the response open: the proxy buffers")
		}
		done()
	})
}

// TestGracefulShutdown: SIGTERM while a request waits for a slow vendor lets
// it finish (200), then the process exits 0 with the ledger flushed and
// intact.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	stub := startStub(t)
	stub.SetRespond(func(w http.ResponseWriter, r *http.Request, _ []byte) {
		time.Sleep(400 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"id":42}`)
	})
	p := startProxy(t, proxyConfig{Stub: stub})
	type result struct {
		resp response
		err  error
	}
	rc := make(chan result, 1)
	go func() {
		r, err := p.try(ticketRequest(t))
		rc <- result{r, err}
	}()
	// Wait until the vendor has the request, then ask the proxy to stop.
	deadline := time.Now().Add(3 * time.Second)
	for len(stub.Received()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	r := <-rc
	if r.err != nil || r.resp.Status != 200 || string(r.resp.Body) != "{\"id\":42}\n" {
		t.Fatalf("in-flight request during shutdown: %v %d %q", r.err, r.resp.Status, r.resp.Body)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not exit within 10s of SIGTERM")
	}
	if code := p.exitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	id := r.resp.Header.Get("X-Pare-Decision-Id")
	if o := kindOf(t, recordsOf(readLedger(t, p.Ledger), id), "outcome"); o.Outcome != "200" {
		t.Errorf("outcome record %q", o.Outcome)
	}
	if _, errOut, code := runCLI(t, "ledger", "verify", p.Ledger); code != 0 {
		t.Errorf("verify after shutdown: %s", errOut)
	}
}
