package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bundleServer is a real HTTP bundle server, as a CI pipeline would publish
// to: it serves one bundle with an ETag, answers If-None-Match with 304, and
// with longPoll holds a request that says "Prefer: wait=N" until the bundle
// changes (OPA's long polling protocol: the server announces it with the
// content type application/vnd.openpolicyagent.bundles).
type bundleServer struct {
	longPoll bool

	mu       sync.Mutex
	raw      []byte
	etag     string
	status   int           // when not 0, every request gets this status
	changed  chan struct{} // closed when the bundle changes
	auth     string        // Authorization of the last request
	requests int
	notMod   int

	srv  *http.Server
	ln   net.Listener
	Addr string
	URL  string
}

func startServer(t testing.TB, longPoll bool) *bundleServer {
	t.Helper()
	s := &bundleServer{longPoll: longPoll, changed: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.serve(t, ln)
	return s
}

func (s *bundleServer) serve(t testing.TB, ln net.Listener) {
	s.ln, s.Addr = ln, ln.Addr().String()
	s.URL = "http://" + s.Addr + "/bundles/pare.tar.gz"
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
}

// stop takes the server down: connections refused from now on.
func (s *bundleServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// restart brings the server back on the same address.
func (s *bundleServer) restart(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", s.Addr, err)
	}
	s.serve(t, ln)
}

// set publishes raw.
func (s *bundleServer) set(raw []byte) {
	sum := sha256.Sum256(raw)
	s.mu.Lock()
	s.raw, s.etag, s.status = raw, `"`+hex.EncodeToString(sum[:8])+`"`, 0
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *bundleServer) fail(status int) {
	s.mu.Lock()
	s.status = status
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *bundleServer) stats() (requests, notModified int, auth string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.notMod, s.auth
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/bundles/pare.tar.gz" {
		http.NotFound(w, r)
		return
	}
	wait := time.Duration(0)
	if s.longPoll {
		for _, p := range strings.Split(r.Header.Get("Prefer"), ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "wait="); ok {
				n, _ := strconv.Atoi(v)
				wait = time.Duration(n) * time.Second
			}
		}
	}
	deadline := time.After(wait)
	for {
		s.mu.Lock()
		s.requests++
		s.auth = r.Header.Get("Authorization")
		raw, etag, status, changed := s.raw, s.etag, s.status, s.changed
		s.mu.Unlock()
		ct := "application/gzip"
		if s.longPoll {
			ct = "application/vnd.openpolicyagent.bundles"
		}
		switch {
		case status != 0:
			http.Error(w, "unavailable", status)
			return
		case raw == nil:
			http.NotFound(w, r)
			return
		case r.Header.Get("If-None-Match") != etag:
			w.Header().Set("Content-Type", ct)
			w.Header().Set("ETag", etag)
			_, _ = w.Write(raw)
			return
		}
		select {
		case <-changed:
			continue
		case <-deadline:
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
		s.notMod++
		s.mu.Unlock()
		w.Header().Set("Content-Type", ct)
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
}

// logBuffer collects a Source's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
