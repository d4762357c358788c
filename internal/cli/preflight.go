package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/ca"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/identity"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/proxy"
)

// prepared is what preflight read and checked, for serve to use as is.
type prepared struct {
	hmacKey     []byte            // nil: a random key per process
	resolve     map[string]string // HOST:PORT -> ADDR
	consentFile *consent.File     // not watched yet
	consentHTTP *consent.HTTP
}

// preflight runs every check serve makes before it listens, and reads what
// serve needs, without side effects: it creates no file and binds no port.
// `proxy check --config` runs exactly this, so a config that check accepts
// is one serve starts with (short of a port taken or a disk filled between
// the two). Every problem is reported at once.
func (c *Config) preflight(ctx context.Context, log *slog.Logger) (*prepared, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	var errs []error
	p := &prepared{resolve: map[string]string{}}

	for _, l := range []struct{ key, addr string }{{"listen", c.Listen}, {"admin", c.Admin}, {"metrics_listen", c.MetricsListen}} {
		if err := resolveListenHost(ctx, l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.key, err))
		}
	}
	if c.HMACKeyFile != "" {
		key, err := readHMACKey(c.HMACKeyFile)
		if err != nil {
			errs = append(errs, err)
		}
		p.hmacKey = key
	}
	if c.Policies != "" {
		if err := wantDir(c.Policies); err != nil {
			errs = append(errs, fmt.Errorf("policies: %w", err))
		}
	}
	if err := checkLedgerPath(c.Ledger); err != nil {
		errs = append(errs, err)
	}
	// What serve creates on first start: the state directory (the ledger's
	// signing key, the drop-in CA), the witness file, the bundle directory.
	// Each must be creatable, or writable where it exists.
	for _, d := range []struct{ key, path string }{{"state_dir", c.StateDir}, {"bundle_dir", c.bundleDirUsed()}} {
		if d.path != "" {
			if err := canCreate(d.path, true); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d.key, err))
			}
		}
	}
	if c.LedgerCheckpoint != "" {
		if err := canCreate(c.LedgerCheckpoint, false); err != nil {
			errs = append(errs, fmt.Errorf("ledger_checkpoint: %w", err))
		}
	}
	// An existing signing key is only read: it may sit on a read-only mount
	// (a Kubernetes Secret). A missing one is created, so its directory
	// must take it.
	if c.LedgerKey != "" {
		_, _, err := ledger.ReadKeyFile(c.LedgerKey)
		if errors.Is(err, fs.ErrNotExist) {
			err = canCreate(c.LedgerKey, false)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("ledger_key: %w", err))
		}
	}
	if c.CACert != "" && c.CAKey != "" {
		// A supplied CA is only read, so checking it is opening it.
		if _, err := ca.Open(ca.Options{CertFile: c.CACert, KeyFile: c.CAKey}); err != nil {
			errs = append(errs, fmt.Errorf("ca_cert, ca_key: %w", err))
		}
	}
	if c.Transparent != "" {
		if err := checkListenAddr(c.Transparent); err != nil {
			errs = append(errs, fmt.Errorf("transparent: %w", err))
		} else if err := resolveListenHost(ctx, c.Transparent); err != nil {
			errs = append(errs, fmt.Errorf("transparent: %w", err))
		}
	}
	if c.Bundle != "" && len(c.BundleKeys) > 0 {
		if _, err := bundle.VerificationConfigFromFiles(c.BundleKeys...); err != nil {
			errs = append(errs, fmt.Errorf("bundle_key: %w", err))
		}
	}
	for _, f := range []struct{ key, path string }{{"bundle_ca", c.BundleCA}, {"bundle_token_file", c.BundleTokenFile}} {
		if f.path != "" {
			if _, err := os.ReadFile(f.path); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
			}
		}
	}
	for _, d := range []struct{ key, dsn string }{{"consents_dsn", c.ConsentsDSN}, {"ledger_sink", c.LedgerSink}} {
		if d.dsn != "" {
			if _, err := pgx.ParseConfig(d.dsn); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d.key, err))
			}
		}
	}
	if c.LegalJWKS != "" {
		// A file is read and checked; a URL is fetched by serve, which
		// starts without it and refuses legal requests until it answers.
		if err := identity.Check(c.identityOptions()); err != nil {
			errs = append(errs, fmt.Errorf("legal_jwks: %w", err))
		}
	}
	for _, r := range c.Resolve {
		hp, addr, err := proxy.ParseResolve(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.resolve[hp] = addr
	}
	for _, f := range c.UpstreamCA {
		// The proxy reads these again when it builds its transport; reading
		// them here as well is what lets check report a bad file.
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream_ca: %w", err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			errs = append(errs, fmt.Errorf("upstream_ca %s: no PEM certificates found", f))
		}
	}
	switch {
	case c.Consents != "":
		f, err := consent.OpenFile(c.Consents, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("consents: %w", err))
		}
		p.consentFile = f
	case c.ConsentURL != "":
		h, err := consent.NewHTTP(c.ConsentURL, consent.HTTPOptions{TTL: c.ConsentTTL})
		if err != nil {
			errs = append(errs, fmt.Errorf("consent_url: %w", err))
		}
		p.consentHTTP = h
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// resolveListenHost checks that a listener's host names this machine's
// addresses: an IP literal or a name that resolves (localhost, say).
func resolveListenHost(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
		return fmt.Errorf("%q: host %q does not resolve: %w", addr, host, err)
	}
	return nil
}

func readHMACKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hmac_key_file: %w", err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < 16 {
		return nil, fmt.Errorf("hmac_key_file %s: %d bytes, at least 16 wanted", path, len(key))
	}
	return key, nil
}

// canCreate checks that path can be created (its parent is a writable
// directory), or, if it exists, that it is of the kind wanted and writable.
func canCreate(path string, dir bool) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(path)
		if err := wantDir(parent); err != nil {
			return err
		}
		if err := canWrite(parent, true); err != nil {
			return fmt.Errorf("%s cannot be created: %s is not writable: %w", path, parent, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() != dir {
		if dir {
			return fmt.Errorf("%s is not a directory", path)
		}
		return fmt.Errorf("%s is a directory", path)
	}
	if err := canWrite(path, dir); err != nil {
		return fmt.Errorf("%s is not writable: %w", path, err)
	}
	return nil
}

func wantDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", path)
	}
	return nil
}

// checkLedgerPath checks that the ledger can be opened for appending: its
// directory exists and is writable (the ledger creates the file and, on
// rotation, siblings of it), and the file, if it exists, is no directory and
// is writable. Access(2) asks the kernel without creating anything. (A
// device is allowed: the e2e tests point the ledger at /dev/full to see
// every write fail closed.)
func checkLedgerPath(path string) error {
	dir := filepath.Dir(path)
	if err := wantDir(dir); err != nil {
		return fmt.Errorf("ledger directory: %w", err)
	}
	if err := canWrite(dir, true); err != nil {
		return fmt.Errorf("ledger directory %s: not writable: %w", dir, err)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("ledger: %w", err)
	case fi.IsDir():
		return fmt.Errorf("ledger %s: is a directory", path)
	}
	if err := canWrite(path, false); err != nil {
		return fmt.Errorf("ledger %s: not writable: %w", path, err)
	}
	return nil
}
