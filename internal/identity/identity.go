// Package identity keeps the company identity provider's signing keys for
// the legal two-person rule: a JWKS document read from a file or fetched
// from a URL, checked, refreshed, and handed to the engine as the policy's
// data.pare.legal — {"jwks": the document, "audience", "issuer"} — so that
// the policy verifies X-Data-Requester and X-Legal-Approver tokens with
// OPA's io.jwt.decode_verify. Verification is the policy's; this package
// only makes sure the keys it verifies with are the provider's and current.
//
// It fails closed: while no keys are in force (the first fetch has not
// succeeded, or the last success is older than MaxAge) data.pare.legal.jwks
// is "", and the policy refuses legal requests with identity_unavailable
// (503). Other requests never depend on it.
package identity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultRefresh = 5 * time.Minute
	DefaultMaxAge  = time.Hour
	// fetchTimeout bounds one fetch of a JWKS URL, body included.
	fetchTimeout = 10 * time.Second
	// maxJWKS bounds a JWKS document: a provider publishes a few keys, a
	// few KiB; the policy parses the document on every legal request.
	maxJWKS = 256 << 10
	// retryAfterFailure is the wait after a failed refresh when Refresh is
	// longer: a provider back up is noticed soon, without hammering it.
	retryAfterFailure = 30 * time.Second
)

// Options configure Keys.
type Options struct {
	// Source is a file path, or an https:// URL (http:// only to a
	// loopback address: keys fetched in clear text from elsewhere could be
	// anyone's).
	Source string
	// Audience and Issuer are what the tokens' aud and iss must be. Both
	// are required: without an audience, a token the provider issued to any
	// other application would do.
	Audience string
	Issuer   string
	// Refresh is how often the keys are read again (DefaultRefresh). A
	// provider rotating its keys publishes the new one ahead of use.
	Refresh time.Duration
	// MaxAge is how long keys stay in force after the last successful read
	// while reads fail (DefaultMaxAge); then legal requests are refused
	// until a read succeeds. A key the provider withdrew is honoured for at
	// most this long when Pare cannot reach the provider.
	MaxAge time.Duration
	// Client fetches a URL; nil: a client that follows no redirects.
	Client *http.Client
	// Install hands the engine data (the document data.pare) to the
	// engine: engine.Engine.SetData. It is called with the keys absent
	// before the first read, and on every change.
	Install func(data map[string]any) error
	// Registerer gets the metrics; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; tests set it. Default time.Now.
	Now func() time.Time
}

// Validate checks the options without reading anything.
func (o Options) Validate() error {
	var errs []error
	if o.Source == "" {
		errs = append(errs, errors.New("no JWKS source (a file or an https:// URL)"))
	} else if isURL(o.Source) {
		if err := checkURL(o.Source); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.TrimSpace(o.Audience) == "" {
		errs = append(errs, errors.New("an audience is required: without one, tokens the identity provider issued to any application would be accepted"))
	}
	if strings.TrimSpace(o.Issuer) == "" {
		errs = append(errs, errors.New("an issuer is required: the tokens' iss must be the identity provider's"))
	}
	if o.Refresh < 0 || o.MaxAge < 0 {
		errs = append(errs, errors.New("refresh and max age must be positive"))
	} else if o.Refresh > 0 && o.MaxAge > 0 && o.MaxAge < o.Refresh {
		errs = append(errs, fmt.Errorf("max age %s is shorter than the refresh interval %s: keys would lapse between two reads", o.MaxAge, o.Refresh))
	}
	return errors.Join(errs...)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("JWKS URL: %w", err)
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("JWKS URL %q: want https://host/path without user info", s)
	}
	if u.Scheme == "http" {
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("JWKS URL %q: plain http only to a loopback address; anyone on the path could substitute their keys", s)
		}
	}
	return nil
}

// Check reads and checks the JWKS of a file source, for preflight. A URL is
// not fetched: serve starts without it, refusing legal requests until it
// answers.
func Check(o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if isURL(o.Source) {
		return nil
	}
	_, _, err := readFile(o.Source)
	return err
}

// Keys keeps the identity provider's keys current in the engine.
type Keys struct {
	opt    Options
	client *http.Client
	log    *slog.Logger

	mu          sync.Mutex
	doc         []byte // the JWKS in force; nil: none
	lastSuccess time.Time

	keys     prometheus.Gauge
	success  prometheus.Gauge
	failures prometheus.Counter
}

// New validates opt and returns Keys with no keys in force; Start installs
// that state before anything else and reads the keys.
func New(opt Options) (*Keys, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if opt.Install == nil {
		return nil, errors.New("identity: Install is required")
	}
	if opt.Refresh == 0 {
		opt.Refresh = DefaultRefresh
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = max(DefaultMaxAge, opt.Refresh)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	k := &Keys{opt: opt, client: opt.Client, log: opt.Logger}
	if k.client == nil {
		k.client = &http.Client{
			Timeout: fetchTimeout,
			// The keys are where the configuration says, not wherever a
			// response points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	k.keys = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "pare", Subsystem: "legal", Name: "jwks_keys",
		Help: "Keys of the identity provider in force for legal requests; 0: none, and legal requests are refused (identity_unavailable).",
	})
	k.success = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "pare", Subsystem: "legal", Name: "jwks_last_success_timestamp_seconds",
		Help: "When the identity provider's keys were last read successfully.",
	})
	k.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "pare", Subsystem: "legal", Name: "jwks_refresh_failures_total",
		Help: "Failed reads of the identity provider's keys (the last good keys stay in force up to their max age).",
	})
	if opt.Registerer != nil {
		for _, c := range []prometheus.Collector{k.keys, k.success, k.failures} {
			if err := opt.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("identity: %w", err)
			}
		}
	}
	return k, nil
}

// Start installs "no keys yet" in the engine — so that no policy ever runs
// as if no identity provider were configured — and then reads the keys
// once. It fails only when the engine refuses the data. A failed read is
// logged and counted like any refresh: legal requests are refused until
// one succeeds.
func (k *Keys) Start(ctx context.Context) error {
	if err := k.opt.Install(k.data(nil)); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := k.refresh(ctx); err != nil {
		k.log.Error("identity provider keys not read: legal requests are refused until they are", "source", k.opt.Source, "err", err)
	}
	return nil
}

// Run refreshes the keys until ctx is done.
func (k *Keys) Run(ctx context.Context) {
	wait := k.opt.Refresh
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait = k.opt.Refresh
		if err := k.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.Error("identity provider keys not refreshed", "source", k.opt.Source, "err", err)
			wait = min(wait, retryAfterFailure)
		}
		t.Reset(wait)
	}
}

// refresh reads the keys and installs them when they changed; on failure it
// drops keys older than MaxAge.
func (k *Keys) refresh(ctx context.Context) error {
	doc, n, err := k.read(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.opt.Now()
	if err != nil {
		k.failures.Inc()
		if k.doc != nil && now.Sub(k.lastSuccess) > k.opt.MaxAge {
			if ierr := k.opt.Install(k.data(nil)); ierr != nil {
				return errors.Join(err, ierr)
			}
			k.doc = nil
			k.keys.Set(0)
			k.log.Error("identity provider keys expired: legal requests are refused until they are read again",
				"source", k.opt.Source, "last_success", k.lastSuccess, "max_age", k.opt.MaxAge)
		}
		return err
	}
	if !bytes.Equal(doc, k.doc) {
		if err := k.opt.Install(k.data(doc)); err != nil {
			return err
		}
		if k.doc == nil {
			k.log.Info("identity provider keys in force", "source", k.opt.Source, "keys", n)
		} else {
			k.log.Info("identity provider keys changed", "source", k.opt.Source, "keys", n)
		}
		k.doc = doc
		k.keys.Set(float64(n))
	}
	k.lastSuccess = now
	k.success.Set(float64(now.UnixNano()) / 1e9)
	return nil
}

// data is the document data.pare for doc (nil: no keys).
func (k *Keys) data(doc []byte) map[string]any {
	return map[string]any{"legal": map[string]any{
		"jwks":     string(doc),
		"audience": k.opt.Audience,
		"issuer":   k.opt.Issuer,
	}}
}

func (k *Keys) read(ctx context.Context) ([]byte, int, error) {
	if !isURL(k.opt.Source) {
		return readFile(k.opt.Source)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.opt.Source, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch JWKS %s: status %d", k.opt.Source, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch JWKS %s: %w", k.opt.Source, err)
	}
	n, err := checkJWKS(b)
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS from %s: %w", k.opt.Source, err)
	}
	return b, n, nil
}

func readFile(path string) ([]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJWKS+1))
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS %s: %w", path, err)
	}
	n, err := checkJWKS(b)
	if err != nil {
		return nil, 0, fmt.Errorf("JWKS %s: %w", path, err)
	}
	return b, n, nil
}

// checkJWKS checks a JWKS document with the library OPA's
// io.jwt.decode_verify parses it with, so that keys accepted here are keys
// the policy can verify with, and returns how many it holds. Only public
// keys of asymmetric algorithms: a symmetric ("oct") key would let whoever
// knows it mint approvals, and a private key has no business in a
// published key set.
func checkJWKS(b []byte) (int, error) {
	if len(b) > maxJWKS {
		return 0, fmt.Errorf("larger than %d bytes", maxJWKS)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return 0, fmt.Errorf("not a JWK set: %w", err)
	}
	if set.Len() == 0 {
		return 0, errors.New("no keys")
	}
	for i := range set.Len() {
		key, _ := set.Key(i)
		private, err := jwk.IsPrivateKey(key)
		switch {
		case err != nil:
			return 0, fmt.Errorf("key %d (kty %s): not a public key of an asymmetric algorithm", i, key.KeyType())
		case private:
			return 0, fmt.Errorf("key %d holds a private key: publish the public keys only", i)
		}
	}
	return set.Len(), nil
}
