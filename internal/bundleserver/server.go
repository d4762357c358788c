// Package bundleserver is a small, real OPA bundle server for tests and
// demos: it serves one bundle over HTTP with an ETag, answers If-None-Match
// with 304 Not Modified, and with long polling holds a request that says
// "Prefer: wait=N" until the bundle changes (OPA's protocol; the server
// announces it with the content type application/vnd.openpolicyagent.bundles).
// It can be stopped and restarted on the same address, to play a bundle
// server that goes down.
package bundleserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Path is where the bundle is served.
const Path = "/bundles/pare.tar.gz"

// Server serves one bundle at Path.
type Server struct {
	longPoll bool

	mu       sync.Mutex
	raw      []byte
	etag     string
	status   int           // when not 0, every request gets this status
	changed  chan struct{} // closed when the bundle changes
	auth     string        // Authorization of the last request
	requests int
	notMod   int
	srv      *http.Server

	// Addr is host:port; URL the bundle's address.
	Addr, URL string
}

// Start listens on addr ("127.0.0.1:0" for any port). With longPoll the
// server supports long polling.
func Start(addr string, longPoll bool) (*Server, error) {
	s := &Server{longPoll: longPoll, changed: make(chan struct{})}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bundle server: %w", err)
	}
	s.serve(ln)
	return s, nil
}

// Handler returns the server as an http.Handler, for a caller running its
// own listener (TLS, say). Start is not needed then.
func Handler(longPoll bool) *Server {
	return &Server{longPoll: longPoll, changed: make(chan struct{})}
}

func (s *Server) serve(ln net.Listener) {
	s.Addr = ln.Addr().String()
	s.URL = "http://" + s.Addr + Path
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop takes the server down: connections are refused from now on.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// Restart listens again on the address it had.
func (s *Server) Restart() error {
	var ln net.Listener
	var err error
	for range 50 { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			s.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("bundle server: listen again on %s: %w", s.Addr, err)
}

// Set publishes raw, with an ETag derived from its content.
func (s *Server) Set(raw []byte) {
	sum := sha256.Sum256(raw)
	s.mu.Lock()
	s.raw, s.etag, s.status = raw, `"`+hex.EncodeToString(sum[:8])+`"`, 0
	s.notify()
	s.mu.Unlock()
}

// Fail answers every request with status until the next Set.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	s.status = status
	s.notify()
	s.mu.Unlock()
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats returns how many requests were served, how many of them were 304s,
// and the Authorization header of the last one.
func (s *Server) Stats() (requests, notModified int, auth string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.notMod, s.auth
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
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
	timer := time.NewTimer(wait)
	defer timer.Stop()
	ct := "application/gzip"
	if s.longPoll {
		ct = "application/vnd.openpolicyagent.bundles"
	}
	s.mu.Lock()
	s.requests++
	s.auth = r.Header.Get("Authorization")
	s.mu.Unlock()
	for {
		s.mu.Lock()
		raw, etag, status, changed := s.raw, s.etag, s.status, s.changed
		s.mu.Unlock()
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
		case <-timer.C:
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
