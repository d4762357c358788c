package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// transport is the REST client's HTTP layer, plugged in through OPA's own
// seam for it (rest's credentials plugin). OPA's client builds its TLS
// configuration (ca_cert) and transport as usual; this adds what a sidecar
// needs and OPA's does not do: a bound on what a response may make it hold,
// a deadline on reading the body, and a bearer token re-read from a file on
// every request (a rotated Kubernetes token keeps working).
type transport struct {
	tokenFile   string
	max         int64
	bodyTimeout time.Duration
}

var _ rest.HTTPAuthPlugin = (*transport)(nil)

// NewClient is called by OPA's REST client for each of its configurations
// (long polling clears the response header timeout, for one).
func (t *transport) NewClient(c rest.Config) (*http.Client, error) {
	tlsConf, err := rest.DefaultTLSConfig(c)
	if err != nil {
		return nil, serverError{fmt.Errorf("bundle server TLS: %w", err)}
	}
	timeout := int64(0)
	if c.ResponseHeaderTimeoutSeconds != nil {
		timeout = *c.ResponseHeaderTimeoutSeconds
	}
	hc := rest.DefaultRoundTripperClient(tlsConf, timeout)
	hc.Transport = &boundedTransport{base: hc.Transport, max: t.max, bodyTimeout: t.bodyTimeout}
	return hc, nil
}

// Prepare adds the bearer token, read now.
func (t *transport) Prepare(req *http.Request) error {
	if t.tokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(t.tokenFile)
	if err != nil {
		return serverError{fmt.Errorf("bundle server token: %w", err)}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return serverError{fmt.Errorf("bundle server token: %s is empty", t.tokenFile)}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// serverError marks a failure to talk to the bundle server that does not
// come wrapped in a *url.Error (those are the server's failures too), so
// that it is not counted as a refused bundle.
type serverError struct{ error }

func (e serverError) Unwrap() error { return e.error }

// boundedTransport reads every response body itself, within max bytes and
// bodyTimeout, and hands the caller a buffered copy. For a 200 it also
// checks the uncompressed size (see checkSize): OPA's tarball loader buffers
// every file of a bundle before anything can refuse it, so a small gzip
// bomb would otherwise become gigabytes in memory.
type boundedTransport struct {
	base        http.RoundTripper
	max         int64
	bodyTimeout time.Duration
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	timer := time.AfterFunc(t.bodyTimeout, cancel)
	body, err := io.ReadAll(io.LimitReader(resp.Body, t.max+1))
	stopped := timer.Stop()
	_ = resp.Body.Close()
	switch {
	case err != nil && !stopped:
		return nil, fmt.Errorf("bundle server: body not received within %s", t.bodyTimeout)
	case err != nil:
		return nil, fmt.Errorf("bundle server: reading the body: %w", err)
	case int64(len(body)) > t.max:
		return nil, fmt.Errorf("%w: the response is over %d bytes", ErrTooLarge, t.max)
	}
	if resp.StatusCode == http.StatusOK {
		// Only the size is judged here; a body that is not a bundle at all is
		// for OPA's reader to refuse, as an invalid bundle.
		if err := checkSize(body, t.max); errors.Is(err, ErrTooLarge) {
			return nil, err
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// opaLogger sends the logs of OPA's downloader and REST client to slog. OPA
// ships the opposite adapter (logging.NewSlogHandler) but not this one.
type opaLogger struct{ l *slog.Logger }

var _ logging.Logger = opaLogger{}

func (o opaLogger) Debug(f string, a ...any) { o.l.Debug(fmt.Sprintf(f, a...)) }
func (o opaLogger) Info(f string, a ...any)  { o.l.Info(fmt.Sprintf(f, a...)) }
func (o opaLogger) Warn(f string, a ...any)  { o.l.Warn(fmt.Sprintf(f, a...)) }
func (o opaLogger) Error(f string, a ...any) { o.l.Error(fmt.Sprintf(f, a...)) }

func (o opaLogger) WithFields(fields map[string]any) logging.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return opaLogger{o.l.With(args...)}
}

func (o opaLogger) GetLevel() logging.Level {
	ctx := context.Background()
	switch {
	case o.l.Enabled(ctx, slog.LevelDebug):
		return logging.Debug
	case o.l.Enabled(ctx, slog.LevelInfo):
		return logging.Info
	case o.l.Enabled(ctx, slog.LevelWarn):
		return logging.Warn
	}
	return logging.Error
}

// SetLevel is a no-op: the level is the slog handler's.
func (o opaLogger) SetLevel(logging.Level) {}
