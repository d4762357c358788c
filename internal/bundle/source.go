package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pare-dev/pare/internal/engine"
)

// Defaults of SourceOptions.
const (
	// DefaultMinDelay and DefaultMaxDelay bound the wait between two polls
	// (a random delay in between, so a fleet does not poll in step). OPA's
	// defaults are a minute or two; a policy change that stops a disclosure
	// should reach the fleet sooner, and an unchanged bundle costs a 304.
	DefaultMinDelay = 10 * time.Second
	DefaultMaxDelay = 30 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for a response's headers
	// (not used while long polling).
	DefaultResponseHeaderTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds reading a response body.
	DefaultBodyTimeout = time.Minute
)

// Failure reasons, the values of pare_policy_bundle_failures_total{reason}.
const (
	// ReasonDownload: the bundle server could not be reached or answered an
	// error status. The policy in force stays.
	ReasonDownload = "download"
	// ReasonInvalid: the server served something that is refused: unsigned,
	// wrongly signed, over the size bound, not a bundle, or a policy that
	// does not compile or validate.
	ReasonInvalid = "invalid"
	// ReasonPersist: the activated bundle could not be written to disk; it is
	// in force, but a restart would not find it.
	ReasonPersist = "persist"
)

// Names of the persisted files under SourceOptions.Dir.
const (
	persistedBundle = "bundle.tar.gz"
	persistedState  = "bundle.json"
)

// SourceOptions configure a Source.
type SourceOptions struct {
	// URL is the bundle's address (http or https).
	URL string
	// Verification holds the public keys a bundle must be signed with
	// (NewVerificationConfig). Required.
	Verification *opabundle.VerificationConfig
	// Dir keeps the last activated bundle. Required: without it a sidecar
	// restarted while the bundle server is down would have no policy.
	Dir string
	// MinDelay and MaxDelay bound the wait between polls, in whole seconds
	// (OPA's downloader counts seconds). Defaults DefaultMinDelay, DefaultMaxDelay.
	MinDelay, MaxDelay time.Duration
	// LongPollTimeout, when set, asks a server that supports long polling to
	// hold each request up to this long until the bundle changes.
	LongPollTimeout time.Duration
	// ResponseHeaderTimeout, default DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// BodyTimeout, default DefaultBodyTimeout.
	BodyTimeout time.Duration
	// CACert is a PEM file of CA certificates for an https server (default:
	// the system's).
	CACert string
	// TokenFile holds a bearer token sent to the server, re-read per request.
	TokenFile string
	// MaxBytes bounds a bundle, compressed and uncompressed (default DefaultMaxBytes).
	MaxBytes int64
	// Load is how bundles are compiled.
	Load engine.LoadOptions
	// Logger receives the bundle's log lines; nil discards.
	Logger *slog.Logger
	// Registerer gets the bundle metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Source keeps an engine's policy in step with a bundle server: OPA's
// downloader polls (ETag, long polling, backoff), every bundle is verified and
// compiled (LoadPolicy) before it is swapped in, and the last activated one
// is persisted. A bundle that fails anywhere is logged with the reason and
// counted, and the policy in force stays. Until a first bundle is active the
// engine has no policy and refuses every request (fail closed).
type Source struct {
	eng    *engine.Engine
	opt    SourceOptions
	url    string // redacted, for logs and status
	log    *slog.Logger
	report func(*engine.Policy, error)
	dl     *download.Downloader

	failures    *prometheus.CounterVec
	lastSuccess prometheus.Gauge

	mu sync.Mutex // guards st, digest, persisted, failing
	st Status
	// digest is the SHA-256 of the active bundle's bytes: a server without
	// ETags serves the same bytes on every poll, which need no recompiling.
	digest    [sha256.Size]byte
	builtAt   time.Time // the active bundle's built_at
	persisted bool
	failing   bool   // the last poll failed: only the first of a streak is logged at warn
	refused   string // the last refusal logged at error: the same one again is logged at debug
}

// Status is what /debug/bundle shows.
type Status struct {
	URL            string         `json:"url"`
	Revision       string         `json:"revision,omitempty"`
	BuiltAt        *time.Time     `json:"built_at,omitempty"`
	Metadata       map[string]any `json:"metadata,omitempty"`
	ETag           string         `json:"etag,omitempty"`
	ActivatedAt    *time.Time     `json:"activated_at,omitempty"`
	RestoredFrom   string         `json:"restored_from,omitempty"` // the persisted file, when the active bundle came from disk
	Persisted      bool           `json:"persisted"`
	LastPoll       *time.Time     `json:"last_poll,omitempty"`
	LastSuccess    *time.Time     `json:"last_success,omitempty"` // last poll that found the active bundle current
	LastError      string         `json:"last_error,omitempty"`
	LastErrorAt    *time.Time     `json:"last_error_at,omitempty"`
	LastErrorCause string         `json:"last_error_reason,omitempty"`
}

// NewSource checks opt and prepares the downloader; nothing is fetched until
// Run. report, if not nil, is called after each activation (p, nil) and each
// refused bundle (nil, err), for the caller's reload metrics; the Source logs
// both itself.
func NewSource(e *engine.Engine, opt SourceOptions, report func(*engine.Policy, error)) (*Source, error) {
	u, err := url.Parse(opt.URL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("bundle URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("bundle URL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("bundle URL %q: host is missing", u.Redacted())
	case u.Fragment != "":
		return nil, fmt.Errorf("bundle URL %q: must not have a fragment", u.Redacted())
	case u.User != nil:
		// A password in the URL would end up in logs and ps; and OPA's
		// client would not send it anyway.
		return nil, fmt.Errorf("bundle URL %q: must not carry credentials (use a token file)", u.Redacted())
	}
	if opt.Verification == nil || !opt.Verification.SignatureRequired() {
		return nil, errors.New("bundle: a verification key is required (bundles must be signed)")
	}
	if opt.Dir == "" {
		return nil, errors.New("bundle: a directory for the last good bundle is required")
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("bundle directory: %w", err)
	}
	if opt.MinDelay == 0 && opt.MaxDelay == 0 {
		opt.MinDelay, opt.MaxDelay = DefaultMinDelay, DefaultMaxDelay
	}
	minS, err := wholeSeconds("bundle min delay", opt.MinDelay)
	if err != nil {
		return nil, err
	}
	maxS, err := wholeSeconds("bundle max delay", opt.MaxDelay)
	if err != nil {
		return nil, err
	}
	if opt.ResponseHeaderTimeout <= 0 {
		opt.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	headerS, err := wholeSeconds("bundle response header timeout", opt.ResponseHeaderTimeout)
	if err != nil {
		return nil, err
	}
	if opt.BodyTimeout <= 0 {
		opt.BodyTimeout = DefaultBodyTimeout
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.CACert != "" {
		if _, err := os.Stat(opt.CACert); err != nil {
			return nil, fmt.Errorf("bundle CA certificates: %w", err)
		}
	}
	if opt.TokenFile != "" {
		if _, err := os.Stat(opt.TokenFile); err != nil {
			return nil, fmt.Errorf("bundle token: %w", err)
		}
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("bundle", u.Redacted())

	// OPA's REST client joins its service URL and the request path; the path
	// keeps the query, if any.
	cfg := map[string]any{
		"url":                             u.Scheme + "://" + u.Host,
		"response_header_timeout_seconds": headerS,
		"credentials":                     map[string]any{"plugin": "pare"},
	}
	if opt.CACert != "" {
		cfg["tls"] = map[string]any{"ca_cert": opt.CACert}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("bundle client: %w", err)
	}
	tr := &transport{tokenFile: opt.TokenFile, max: opt.MaxBytes, bodyTimeout: opt.BodyTimeout}
	client, err := rest.New(cfgJSON, nil,
		rest.AuthPluginLookup(func(name string) rest.HTTPAuthPlugin {
			if name == "pare" {
				return tr
			}
			return nil
		}),
		rest.Logger(opaLogger{log}))
	if err != nil {
		return nil, fmt.Errorf("bundle client: %w", err)
	}
	reqPath := u.EscapedPath()
	if u.RawQuery != "" {
		reqPath += "?" + u.RawQuery
	}

	trigger := plugins.TriggerPeriodic
	dcfg := download.Config{Trigger: &trigger, Polling: download.PollingConfig{MinDelaySeconds: &minS, MaxDelaySeconds: &maxS}}
	if opt.LongPollTimeout > 0 {
		lp, err := wholeSeconds("bundle long poll timeout", opt.LongPollTimeout)
		if err != nil {
			return nil, err
		}
		dcfg.Polling.LongPollingTimeoutSeconds = &lp
	}
	if err := dcfg.ValidateAndInjectDefaults(); err != nil {
		return nil, fmt.Errorf("bundle polling: %w", err)
	}

	s := &Source{
		eng: e, opt: opt, url: u.Redacted(), log: log, report: report,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "policy", Name: "bundle_failures_total",
			Help: "Bundle polls or bundles that did not lead to a current policy, by reason (download, invalid, persist); the policy in force stays.",
		}, []string{"reason"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "pare", Subsystem: "policy", Name: "bundle_last_success_timestamp_seconds",
			Help: "When a poll last found the active bundle to be the server's current one.",
		}),
	}
	s.st.URL = s.url
	for _, r := range []string{ReasonDownload, ReasonInvalid, ReasonPersist} {
		s.failures.WithLabelValues(r)
	}
	if opt.Registerer != nil {
		if err := opt.Registerer.Register(s.failures); err != nil {
			return nil, fmt.Errorf("bundle metrics: %w", err)
		}
		if err := opt.Registerer.Register(s.lastSuccess); err != nil {
			return nil, fmt.Errorf("bundle metrics: %w", err)
		}
	}
	s.dl = download.New(dcfg, client, reqPath).
		WithCallback(s.update).
		WithBundleVerificationConfig(opt.Verification).
		WithSizeLimitBytes(opt.MaxBytes).
		WithBundlePersistence(true). // hands the callback the raw bytes
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1})
	return s, nil
}

func wholeSeconds(what string, d time.Duration) (int64, error) {
	if d < time.Second || d%time.Second != 0 || d > math.MaxInt32*time.Second {
		return 0, fmt.Errorf("%s %s: want whole seconds, at least 1s", what, d)
	}
	return int64(d / time.Second), nil
}

// Restore activates the persisted bundle, if there is one, verified and
// compiled like a downloaded one. It returns an error when there is none or
// it is refused (the key may have been rotated since); the engine's policy is
// then unchanged. Call it once, before Run.
func (s *Source) Restore(ctx context.Context) error {
	path := filepath.Join(s.opt.Dir, persistedBundle)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("persisted bundle: %w", err) // fs.ErrNotExist: none yet
	}
	p, c, err := LoadPolicy(ctx, raw, s.opt.Verification, s.opt.MaxBytes, s.opt.Load)
	if err == nil {
		err = s.checkNotOlder(c)
	}
	if err != nil {
		s.fail(ReasonInvalid, fmt.Errorf("persisted bundle %s: %w", path, err))
		if s.report != nil {
			s.report(nil, err)
		}
		return fmt.Errorf("persisted bundle %s: %w", path, err)
	}
	var state persistState
	if b, err := os.ReadFile(filepath.Join(s.opt.Dir, persistedState)); err == nil {
		_ = json.Unmarshal(b, &state)
	}
	etag := ""
	// The ETag names a version at one URL only.
	if state.URL == s.url && state.Digest == hex.EncodeToString(sha256Sum(raw)) {
		etag = state.ETag
		s.dl.SetCache(etag)
	}
	s.activate(p, c, raw, etag)
	s.mu.Lock()
	s.persisted = true
	s.st.Persisted = true
	s.st.RestoredFrom = path
	s.mu.Unlock()
	s.log.Info("policy restored from the persisted bundle", "revision", short(p.Revision), "path", path)
	return nil
}

// Run polls until ctx is done. Call it once.
func (s *Source) Run(ctx context.Context) {
	s.dl.Start(ctx)
	<-ctx.Done()
	s.dl.Stop(context.Background())
}

// Status returns the source's state.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// ServeHTTP serves Status as JSON (the admin listener's /debug/bundle).
func (s *Source) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.Status())
}

// update is the downloader's callback, run on its goroutine. An error
// returned makes the downloader back off before its next poll.
func (s *Source) update(ctx context.Context, u download.Update) error {
	now := time.Now()
	s.mu.Lock()
	s.st.LastPoll = &now
	s.mu.Unlock()

	if u.Error != nil {
		if ctx.Err() != nil {
			return u.Error // shutting down
		}
		reason := ReasonInvalid
		if isDownloadError(u.Error) {
			reason = ReasonDownload
		}
		s.fail(reason, u.Error)
		return u.Error
	}
	if u.Bundle == nil { // 304 Not Modified
		s.mu.Lock()
		current := u.ETag != "" && u.ETag == s.st.ETag
		s.mu.Unlock()
		if current {
			s.succeeded(now)
		}
		return nil
	}

	raw, err := io.ReadAll(u.Raw)
	if err != nil {
		s.fail(ReasonDownload, err)
		return err
	}
	s.mu.Lock()
	same := s.st.Revision != "" && s.digest == [sha256.Size]byte(sha256Sum(raw))
	s.mu.Unlock()
	if !same {
		p, c, err := LoadPolicy(ctx, raw, s.opt.Verification, s.opt.MaxBytes, s.opt.Load)
		if err == nil {
			err = s.checkNotOlder(c)
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.fail(ReasonInvalid, err)
			if s.report != nil {
				s.report(nil, err)
			}
			return err
		}
		s.activate(p, c, raw, u.ETag)
		s.log.Info("policy bundle activated", "revision", short(p.Revision), "etag", u.ETag,
			"files", len(p.Files), "vendors", len(p.Vendors), "source_revision", c.Metadata["source_revision"])
	} else {
		s.mu.Lock()
		s.st.ETag = u.ETag
		s.mu.Unlock()
	}
	if err := s.persist(raw, u.ETag); err != nil {
		s.fail(ReasonPersist, err)
		// Download it again next time, to try persisting it again.
		s.dl.SetCache("")
		return err
	}
	s.succeeded(now)
	return nil
}

// checkNotOlder refuses a bundle built before the active one. A signature
// says who built a bundle, not that it is the latest: whoever controls the
// bundle server (or the path to it) could otherwise serve an older, validly
// signed policy, say one that still sent a vendor a field since withdrawn.
// Going back to an older policy on purpose is a new build, which is newer.
// (A sidecar with no bundle yet, neither active nor persisted, has nothing
// to compare with and takes any validly signed one.)
func (s *Source) checkNotOlder(c *Contents) error {
	if c.BuiltAt.IsZero() {
		return fmt.Errorf("bundle %s has no built_at in its manifest: build bundles with `proxy bundle build`", short(c.Revision))
	}
	s.mu.Lock()
	active := s.builtAt
	s.mu.Unlock()
	if c.BuiltAt.Before(active) {
		return fmt.Errorf("bundle %s was built at %s, before the active one (%s, built at %s): refusing a rollback; to go back to an older policy, build it again",
			short(c.Revision), c.BuiltAt.Format(time.RFC3339), short(s.Status().Revision), active.Format(time.RFC3339))
	}
	return nil
}

func (s *Source) activate(p *engine.Policy, c *Contents, raw []byte, etag string) {
	s.eng.Swap(p)
	now := time.Now()
	s.mu.Lock()
	s.digest = [sha256.Size]byte(sha256Sum(raw))
	s.builtAt = c.BuiltAt
	s.persisted = false
	s.st.Revision, s.st.Metadata, s.st.ETag = p.Revision, c.Metadata, etag
	if !c.BuiltAt.IsZero() {
		builtAt := c.BuiltAt
		s.st.BuiltAt = &builtAt
	}
	s.st.ActivatedAt, s.st.RestoredFrom, s.st.Persisted = &now, "", false
	s.mu.Unlock()
	if s.report != nil {
		s.report(p, nil)
	}
}

func (s *Source) succeeded(now time.Time) {
	s.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	s.mu.Lock()
	s.st.LastSuccess = &now
	recovered := s.failing
	s.failing, s.refused = false, ""
	s.mu.Unlock()
	if recovered {
		s.log.Info("policy bundle current again", "revision", short(s.Status().Revision))
	}
}

// fail counts and logs a failure. Failures repeat on every retry (the
// downloader forgets the ETag of a bundle its reader refused and fetches it
// again, with backoff), and every one is counted; but only the first of a
// streak of download failures is a warning, and a refusal is an error only
// the first time it is seen.
func (s *Source) fail(reason string, err error) {
	s.failures.WithLabelValues(reason).Inc()
	now := time.Now()
	msg := err.Error()
	s.mu.Lock()
	first := !s.failing
	s.failing = true
	repeated := reason != ReasonDownload && msg == s.refused
	if reason != ReasonDownload {
		s.refused = msg
	}
	s.st.LastError, s.st.LastErrorAt, s.st.LastErrorCause = msg, &now, reason
	active := s.st.Revision
	s.mu.Unlock()
	keeping := "no policy is active: every request is refused"
	if active != "" {
		keeping = "keeping policy " + short(active)
	}
	switch {
	case reason != ReasonDownload && !repeated:
		s.log.Error("policy bundle refused: "+keeping, "reason", reason, "err", err)
	case reason != ReasonDownload:
		s.log.Debug("policy bundle refused again", "reason", reason, "err", err)
	case first:
		s.log.Warn("bundle server unavailable: "+keeping, "err", err)
	default:
		s.log.Debug("bundle server still unavailable", "err", err)
	}
}

// persistState is what is kept beside the persisted bundle.
type persistState struct {
	URL    string `json:"url"`
	ETag   string `json:"etag"`
	Digest string `json:"sha256"`
}

// persist writes raw and its state atomically (temporary file, fsync,
// rename, fsync of the directory), so a crash leaves the old bundle or the
// new one, never a torn one. The bundle is verified again when read back.
func (s *Source) persist(raw []byte, etag string) error {
	s.mu.Lock()
	done := s.persisted
	s.mu.Unlock()
	if done {
		return nil
	}
	state, err := json.Marshal(persistState{URL: s.url, ETag: etag, Digest: hex.EncodeToString(sha256Sum(raw))})
	if err != nil {
		return fmt.Errorf("persist bundle: %w", err)
	}
	if err := writeAtomic(s.opt.Dir, persistedBundle, raw); err != nil {
		return err
	}
	if err := writeAtomic(s.opt.Dir, persistedState, state); err != nil {
		return err
	}
	s.mu.Lock()
	s.persisted, s.st.Persisted = true, true
	s.mu.Unlock()
	return nil
}

func writeAtomic(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("persist bundle: %w", err)
	}
	tmp := f.Name()
	_, err = io.Copy(f, bytes.NewReader(b))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("persist bundle: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("persist bundle: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("persist bundle: sync %s: %w", dir, err)
	}
	return nil
}

// isDownloadError tells the server's failures (no answer, an error status)
// from a refused bundle: the downloader reports both through Update.Error.
func isDownloadError(err error) bool {
	if errors.Is(err, ErrTooLarge) {
		return false
	}
	var he download.HTTPError
	var se serverError
	if errors.As(err, &he) || errors.As(err, &se) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
