package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/vendorstub"
)

// The hosts of the bundled contracts; Envoy reaches all of them at the stub
// (proxy xds --resolve), so nothing leaves the machine.
var vendorHosts = []string{
	"api.stripe.com", "webinarco.zendesk.com", "www.eventbriteapi.com", "us21.api.mailchimp.com",
	"webinar-co-media.storage.example-cloud.com", "ingest.webinar-group.example", "disclosures.legal.example",
}

var (
	buildOnce sync.Once
	proxyBin  string
	buildErr  error
)

// envoyPath skips the test when no Envoy can run here.
func envoyPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("envoy")
	if err != nil {
		t.Skip("no envoy binary on PATH: the path app → Envoy → proxy extproc → vendor is not exercised here " +
			"(proxy xds's config is still validated and served over ADS by internal/xds's tests); see e2e/envoy/README.md")
	}
	return p
}

// binary builds cmd/proxy once, only when an Envoy is there to use it.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pare-envoy-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		proxyBin = filepath.Join(dir, "proxy")
		out, err := exec.Command("go", "build", "-o", proxyBin, "../../cmd/proxy").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return proxyBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if proxyBin != "" {
		os.RemoveAll(filepath.Dir(proxyBin))
	}
	os.Exit(code)
}

// freeAddr returns a loopback address nothing listens on at the moment.
// Envoy's listener and admin addresses must be known before it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a child process whose output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.output(), 6000))
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// waitFor polls ok until it holds, failing after a bound (it only waits:
// no assertion depends on how long anything took).
func waitFor(t *testing.T, what string, p *proc, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		select {
		case <-p.done:
			t.Fatalf("%s exited while waiting for %s", p.name, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dials(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

// pare is the whole stack: stub, proxy extproc, proxy xds and Envoy.
type pare struct {
	stub    *vendorstub.Stub
	ledger  string
	extproc *proc
	client  *http.Client // the app: Envoy as its HTTP_PROXY
}

func startPare(t *testing.T) *pare {
	envoy := envoyPath(t)
	bin := binary(t)
	dir := t.TempDir()
	stub, err := vendorstub.Start(vendorHosts, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stub.Close() })

	egress, extprocAddr, xdsAddr, admin := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	ledgerPath := filepath.Join(dir, "ledger.jsonl")
	hmacKey, err := filepath.Abs("../testdata/hmac.key")
	if err != nil {
		t.Fatal(err)
	}
	// proxy extproc takes serve's flags; --listen is its gRPC listener.
	// Vendors are Envoy's to reach, so no --resolve or --upstream-ca here.
	ep := start(t, "proxy extproc", bin, "extproc", "--listen", extprocAddr, "--admin", "localhost:0",
		"--ledger", ledgerPath, "--hmac-key-file", hmacKey, "--service", "billing", "--log-format", "json")
	waitFor(t, "proxy extproc to listen on "+extprocAddr, ep, dials(extprocAddr))

	xdsArgs := []string{"xds", "--listen", xdsAddr, "--egress", egress, "--extproc", extprocAddr,
		"--ca-file", stub.CAFile, "--log-format", "json"}
	for _, h := range vendorHosts {
		xdsArgs = append(xdsArgs, "--resolve", h+":443:"+stub.Addr)
	}
	xp := start(t, "proxy xds", bin, xdsArgs...)
	waitFor(t, "proxy xds to listen on "+xdsAddr, xp, dials(xdsAddr))

	out, err := exec.Command(bin, "envoy-bootstrap", "--node", "e2e", "--xds", xdsAddr, "--admin", admin).Output()
	if err != nil {
		t.Fatalf("envoy-bootstrap: %v", err)
	}
	bootstrap := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(bootstrap, out, 0o644); err != nil {
		t.Fatal(err)
	}
	ev := start(t, "envoy", envoy, "-c", bootstrap, "--disable-hot-restart", "--log-level", "warn")
	// Ready once it has its listener from ADS (initial fetch done).
	waitFor(t, "envoy to be ready", ev, func() bool {
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	waitFor(t, "envoy's egress listener on "+egress, ev, dials(egress))
	// A NACK means Envoy rejected what proxy xds sent: fail loudly.
	t.Cleanup(func() {
		if strings.Contains(xp.output(), "envoy rejected config") {
			t.Errorf("Envoy NACKed proxy xds's config:\n%s", tail(xp.output(), 4000))
		}
	})

	proxyURL, _ := url.Parse("http://" + egress)
	client := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableCompression: true},
		Timeout:   30 * time.Second,
	}
	t.Cleanup(client.CloseIdleConnections)
	return &pare{stub: stub, ledger: ledgerPath, extproc: ep, client: client}
}

func (p *pare) post(t *testing.T, rawURL string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func refusalCode(t *testing.T, b []byte) string {
	t.Helper()
	var r struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("refusal body %q is not Pare's JSON: %v", b, err)
	}
	return r.Error
}

// goldenBody is the body proxy serve sends for the same request
// (e2e/testdata/golden): Envoy's path must minimize to the same bytes.
func goldenBody(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s has no blank line before the body", name)
	}
	return body
}

var ticketHeaders = []string{"Content-Type", "application/json", "Accept", "application/json",
	"Authorization", "Bearer e2e-vendor-token", "X-Data-Purpose", "support", "X-Data-Subject", "u-123",
	"X-Forwarded-For", "10.1.2.3", "X-Request-Id", "internal-trace-1"}

func TestThroughEnvoy(t *testing.T) {
	p := startPare(t)
	ticket, err := os.ReadFile(filepath.Join("..", "testdata", "payloads", "ticket.json"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("allowed request is minimized as proxy serve does", func(t *testing.T) {
		p.stub.Reset()
		resp, b := p.post(t, "http://webinarco.zendesk.com/api/v2/tickets.json", ticket, ticketHeaders...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		if resp.Header.Get("X-Pare-Decision-Id") == "" {
			t.Error("no X-Pare-Decision-Id on the answer")
		}
		got := p.stub.Received()
		if len(got) != 1 {
			t.Fatalf("the vendor received %d requests, want 1", len(got))
		}
		r := got[0]
		if want := goldenBody(t, "zendesk-ticket.golden"); !bytes.Equal(r.Body, want) {
			t.Errorf("the vendor received\n%s\nwant (as through proxy serve)\n%s", r.Body, want)
		}
		if cl := r.Header.Get("Content-Length"); cl != fmt.Sprint(len(r.Body)) {
			t.Errorf("Content-Length %q for a %d-byte body", cl, len(r.Body))
		}
		if !r.TLS || r.Host != "webinarco.zendesk.com" {
			t.Errorf("received over TLS %v with Host %q", r.TLS, r.Host)
		}
		for k := range r.Header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-data-") || strings.HasPrefix(lk, "x-legal-") || strings.HasPrefix(lk, "x-envoy-") ||
				lk == "x-forwarded-for" || lk == "x-forwarded-proto" || lk == "x-request-id" {
				t.Errorf("header %s reached the vendor", k)
			}
		}
	})

	t.Run("unknown host is refused and nothing leaves", func(t *testing.T) {
		p.stub.Reset()
		resp, b := p.post(t, "http://evil.example/collect", ticket, ticketHeaders...)
		if resp.StatusCode != http.StatusForbidden || refusalCode(t, b) != "unknown_vendor" {
			t.Errorf("status %d body %s, want 403 unknown_vendor", resp.StatusCode, b)
		}
		if n := len(p.stub.Received()); n != 0 {
			t.Errorf("the stub received %d requests", n)
		}
	})

	t.Run("missing purpose is refused by ext_proc", func(t *testing.T) {
		p.stub.Reset()
		resp, b := p.post(t, "http://webinarco.zendesk.com/api/v2/tickets.json", ticket, "Content-Type", "application/json")
		if resp.StatusCode != http.StatusForbidden || refusalCode(t, b) != "purpose_required" {
			t.Errorf("status %d body %s, want 403 purpose_required", resp.StatusCode, b)
		}
		if n := len(p.stub.Received()); n != 0 {
			t.Errorf("the stub received %d requests", n)
		}
	})

	t.Run("the ledger verifies", func(t *testing.T) {
		out, err := exec.Command(binary(t), "ledger", "verify", p.ledger).CombinedOutput()
		if err != nil {
			t.Fatalf("ledger verify: %v\n%s", err, out)
		}
	})

	// Last: it stops ext_proc. Envoy must fail closed (failure_mode_allow
	// false): 503, and the vendor receives nothing.
	t.Run("ext_proc down means nothing leaves", func(t *testing.T) {
		p.extproc.stop()
		p.stub.Reset()
		resp, b := p.post(t, "http://webinarco.zendesk.com/api/v2/tickets.json", ticket, ticketHeaders...)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("status %d body %s, want 503", resp.StatusCode, b)
		}
		if n := len(p.stub.Received()); n != 0 {
			t.Errorf("with ext_proc down the vendor received %d requests", n)
		}
	})
}
