package e2e

// The harness, in the style of CoreDNS test/server.go: TestMain builds the
// real binary once; startProxy runs `proxy serve` on port 0 in front of an
// in-process TLS vendor stub and returns once /readyz answers; the cleanup
// stops it with SIGTERM (SIGKILL after a grace period).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/vendorstub"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var (
	proxyBin string // the binary under test, built by TestMain
	repoRoot string // the module root (policies/ lives there)
)

// vendorHosts are the hosts of every bundled contract; each proxy resolves
// all of them to its stub, so nothing ever leaves the machine.
var vendorHosts = []string{
	"api.stripe.com",
	"webinarco.zendesk.com",
	"www.eventbriteapi.com",
	"us21.api.mailchimp.com",
	"webinar-co-media.storage.example-cloud.com",
	"ingest.webinar-group.example",
	"disclosures.legal.example",
}

// Hosts by vendor, for readability in the tests.
const (
	hostStripe     = "api.stripe.com"
	hostZendesk    = "webinarco.zendesk.com"
	hostEventbrite = "www.eventbriteapi.com"
	hostMailchimp  = "us21.api.mailchimp.com"
	hostHosting    = "webinar-co-media.storage.example-cloud.com"
	hostSister     = "ingest.webinar-group.example"
	hostLegal      = "disclosures.legal.example"
)

func TestMain(m *testing.M) {
	if os.Getenv(goClientEnv) == "1" {
		os.Exit(goClientMain()) // this binary, run as a plain Go HTTPS client (clients_test.go)
	}
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the module root is not the parent directory:", err)
		return 1
	}
	repoRoot = root
	tmp, err := os.MkdirTemp("", "pare-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// PARE_E2E_BINARY runs the tests against a prebuilt binary instead.
	if bin := os.Getenv("PARE_E2E_BINARY"); bin != "" {
		proxyBin = bin
		return m.Run()
	}
	proxyBin = filepath.Join(tmp, "proxy")
	// Built with go test's own settings, so every package comes from the
	// build cache the test binaries just filled. (The image's static build
	// recompiles everything: TestImage checks that one, in CI.)
	build := exec.Command("go", "build", "-o", proxyBin, "./cmd/proxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/proxy: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Vendor stubs.

// startStub starts a TLS vendor stub valid for every bundled vendor host.
func startStub(t testing.TB) *vendorstub.Stub {
	t.Helper()
	s, err := vendorstub.Start(vendorHosts, t.TempDir())
	if err != nil {
		t.Fatalf("vendor stub: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// ---------------------------------------------------------------------------
// The proxy process.

// proxyConfig says how to start `proxy serve`. The zero value runs the
// bundled policies as service "billing" against a fresh stub.
type proxyConfig struct {
	Policies   string            // --policies; "" = the bundled policies
	Service    string            // --service; "" = "billing"
	NoService  bool              // run without --service
	Ledger     string            // --ledger; "" = a file in t.TempDir()
	Consents   string            // --consents
	ConsentURL string            // --consent-url
	Stub       *vendorstub.Stub  // nil = a new stub
	Resolve    map[string]string // host -> addr overriding the stub for that host
	Args       []string          // more flags
	NoReady    bool              // do not wait for /readyz (no valid policy expected)
	NoHMACKey  bool              // run without --hmac-key-file
	Env        []string          // more environment (KEY=VALUE)
	Extproc    bool              // run `proxy extproc` instead of serve (Egress is then its gRPC address)
	StateDir   string            // --state-dir (the ledger's signing key, the drop-in CA); "" = a temp dir
}

// proxyProc is a running `proxy serve`.
type proxyProc struct {
	t           testing.TB
	Egress      string // host:port of the egress listener
	Admin       string // host:port of the admin listener
	Transparent string // host:port of the transparent TLS listener, if any
	Ledger      string
	StateDir    string // --state-dir: the drop-in CA lives here
	Stub        *vendorstub.Stub

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of Wait, valid once exited is closed
	logs   *lineLog

	client       *http.Client // HTTP_PROXY-style client (absolute-form)
	originClient *http.Client // direct client (origin-form with a Host header)
}

// lineLog keeps the proxy's stderr, line by line, for failure reports and
// for tests that look at the logs.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *lineLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *lineLog) String() string { return strings.Join(l.all(), "\n") }

func testdata(name string) string { return filepath.Join("testdata", name) }

// hmacKeyFile holds a fixed master key so hmac pseudonyms in the goldens are
// stable across runs.
var hmacKeyFile = testdata("hmac.key")

func startProxy(t testing.TB, c proxyConfig) *proxyProc {
	t.Helper()
	if c.Stub == nil {
		c.Stub = startStub(t)
	}
	dir := t.TempDir()
	if c.Ledger == "" {
		c.Ledger = filepath.Join(dir, "ledger.jsonl")
	}
	stateDir := c.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	cmd := "serve"
	if c.Extproc {
		cmd = "extproc"
	}
	args := []string{cmd, "--state-dir", stateDir,
		// The admin listener is on "localhost:0", not "127.0.0.1:0": serve
		// refuses two identical addresses even when both are port 0 (see
		// TestServeBothListenersOnPortZero).
		"--listen", "127.0.0.1:0", "--admin", "localhost:0",
		"--log-format", "json", "--log-level", "info",
		"--ledger", c.Ledger,
		"--upstream-ca", c.Stub.CAFile,
	}
	if !c.NoHMACKey {
		key, err := filepath.Abs(hmacKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--hmac-key-file", key)
	}
	if !c.NoService {
		svc := c.Service
		if svc == "" {
			svc = "billing"
		}
		args = append(args, "--service", svc)
	}
	if c.Policies != "" {
		args = append(args, "--policies", c.Policies)
	}
	if c.Consents != "" {
		args = append(args, "--consents", c.Consents)
	}
	if c.ConsentURL != "" {
		args = append(args, "--consent-url", c.ConsentURL)
	}
	for _, h := range vendorHosts {
		addr := c.Stub.Addr
		if a, ok := c.Resolve[h]; ok {
			addr = a
		}
		args = append(args, "--resolve", h+":443:"+addr)
	}
	args = append(args, c.Args...)
	p := launch(t, c, args)
	p.StateDir = stateDir
	return p
}

// CAFile is the drop-in CA certificate apps must trust.
func (p *proxyProc) CAFile() string { return filepath.Join(p.StateDir, "ca.crt") }

func launch(t testing.TB, c proxyConfig, args []string) *proxyProc {
	t.Helper()
	// Every serve keeps its signing key in a directory of its own, never
	// in the package directory the tests run in.
	if len(args) > 0 && args[0] == "serve" && !slices.Contains(args, "--state-dir") {
		args = append(args, "--state-dir", filepath.Join(t.TempDir(), "state"))
	}
	cmd := exec.Command(proxyBin, args...)
	cmd.Env = append(cleanEnv(), c.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	p := &proxyProc{t: t, Ledger: c.Ledger, Stub: c.Stub, cmd: cmd, exited: make(chan struct{}), logs: &lineLog{}}
	listening := make(chan [3]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.logs.add(line)
			var m struct {
				Msg         string `json:"msg"`
				Egress      string `json:"egress"`
				Extproc     string `json:"extproc"`
				Admin       string `json:"admin"`
				Transparent string `json:"transparent"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "pare listening" {
				if m.Egress == "" {
					m.Egress = m.Extproc
				}
				select {
				case listening <- [3]string{m.Egress, m.Admin, m.Transparent}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("proxy stderr:\n%s", tail(p.logs.String(), 8000))
		}
	})

	select {
	case addrs := <-listening:
		p.Egress, p.Admin, p.Transparent = addrs[0], addrs[1], addrs[2]
	case <-p.exited:
		t.Fatalf("proxy exited before listening: %v\n%s", p.err, p.logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("proxy did not log 'pare listening' within 20s:\n%s", p.logs)
	}
	proxyURL, _ := url.Parse("http://" + p.Egress)
	p.client = &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableCompression: true, MaxIdleConnsPerHost: 64},
		Timeout:   20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	p.originClient = &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 64},
		Timeout:   20 * time.Second,
	}
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		p.originClient.CloseIdleConnections()
	})
	if !c.NoReady {
		p.waitAdmin(t, "/readyz")
	} else {
		p.waitAdmin(t, "/healthz")
	}
	return p
}

// cleanEnv is the environment without proxy variables, so that neither the
// binary nor curl route anything through a proxy of the machine.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "ssl_cert_file", "node_extra_ca_certs",
			strings.ToLower(goClientEnv),
			"gogc": // tests of the GC setting choose it themselves
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

func (p *proxyProc) waitAdmin(t testing.TB, path string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.Admin + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("proxy exited while waiting for %s: %v", path, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin %s not 200 within 15s (last error %v)", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; after grace it kills. It returns the exit
// code (-1 when killed by a signal).
func (p *proxyProc) stop(grace time.Duration) int {
	select {
	case <-p.exited:
		return p.exitCode()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return p.exitCode()
}

// Stop stops the proxy gracefully (the ledger is flushed and closed) and
// fails the test unless it exits 0.
func (p *proxyProc) Stop(t testing.TB) {
	t.Helper()
	if code := p.stop(10 * time.Second); code != 0 {
		t.Fatalf("proxy exited %d after SIGTERM, want 0", code)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *proxyProc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *proxyProc) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// ---------------------------------------------------------------------------
// Requests.

// request is an app's request, as the app would write it: URL is the vendor
// URL it calls through the sidecar (http://vendor-host/path?query).
type request struct {
	Method string
	URL    string
	Header [][2]string // in order; repeated names are added
	Body   []byte
}

// response is what the app got back.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// hdr builds a header list from name, value pairs.
func hdr(kv ...string) [][2]string {
	if len(kv)%2 != 0 {
		panic("hdr: odd number of arguments")
	}
	var out [][2]string
	for i := 0; i < len(kv); i += 2 {
		out = append(out, [2]string{kv[i], kv[i+1]})
	}
	return out
}

// with returns a copy of r with more headers.
func (r request) with(kv ...string) request {
	r.Header = append(append([][2]string(nil), r.Header...), hdr(kv...)...)
	return r
}

// without returns a copy of r without the headers named.
func (r request) without(names ...string) request {
	var h [][2]string
	for _, kv := range r.Header {
		drop := false
		for _, n := range names {
			if strings.EqualFold(kv[0], n) {
				drop = true
			}
		}
		if !drop {
			h = append(h, kv)
		}
	}
	r.Header = h
	return r
}

// withBody returns a copy of r with another body.
func (r request) withBody(b []byte) request {
	r.Body = b
	return r
}

func (r request) httpRequest(ctx context.Context, target string) (*http.Request, error) {
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, body)
	if err != nil {
		return nil, err
	}
	for _, kv := range r.Header {
		if strings.EqualFold(kv[0], "Host") {
			req.Host = kv[1]
			continue
		}
		req.Header.Add(kv[0], kv[1])
	}
	return req, nil
}

// do sends r as an HTTP_PROXY client does (absolute-form).
func (p *proxyProc) do(t testing.TB, r request) response {
	t.Helper()
	resp, err := p.try(r)
	if err != nil {
		t.Fatalf("%s %s through the proxy: %v", r.Method, r.URL, err)
	}
	return resp
}

// try is do without failing the test: for concurrent callers.
func (p *proxyProc) try(r request) (response, error) {
	req, err := r.httpRequest(context.Background(), r.URL)
	if err != nil {
		return response{}, err
	}
	return roundTrip(p.client, req)
}

// doOrigin sends r in origin form to the egress listener with the vendor in
// the Host header.
func (p *proxyProc) doOrigin(t testing.TB, r request) response {
	t.Helper()
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	target := "http://" + p.Egress + u.RequestURI()
	req, err := r.httpRequest(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = u.Host
	resp, err := roundTrip(p.originClient, req)
	if err != nil {
		t.Fatalf("%s %s (origin-form): %v", r.Method, target, err)
	}
	return resp
}

func roundTrip(c *http.Client, req *http.Request) (response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// curl sends r with the real curl binary through `curl -x`: the client a
// developer would use. Without curl the test is skipped, except in CI
// (CI=true), which installs it.
func (p *proxyProc) curl(t testing.TB, r request) response {
	t.Helper()
	bin := curlPath(t)
	dir := t.TempDir()
	args := []string{"-sS", "--max-time", "15", "-x", "http://" + p.Egress,
		"-X", r.Method, "-D", filepath.Join(dir, "headers"), "-o", filepath.Join(dir, "body"),
		"-w", "%{http_code}",
		// curl must not add Expect: 100-continue, nor its own Accept.
		"-H", "Expect:"}
	for _, kv := range r.Header {
		args = append(args, "-H", kv[0]+": "+kv[1])
	}
	if r.Body != nil {
		f := filepath.Join(dir, "request-body")
		if err := os.WriteFile(f, r.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data-binary", "@"+f)
	}
	args = append(args, r.URL)
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl -w http_code printed %q", out)
	}
	body, _ := os.ReadFile(filepath.Join(dir, "body"))
	rawHdr, _ := os.ReadFile(filepath.Join(dir, "headers"))
	h := http.Header{}
	for _, line := range strings.Split(string(rawHdr), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.Contains(k, " ") {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return response{Status: status, Header: h, Body: body}
}

func curlPath(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed; CI must install it (.ci/run)")
		}
		t.Skip("curl is not installed")
	}
	return bin
}

// ---------------------------------------------------------------------------
// Assertions on responses.

type refusal struct {
	Error      string `json:"error"`
	Reason     string `json:"reason"`
	DecisionID string `json:"decision_id"`
}

// decisionID returns the X-Pare-Decision-Id of resp, failing when absent.
func decisionID(t testing.TB, resp response) string {
	t.Helper()
	id := resp.Header.Get("X-Pare-Decision-Id")
	if id == "" {
		t.Fatalf("response %d has no X-Pare-Decision-Id; headers %v", resp.Status, resp.Header)
	}
	return id
}

// wantRefusal asserts that resp is the JSON refusal {error, reason,
// decision_id} with status and code.
func wantRefusal(t testing.TB, resp response, status int, code string) refusal {
	t.Helper()
	var ref refusal
	if err := json.Unmarshal(resp.Body, &ref); err != nil {
		t.Fatalf("refusal body is not JSON (status %d): %v: %q", resp.Status, err, resp.Body)
	}
	if resp.Status != status || ref.Error != code {
		t.Fatalf("got %d %q (%s), want %d %q", resp.Status, ref.Error, ref.Reason, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("refusal Content-Type %q, want application/json", ct)
	}
	if ref.Reason == "" {
		t.Errorf("refusal %q has no reason", code)
	}
	if id := decisionID(t, resp); ref.DecisionID != id {
		t.Errorf("decision_id %q in the body, %q in X-Pare-Decision-Id", ref.DecisionID, id)
	}
	var raw map[string]any
	_ = json.Unmarshal(resp.Body, &raw)
	for k := range raw {
		if k != "error" && k != "reason" && k != "decision_id" {
			t.Errorf("refusal body has unexpected key %q", k)
		}
	}
	return ref
}

// wantOK asserts a 200 with a decision id, returning the id.
func wantOK(t testing.TB, resp response) string {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", resp.Status, resp.Body)
	}
	return decisionID(t, resp)
}

// wantNothingReceived asserts the stub received no request.
func wantNothingReceived(t testing.TB, s *vendorstub.Stub) {
	t.Helper()
	if got := s.Received(); len(got) != 0 {
		t.Fatalf("the vendor received %d request(s), want none; first:\n%s", len(got), renderReceived(got[0]))
	}
}

// onlyReceived returns the one request the stub received.
func onlyReceived(t testing.TB, s *vendorstub.Stub) vendorstub.Received {
	t.Helper()
	got := s.Received()
	if len(got) != 1 {
		t.Fatalf("the vendor received %d requests, want 1", len(got))
	}
	return got[0]
}

// wantNoControlHeaders asserts no X-Data-*, X-Legal-* or X-Pare-* header
// reached the vendor: they are the app's instructions to its sidecar.
func wantNoControlHeaders(t testing.TB, r vendorstub.Received) {
	t.Helper()
	for k := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-data-") || strings.HasPrefix(lk, "x-legal-") || strings.HasPrefix(lk, "x-pare-") {
			t.Errorf("header %s reached the vendor", k)
		}
	}
}

// renderReceived is the golden form of what a vendor received: request
// line, Host, every header sorted (one line per value), a blank line, then
// the body as received.
func renderReceived(r vendorstub.Received) []byte {
	var b bytes.Buffer
	target := r.Path
	if r.RawQuery != "" {
		target += "?" + r.RawQuery
	}
	fmt.Fprintf(&b, "%s %s\n", r.Method, target)
	fmt.Fprintf(&b, "Host: %s\n", r.Host)
	fmt.Fprintf(&b, "TLS: %v\n", r.TLS)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	b.Write(r.Body)
	return b.Bytes()
}

// golden compares got with testdata/golden/name, or writes it with -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run go test ./e2e/ -update to create it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if the change is intended)\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payload reads a file of testdata/payloads.
func payload(t testing.TB, name string) []byte {
	t.Helper()
	return readFile(t, filepath.Join("testdata", "payloads", name))
}

// ---------------------------------------------------------------------------
// The ledger.

// readLedger parses every complete line of the ledger file. A last line
// without its newline is skipped: it is being written by the running proxy
// (or was torn by a crash).
func readLedger(t testing.TB, path string) []ledger.Record {
	t.Helper()
	b := readFile(t, path)
	lines := bytes.Split(b, []byte("\n"))
	lines = lines[:len(lines)-1] // after the last newline: empty or partial
	var recs []ledger.Record
	for i, line := range lines {
		var r ledger.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("%s:%d: %v", path, i+1, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// recordsOf returns the records of one decision.
func recordsOf(recs []ledger.Record, id string) []ledger.Record {
	var out []ledger.Record
	for _, r := range recs {
		if r.DecisionID == id {
			out = append(out, r)
		}
	}
	return out
}

// kindOf returns the first record of kind among recs, failing if none.
func kindOf(t testing.TB, recs []ledger.Record, kind string) ledger.Record {
	t.Helper()
	for _, r := range recs {
		if r.Kind == kind {
			return r
		}
	}
	t.Fatalf("no %s record among %d records", kind, len(recs))
	return ledger.Record{}
}

// waitLedger polls the ledger until pred holds: outcome records are written
// after the response has been streamed to the app.
func waitLedger(t testing.TB, path string, pred func([]ledger.Record) bool) []ledger.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := readLedger(t, path)
		if pred(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger condition not met within 5s; %d records", len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// The CLI.

// runCLI runs the binary with args and returns stdout, stderr and the exit
// code.
func runCLI(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, proxyBin, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = nil
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("proxy %s: %v", strings.Join(args, " "), err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// ---------------------------------------------------------------------------
// Policies.

// copyPolicies copies the repository's policies directory into a temp dir
// for tests that edit it, and returns the copy's path.
func copyPolicies(t testing.TB) string {
	t.Helper()
	src := filepath.Join(repoRoot, "policies")
	dst := filepath.Join(t.TempDir(), "policies")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeAtomic replaces path by rename, as editors and config management do,
// so a reader never sees a half-written file. The temp file is a dot file,
// which the policy loader ignores.
func writeAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// Admin.

// adminGet fetches an admin path.
func (p *proxyProc) adminGet(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + p.Admin + path)
	if err != nil {
		t.Fatalf("admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// metricValue returns the sum of the samples name{labels} in the
// exposition text (labels given as k="v" pairs, a subset of the series'
// labels), or -1 when no series matches.
func metricValue(exposition []byte, name string, labels ...string) float64 {
	sum, found := 0.0, false
	for _, line := range strings.Split(string(exposition), "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbl string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			lbl, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue
		}
		ok := true
		for _, l := range labels {
			if !containsLabel(lbl, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			sum, found = sum+f, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

func containsLabel(set, kv string) bool {
	for _, p := range strings.Split(set, ",") {
		if p == kv {
			return true
		}
	}
	return false
}

// ledgerRecord is one line of the ledger.
type ledgerRecord = ledger.Record

// waitLog polls the proxy's log until a line contains substr: the egress
// line is written after the response has been sent.
func (p *proxyProc) waitLog(t testing.TB, substr string) bool {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if strings.Contains(p.logs.String(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
