package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pare-dev/pare/policies"
)

// lockedBuffer collects the log of a serve running in another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type served struct{ egress, admin, metrics string }

// startServe runs serve in-process until the test ends.
func startServe(t *testing.T, c Config, logw io.Writer) served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan served, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- serve(ctx, c, slog.New(slog.NewJSONHandler(logw, nil)), func(e, a, m string) { addrs <- served{e, a, m} })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case s := <-addrs:
		return s
	case err := <-errc:
		t.Fatalf("serve did not start: %v", err)
	}
	return served{}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or 30 s pass: the policy watcher
// debounces and the machine may be loaded, so there is no fixed wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func testConfig(t *testing.T) Config {
	c := defaultConfig()
	c.Listen, c.Admin, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.Ledger = filepath.Join(t.TempDir(), "ledger.jsonl")
	c.StateDir = filepath.Join(t.TempDir(), "state") // never the package directory
	return c
}

// TestListeners: the metrics listener, the one meant to leave the pod's
// loopback, serves exactly /metrics, /healthz and /readyz; the policy and
// the profiler stay on the admin listener, the profiler only when enabled.
func TestListeners(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		c := testConfig(t)
		c.Pprof = pprof
		s := startServe(t, c, io.Discard)
		for _, tt := range []struct {
			addr, path string
			want       int
		}{
			{s.metrics, "/metrics", 200}, {s.metrics, "/healthz", 200}, {s.metrics, "/readyz", 200},
			{s.metrics, "/debug/policy", 404}, {s.metrics, "/debug/pprof/", 404}, {s.metrics, "/debug/pprof/cmdline", 404},
			{s.metrics, "/metrics/", 404}, {s.metrics, "/", 404}, {s.metrics, "/readyz/../debug/policy", 404},
			{s.admin, "/debug/policy", 200}, {s.admin, "/metrics", 200},
			{s.admin, "/debug/pprof/", map[bool]int{false: 404, true: 200}[pprof]},
			{s.admin, "/debug/pprof/cmdline", map[bool]int{false: 404, true: 200}[pprof]},
		} {
			code, body := get(t, "http://"+tt.addr+tt.path)
			if code != tt.want {
				t.Errorf("pprof %v: %s%s: %d, want %d", pprof, tt.addr, tt.path, code, tt.want)
			}
			if tt.path == "/metrics" && !strings.Contains(body, "pare_build_info{") {
				t.Errorf("%s/metrics has no pare_build_info", tt.addr)
			}
		}
	}
}

// TestReloadRecovered: a reload that fails logs an ERROR and sets
// pare_policy_last_reload_successful to 0; the next good one says in the log
// that Pare recovered and sets it back to 1.
func TestReloadRecovered(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, policies.FS); err != nil {
		t.Fatal(err)
	}
	c := testConfig(t)
	c.Policies = dir
	var log lockedBuffer
	s := startServe(t, c, &log)
	gauge := func() string {
		_, body := get(t, "http://"+s.metrics+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "pare_policy_last_reload_successful "); ok {
				return v
			}
		}
		return "absent"
	}
	if g := gauge(); g != "1" {
		t.Fatalf("after a good start pare_policy_last_reload_successful = %s, want 1", g)
	}

	rego := filepath.Join(dir, "egress.rego")
	good, err := os.ReadFile(rego)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rego, append(append([]byte(nil), good...), "\nthis is not rego {\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed reload", func() bool { return gauge() == "0" })
	if !strings.Contains(log.String(), "policy reload failed") {
		t.Errorf("no ERROR for the failed reload in:\n%s", log.String())
	}
	if strings.Contains(log.String(), "recovered") {
		t.Fatalf("recovered before the fix:\n%s", log.String())
	}
	if code, _ := get(t, "http://"+s.metrics+"/readyz"); code != 200 {
		t.Errorf("/readyz %d: the last good policy is still in force", code)
	}

	if err := os.WriteFile(rego, good, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the recovery", func() bool { return gauge() == "1" })
	eventually(t, "the recovery log line", func() bool { return strings.Contains(log.String(), `"msg":"policy reload recovered`) })
	if !strings.Contains(log.String(), `"failed_attempts":`) {
		t.Errorf("the recovery does not say how many attempts failed:\n%s", log.String())
	}
}
