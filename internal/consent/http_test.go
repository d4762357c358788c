package consent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is the cache's clock in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: ts("2026-12-01T00:00:00Z")} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// service is a fake consent service: it answers GET /consents/{subject} from a mutable map and
// counts the requests.
type service struct {
	mu       sync.Mutex
	subjects map[string][]Consent
	status   int // non-zero: answer with this status and no body
	hits     atomic.Int64
	paths    []string
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paths = append(s.paths, r.URL.EscapedPath())
	if s.status != 0 {
		w.WriteHeader(s.status)
		return
	}
	subject := strings.TrimPrefix(r.URL.Path, "/consents/")
	cs, ok := s.subjects[subject]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"subject": subject, "consents": cs})
}

func (s *service) set(subject string, cs ...Consent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subjects[subject] = cs
}

func (s *service) setStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

var (
	granted = Consent{Purpose: "marketing", Status: StatusGranted, Time: ts("2026-10-01T10:00:00Z"),
		Evidence: Evidence{Action: "checked 'Send me product news'", Where: "signup form /register", PolicyVersion: "2026-09"}}
	withdrawn = Consent{Purpose: "marketing", Status: StatusWithdrawn, Time: ts("2026-11-01T10:00:00Z"),
		Evidence: Evidence{Action: "clicked unsubscribe", Where: "newsletter footer"}}
)

// newService starts a fake service and an HTTP source on it with a fake clock.
func newService(t *testing.T, opt HTTPOptions) (*service, *HTTP, *fakeClock) {
	t.Helper()
	svc := &service{subjects: map[string][]Consent{}}
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	clock := newClock()
	if opt.Now == nil {
		opt.Now = clock.Now
	}
	h, err := NewHTTP(srv.URL+"/consents/", opt)
	if err != nil {
		t.Fatal(err)
	}
	return svc, h, clock
}

func lookup(t *testing.T, h *HTTP, subject string) []Consent {
	t.Helper()
	got, err := h.Lookup(context.Background(), subject)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", subject, err)
	}
	return got
}

// TestHTTPResponses covers the contract: what the service answers, and what Lookup returns.
func TestHTTPResponses(t *testing.T) {
	big := `{"consents": [], "pad": "` + strings.Repeat("x", maxResponseBytes) + `"}`
	tests := []struct {
		name    string
		status  int
		body    string
		want    []Consent
		wantErr string
	}{
		{name: "current state", status: 200,
			body: `{"subject": "u-1", "consents": [{"purpose": "marketing", "status": "granted", "time": "2026-10-01T12:00:00+02:00",
				"evidence": {"action": "checked 'Send me product news'", "where": "signup form /register", "policy_version": "2026-09"}}]}`,
			want: []Consent{granted}},
		{name: "history, latest wins, unknown fields ignored", status: 200,
			body: `{"consents": [
				{"purpose": "marketing", "status": "withdrawn", "time": "2026-11-01T10:00:00Z", "evidence": {"action": "clicked unsubscribe", "where": "newsletter footer"}, "id": 7},
				{"purpose": "marketing", "status": "granted", "time": "2026-10-01T10:00:00Z", "evidence": {"action": "checked 'Send me product news'", "where": "signup form /register", "policy_version": "2026-09"}}],
				"next_page": null}`,
			want: []Consent{withdrawn}},
		{name: "no consents", status: 200, body: `{"subject": "u-1", "consents": []}`, want: []Consent{}},
		{name: "null consents", status: 200, body: `{"subject": "u-1"}`, want: []Consent{}},
		{name: "404 means none", status: 404, body: "not found", want: []Consent{}},
		{name: "500", status: 500, body: "oops", wantErr: "consent service unavailable: HTTP 500 from the consent service"},
		{name: "503", status: 503, wantErr: "HTTP 503"},
		{name: "redirect is not followed", status: 302, wantErr: "HTTP 302"},
		{name: "invalid JSON", status: 200, body: `{"consents": [`, wantErr: "invalid JSON response"},
		{name: "HTML", status: 200, body: `<html>login</html>`, wantErr: "invalid JSON response"},
		{name: "wrong type", status: 200, body: `{"consents": {"marketing": "granted"}}`, wantErr: "invalid JSON response"},
		{name: "bad time", status: 200, body: `{"consents": [{"purpose": "m", "status": "withdrawn", "time": "yesterday"}]}`, wantErr: "invalid JSON response"},
		{name: "another subject", status: 200, body: `{"subject": "u-2", "consents": []}`, wantErr: "the response is for another subject"},
		{name: "invalid status", status: 200,
			body:    `{"consents": [{"purpose": "marketing", "status": "opted-in", "time": "2026-10-01T10:00:00Z"}]}`,
			wantErr: `invalid response: consents[0]: status must be "granted" or "withdrawn", got "opted-in"`},
		{name: "grant without action", status: 200,
			body:    `{"consents": [{"purpose": "marketing", "status": "granted", "time": "2026-10-01T10:00:00Z"}]}`,
			wantErr: "consents[0]: evidence.action is required for a grant"},
		{name: "missing time and purpose", status: 200,
			body:    `{"consents": [{"status": "withdrawn"}]}`,
			wantErr: "consents[0]: purpose is required; consents[0]: time is required"},
		{name: "body too large", status: 200, body: big, wantErr: "response larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			h, err := NewHTTP(srv.URL, HTTPOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Lookup(context.Background(), "u-1")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Lookup error = %v, want it to contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("error %v does not wrap ErrUnavailable", err)
				}
				if got != nil {
					t.Errorf("Lookup returned consents %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if got == nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Lookup = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestHTTPPathEscaping(t *testing.T) {
	svc, h, _ := newService(t, HTTPOptions{})
	for _, subject := range []string{"u-1", "a/b c", "../admin", "ü?x=1#f"} {
		lookup(t, h, subject)
	}
	want := []string{"/consents/u-1", "/consents/a%2Fb%20c", "/consents/..%2Fadmin", "/consents/%C3%BC%3Fx=1%23f"}
	if !reflect.DeepEqual(svc.paths, want) {
		t.Errorf("paths = %q, want %q", svc.paths, want)
	}
}

func TestHTTPSubjectLimits(t *testing.T) {
	svc, h, _ := newService(t, HTTPOptions{})
	if got := lookup(t, h, ""); got == nil || len(got) != 0 {
		t.Errorf("Lookup(\"\") = %#v, want empty", got)
	}
	if _, err := h.Lookup(context.Background(), strings.Repeat("x", maxSubjectLen+1)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lookup(long) error = %v, want ErrUnavailable", err)
	}
	if n := svc.hits.Load(); n != 0 {
		t.Errorf("service hit %d times, want 0", n)
	}
}

func TestHTTPCacheTTL(t *testing.T) {
	svc, h, clock := newService(t, HTTPOptions{TTL: 30 * time.Second})
	svc.set("u-1", granted)

	if got := lookup(t, h, "u-1"); !reflect.DeepEqual(got, []Consent{granted}) { // miss
		t.Fatalf("Lookup = %v", got)
	}
	lookup(t, h, "u-1") // hit
	lookup(t, h, "u-2") // miss: 404, cached too
	lookup(t, h, "u-2") // hit
	if n := svc.hits.Load(); n != 2 {
		t.Fatalf("service hits = %d, want 2", n)
	}

	// The user withdraws; within the TTL the cached grant stands, after it the withdrawal shows.
	svc.set("u-1", granted, withdrawn)
	clock.Advance(29 * time.Second)
	if got := lookup(t, h, "u-1"); got[0].Status != StatusGranted {
		t.Fatalf("within the TTL: %v, want the cached grant", got)
	}
	clock.Advance(time.Second)
	if got := lookup(t, h, "u-1"); !reflect.DeepEqual(got, []Consent{withdrawn}) {
		t.Fatalf("after the TTL: %v, want the withdrawal", got)
	}
	if n := svc.hits.Load(); n != 3 {
		t.Fatalf("service hits = %d, want 3", n)
	}

	// The caller owns the result: changing it does not change the cache.
	got := lookup(t, h, "u-1")
	got[0].Status = StatusGranted
	if again := lookup(t, h, "u-1"); again[0].Status != StatusWithdrawn {
		t.Error("a caller's change to a Lookup result changed the cache")
	}
}

func TestHTTPErrorsCachedBriefly(t *testing.T) {
	svc, h, clock := newService(t, HTTPOptions{})
	svc.set("u-1", granted)
	svc.setStatus(500)
	for range 3 {
		if _, err := h.Lookup(context.Background(), "u-1"); err == nil {
			t.Fatal("want an error from a failing service")
		}
	}
	if n := svc.hits.Load(); n != 1 {
		t.Fatalf("service hits = %d, want 1 (failure cached for ErrorTTL)", n)
	}
	svc.setStatus(0)
	clock.Advance(DefaultErrorTTL)
	if got := lookup(t, h, "u-1"); !reflect.DeepEqual(got, []Consent{granted}) {
		t.Fatalf("after ErrorTTL: %v", got)
	}

	// A failure after an answer expired does not bring the stale answer back.
	clock.Advance(DefaultTTL)
	svc.setStatus(502)
	if _, err := h.Lookup(context.Background(), "u-1"); err == nil {
		t.Fatal("a stale answer was served while the service fails")
	}
}

func TestHTTPErrorCacheDisabled(t *testing.T) {
	svc, h, _ := newService(t, HTTPOptions{ErrorTTL: -1})
	svc.setStatus(500)
	for range 3 {
		_, _ = h.Lookup(context.Background(), "u-1")
	}
	if n := svc.hits.Load(); n != 3 {
		t.Fatalf("service hits = %d, want 3", n)
	}
}

func TestHTTPLRUBound(t *testing.T) {
	svc, h, _ := newService(t, HTTPOptions{MaxEntries: 3})
	for _, s := range []string{"a", "b", "c"} {
		lookup(t, h, s)
	}
	lookup(t, h, "a") // a is now the most recently used; b the least
	lookup(t, h, "d") // evicts b
	if n := h.cache.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	before := svc.hits.Load()
	lookup(t, h, "a")
	lookup(t, h, "c")
	lookup(t, h, "d")
	if n := svc.hits.Load() - before; n != 0 {
		t.Fatalf("%d service hits for cached subjects, want 0", n)
	}
	lookup(t, h, "b")
	if n := svc.hits.Load() - before; n != 1 {
		t.Fatalf("%d service hits for the evicted subject, want 1", n)
	}
	for i := range 100 {
		lookup(t, h, string(rune('A'+i)))
	}
	if n := h.cache.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	h, err := NewHTTP(srv.URL, HTTPOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = h.Lookup(context.Background(), "u-1")
	if err == nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("Lookup error = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lookup took %s", d)
	}
}

func TestHTTPSlowBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"consents": [`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	h, err := NewHTTP(srv.URL, HTTPOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Lookup(context.Background(), "u-1"); err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("Lookup error = %v, want a timeout", err)
	}
}

func TestHTTPServerClosed(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	h, err := NewHTTP(url, HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Lookup(context.Background(), "u-secret")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lookup error = %v, want ErrUnavailable", err)
	}
	// The error reaches logs and the policy input: no URL, hence no subject id, in it.
	if strings.Contains(err.Error(), "u-secret") || strings.Contains(err.Error(), "http://") {
		t.Errorf("error reveals the URL: %v", err)
	}
}

func TestHTTPCoalescing(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
		_ = json.NewEncoder(w).Encode(map[string]any{"consents": []Consent{granted}})
	}))
	defer srv.Close()
	// Failures are not cached, so only coalescing can keep the hits at one.
	h, err := NewHTTP(srv.URL, HTTPOptions{ErrorTTL: -1})
	if err != nil {
		t.Fatal(err)
	}

	const n = 50
	results := make(chan error, n)
	for range n {
		go func() {
			got, err := h.Lookup(context.Background(), "u-1")
			if err == nil && !reflect.DeepEqual(got, []Consent{granted}) {
				err = errors.New("wrong consents")
			}
			results <- err
		}()
	}
	// Release the service only when all lookups wait on the one request.
	deadline := time.Now().Add(5 * time.Second)
	for waiters(h, "u-1") < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d lookups joined the request", waiters(h, "u-1"))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range n {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("service hits = %d, want 1", got)
	}
}

func waiters(h *HTTP, subject string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fl, ok := h.inflight[subject]; ok {
		return fl.waiters
	}
	return 0
}

// TestHTTPCallerGivesUp checks that the first caller cancelling does not fail the lookups that
// joined its request.
func TestHTTPCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_ = json.NewEncoder(w).Encode(map[string]any{"consents": []Consent{withdrawn}})
	}))
	defer srv.Close()
	h, err := NewHTTP(srv.URL, HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := h.Lookup(ctx, "u-1")
		first <- err
	}()
	for waiters(h, "u-1") < 1 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan []Consent, 1)
	go func() {
		got, _ := h.Lookup(context.Background(), "u-1")
		second <- got
	}()
	for waiters(h, "u-1") < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first Lookup error = %v, want context.Canceled", err)
	}
	close(release)
	if got := <-second; !reflect.DeepEqual(got, []Consent{withdrawn}) {
		t.Errorf("second Lookup = %v, want the withdrawal", got)
	}
}

func TestNewHTTPInvalid(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"", "scheme must be http or https"},
		{"consent.internal/v1", "scheme must be http or https"},
		{"ftp://consent.internal", "scheme must be http or https"},
		{"http://", "host is missing"},
		{"http://consent.internal/v1?x=1", "must not have a query"},
		{"http://consent.internal/v1#f", "must not have a query"},
		{"http://[::1", "consent service URL"},
	} {
		if _, err := NewHTTP(tt.url, HTTPOptions{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewHTTP(%q) error = %v, want %q", tt.url, err, tt.want)
		}
	}
}

func TestNewHTTPDefaults(t *testing.T) {
	h, err := NewHTTP("https://consent.internal/v1/subjects/", HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h.base != "https://consent.internal/v1/subjects" || h.ttl != DefaultTTL || h.errTTL != DefaultErrorTTL ||
		h.timeout != DefaultTimeout || h.cache.max != DefaultMaxEntries || h.client == nil {
		t.Errorf("defaults not applied: %+v", h)
	}
}
