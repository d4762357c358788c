package consent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of HTTPOptions.
const (
	// DefaultTTL bounds how long a withdrawal can go unnoticed: a cached answer is used for at
	// most this long.
	DefaultTTL = 30 * time.Second
	// DefaultErrorTTL is how long a failed lookup is remembered. Short, so that the service
	// coming back is noticed within a second, but not zero: while the service is down, every
	// consent-gated request would otherwise send it one more request (and wait out one more
	// timeout) that is very likely to fail as well.
	DefaultErrorTTL = time.Second
	// DefaultMaxEntries bounds the cache's memory: about a few MB for typical consent lists.
	DefaultMaxEntries = 10000
	// DefaultTimeout bounds one lookup, which the proxied request waits for.
	DefaultTimeout = 2 * time.Second
)

const (
	// maxResponseBytes bounds a response body: a subject's consents are a few hundred bytes, and
	// a broken or hostile service must not make the proxy buffer gigabytes.
	maxResponseBytes = 1 << 20
	// maxSubjectLen bounds a subject id sent to the service and kept as a cache key: ids come from
	// a request header, and a megabyte-long one should be refused, not forwarded and cached.
	maxSubjectLen = 1024
)

// ErrUnavailable is wrapped by every error of the HTTP source that means "the consent state is
// unknown": the service failed, timed out, or answered something invalid. The proxy sets
// input.subject.consents_error and the policy refuses the consent-gated requests (fail closed).
var ErrUnavailable = errors.New("consent service unavailable")

// HTTPOptions configures an HTTP source. Zero values take the defaults.
type HTTPOptions struct {
	// TTL is how long an answer (including "no consents", a 404) is cached; a withdrawal takes
	// effect within it. Default DefaultTTL.
	TTL time.Duration
	// ErrorTTL is how long a failure is cached; negative disables. Default DefaultErrorTTL.
	ErrorTTL time.Duration
	// MaxEntries bounds the cache; the least recently used subject is evicted beyond it.
	// Default DefaultMaxEntries.
	MaxEntries int
	// Timeout bounds each request to the service, body included. Default DefaultTimeout.
	Timeout time.Duration
	// Client sends the requests; set it for TLS client certificates or an auth transport. The
	// default client follows no redirects: the lookup URL carries the subject id, and a consent
	// service has no reason to send it elsewhere. Client.Timeout, if set, also applies.
	Client *http.Client
	// Logger gets debug lines (with subject ids, hence debug only). Nil discards. Errors are
	// returned, not logged.
	Logger *slog.Logger
	// Now is the clock of the cache; tests inject one. Default time.Now.
	Now func() time.Time
}

// HTTP is a consent source backed by a consent service.
//
// The contract with the service: for subject S, Pare sends
//
//	GET {baseURL}/{url.PathEscape(S)}
//	Accept: application/json
//
// and expects one of
//
//   - 200 with a JSON body (at most 1 MiB) {"subject": "S", "consents": [Consent...]}, each
//     Consent as in the package (purpose, status "granted" or "withdrawn", RFC 3339 time,
//     evidence {action, where, policy_version}; a grant must have evidence.action). The list may
//     be the current state or a history; the latest event per purpose wins. "subject" may be
//     omitted, but if present it must be S. Unknown fields are ignored, so that the service can
//     grow; an invalid event fails the whole lookup, because skipping a malformed withdrawal would
//     leave the grant before it in force.
//   - 404: the service knows nothing of S, so S has no consents.
//
// Anything else (another status, a redirect, invalid JSON or events, a body over 1 MiB, no answer
// within the timeout, a refused connection) is an error wrapping ErrUnavailable. Answers are cached
// for TTL, failures for ErrorTTL; a stale answer is never served after its TTL, even when the
// service is down, because it could hide a withdrawal. Concurrent lookups of one subject share one
// request, which a caller giving up does not cancel for the others.
type HTTP struct {
	base     string // without a trailing slash
	client   *http.Client
	ttl      time.Duration
	errTTL   time.Duration
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger
	mu       sync.Mutex // guards cache and flights
	cache    *lru
	inflight map[string]*flight
}

// flight is one request to the service that every concurrent lookup of the subject waits for: a
// singleflight in a dozen lines, for which no dependency is worth it.
type flight struct {
	done     chan struct{} // closed when consents and err are set
	consents []Consent
	err      error
	waiters  int // lookups waiting on it, for tests
}

// NewHTTP returns a consent source querying the service at baseURL (http or https, without query
// or fragment; a trailing slash is ignored).
func NewHTTP(baseURL string, opt HTTPOptions) (*HTTP, error) {
	u, err := url.Parse(baseURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("consent service URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("consent service URL %q: scheme must be http or https", baseURL)
	case u.Host == "":
		return nil, fmt.Errorf("consent service URL %q: host is missing", baseURL)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("consent service URL %q: must not have a query or fragment; the subject is appended to the path", baseURL)
	}
	h := &HTTP{
		base:     strings.TrimRight(u.String(), "/"),
		client:   opt.Client,
		ttl:      opt.TTL,
		errTTL:   opt.ErrorTTL,
		timeout:  opt.Timeout,
		now:      opt.Now,
		log:      opt.Logger,
		inflight: make(map[string]*flight),
	}
	if h.client == nil {
		h.client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if h.ttl <= 0 {
		h.ttl = DefaultTTL
	}
	if h.errTTL == 0 {
		h.errTTL = DefaultErrorTTL
	}
	if h.timeout <= 0 {
		h.timeout = DefaultTimeout
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	maxEntries := opt.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	h.cache = newLRU(maxEntries)
	return h, nil
}

// Lookup returns the subject's current consents, from the cache or the service. An empty subject
// has no consents and is not looked up.
func (h *HTTP) Lookup(ctx context.Context, subject string) ([]Consent, error) {
	if subject == "" {
		return []Consent{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("consent lookup: %w", err)
	}
	if len(subject) > maxSubjectLen {
		return nil, fmt.Errorf("%w: subject id longer than %d bytes", ErrUnavailable, maxSubjectLen)
	}
	h.mu.Lock()
	if it, ok := h.cache.get(subject, h.now()); ok {
		h.mu.Unlock()
		h.log.Debug("consent lookup", "subject", subject, "cache", "hit", "error", it.err)
		return clone(it.consents), it.err
	}
	fl, joined := h.inflight[subject]
	if !joined {
		fl = &flight{done: make(chan struct{})}
		h.inflight[subject] = fl
		// Detached from the caller's cancellation (but not its values), so that the first caller
		// giving up does not fail the lookups that joined it; the timeout still bounds it.
		go h.run(context.WithoutCancel(ctx), subject, fl)
	}
	fl.waiters++
	h.mu.Unlock()
	h.log.Debug("consent lookup", "subject", subject, "cache", "miss", "joined", joined)

	select {
	case <-fl.done:
		return clone(fl.consents), fl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("consent lookup: %w", ctx.Err())
	}
}

// run performs the flight's request, caches the outcome and releases the waiters.
func (h *HTTP) run(ctx context.Context, subject string, fl *flight) {
	// The TTL counts from the request, not the answer: a withdrawal recorded while the request
	// was in flight is then still seen within TTL of it.
	asked := h.now()
	start := time.Now()
	fl.consents, fl.err = h.fetch(ctx, subject)
	h.log.Debug("consent service answered", "subject", subject, "duration", time.Since(start), "error", fl.err)

	h.mu.Lock()
	ttl := h.ttl
	if fl.err != nil {
		ttl = h.errTTL
	}
	if ttl > 0 {
		h.cache.put(&lruItem{key: subject, consents: fl.consents, err: fl.err, expires: asked.Add(ttl)})
	}
	delete(h.inflight, subject)
	h.mu.Unlock()
	close(fl.done)
}

// fetch asks the service once. Its errors never contain the URL, which holds the subject id: they
// end up in logs and in the policy input's consents_error.
func (h *HTTP) fetch(ctx context.Context, subject string) ([]Consent, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/"+url.PathEscape(subject), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot build the request", ErrUnavailable)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, h.transportError(ctx, err)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		drain(resp.Body)
		return []Consent{}, nil
	default:
		drain(resp.Body)
		return nil, fmt.Errorf("%w: HTTP %d from the consent service", ErrUnavailable, resp.StatusCode)
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, h.transportError(ctx, err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("%w: response larger than %d bytes", ErrUnavailable, maxResponseBytes)
	}
	var doc struct {
		Subject  string    `json:"subject"`
		Consents []Consent `json:"consents"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON response: %v", ErrUnavailable, err)
	}
	if doc.Subject != "" && doc.Subject != subject {
		// Using it would apply somebody else's consent.
		return nil, fmt.Errorf("%w: the response is for another subject", ErrUnavailable)
	}
	var problems []string
	for i, c := range doc.Consents {
		for _, p := range check(c) {
			problems = append(problems, fmt.Sprintf("consents[%d]: %s", i, p.msg))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return nil, fmt.Errorf("%w: invalid response: %s", ErrUnavailable, strings.Join(problems, "; "))
	}
	for i := range doc.Consents {
		doc.Consents[i].Time = doc.Consents[i].Time.UTC()
	}
	return latest(doc.Consents), nil
}

// transportError describes a failed request or body read without the URL.
func (h *HTTP) transportError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer within %s", ErrUnavailable, h.timeout)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// drain reads a little of an unused body so that the connection can be reused.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 4<<10)) }

// clone returns a copy the caller may modify; cached slices are shared. nil stays nil (errors).
func clone(cs []Consent) []Consent {
	if cs == nil {
		return nil
	}
	out := make([]Consent, len(cs))
	copy(out, cs)
	return out
}
