package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/identity"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/ledgerdb"
)

// Config is the serve configuration: a YAML file (--config) whose keys match
// the flags; flags given on the command line override it.
type Config struct {
	Listen          string        `yaml:"listen"`
	Admin           string        `yaml:"admin"`
	MetricsListen   string        `yaml:"metrics_listen"` // /metrics, /healthz, /readyz only
	Pprof           bool          `yaml:"pprof"`          // /debug/pprof/ on the admin listener
	Policies        string        `yaml:"policies"`       // "" = the bundled policies
	Bundle          string        `yaml:"bundle"`         // bundle URL, instead of policies
	BundleKeys      []string      `yaml:"bundle_key"`
	BundleDir       string        `yaml:"bundle_dir"`
	BundleMinDelay  time.Duration `yaml:"bundle_min_delay"`
	BundleMaxDelay  time.Duration `yaml:"bundle_max_delay"`
	BundleLongPoll  time.Duration `yaml:"bundle_long_poll"`
	BundleCA        string        `yaml:"bundle_ca"`
	BundleTokenFile string        `yaml:"bundle_token_file"`
	BundleMaxBytes  ByteSize      `yaml:"bundle_max_bytes"`
	Service         string        `yaml:"service"`
	Ledger          string        `yaml:"ledger"`
	LedgerMaxBytes  ByteSize      `yaml:"ledger_max_bytes"`
	// StateDir keeps what the sidecar generates once and must keep: the
	// ledger's signing key and the drop-in CA.
	StateDir           string        `yaml:"state_dir"`
	LedgerKey          string        `yaml:"ledger_key"`        // "" = StateDir/ledger.key, created on first start
	LedgerCheckpoint   string        `yaml:"ledger_checkpoint"` // witness file: every checkpoint, outside the ledger directory
	LedgerSink         string        `yaml:"ledger_sink"`       // the fleet's ledger database (postgres://...)
	LedgerRetain       time.Duration `yaml:"ledger_retain"`     // keep shipped rotated files this long; negative: never delete
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	HMACKeyFile        string        `yaml:"hmac_key_file"`
	Resolve            []string      `yaml:"resolve"`
	UpstreamCA         []string      `yaml:"upstream_ca"`
	MaxBody            ByteSize      `yaml:"max_body"`
	MaxBodyMemory      ByteSize      `yaml:"max_body_memory"`
	DryRun             bool          `yaml:"dry_run"`
	Consents           string        `yaml:"consents"`     // consents file
	ConsentURL         string        `yaml:"consent_url"`  // consent service
	ConsentsDSN        string        `yaml:"consents_dsn"` // consents table in PostgreSQL
	ConsentTTL         time.Duration `yaml:"consent_ttl"`
	LogFormat          string        `yaml:"log_format"`
	LogLevel           string        `yaml:"log_level"`
	MaxConnsPerVendor  int           `yaml:"max_conns_per_vendor"`
	ReadHeaderTimeout  time.Duration `yaml:"read_header_timeout"`
	ReadTimeout        time.Duration `yaml:"read_timeout"`
	WriteTimeout       time.Duration `yaml:"write_timeout"`
	IdleTimeout        time.Duration `yaml:"idle_timeout"`
	UpstreamTimeout    time.Duration `yaml:"upstream_timeout"`
	ShutdownTimeout    time.Duration `yaml:"shutdown_timeout"`
	MaxHeaderBytes     ByteSize      `yaml:"max_header_bytes"`
	GCPercent          int           `yaml:"gc_percent"`
	MinBodyRate        ByteSize      `yaml:"min_body_rate"`
	BodyWait           time.Duration `yaml:"body_wait"`
	MaxConns           int           `yaml:"max_conns"`

	// Drop-in mode (HTTPS_PROXY and the transparent listener); the CA lives
	// in StateDir unless CACert and CAKey name one.
	DropIn      bool     `yaml:"drop_in"`
	CACert      string   `yaml:"ca_cert"`
	CAKey       string   `yaml:"ca_key"`
	Passthrough []string `yaml:"passthrough"`
	Transparent string   `yaml:"transparent"`

	// The company's identity provider, for the legal two-person rule: with
	// LegalJWKS set, X-Data-Requester and X-Legal-Approver must be tokens it
	// signed, verified by the policy against these keys (package identity).
	LegalJWKS        string        `yaml:"legal_jwks"`         // a JWKS file, or its https:// URL
	LegalJWTAudience string        `yaml:"legal_jwt_audience"` // the tokens' aud
	LegalJWTIssuer   string        `yaml:"legal_jwt_issuer"`   // the tokens' iss
	LegalJWKSRefresh time.Duration `yaml:"legal_jwks_refresh"`
	LegalJWKSMaxAge  time.Duration `yaml:"legal_jwks_max_age"` // last good keys kept this long while reads fail

	// CompanyName and PrivacyContact name the controller and where a person
	// asks about their data, in the documents for the privacy office
	// (ledger report --for subject, ropa, datamap).
	CompanyName    string `yaml:"company_name"`
	PrivacyContact string `yaml:"privacy_contact"`

	mode string // modeServe or modeExtproc: which front end, by subcommand
}

// The front ends a Config runs.
const (
	modeServe   = "serve"
	modeExtproc = "extproc"
)

// defaultConfigFor is the default configuration of a subcommand: extproc
// listens for Envoy on 127.0.0.1:15002 and has no drop-in CA (Envoy
// terminates the apps' connections).
func defaultConfigFor(mode string) Config {
	c := defaultConfig()
	c.mode = mode
	if mode == modeExtproc {
		c.Listen = "127.0.0.1:15002"
		c.DropIn = false
	}
	return c
}

func defaultConfig() Config {
	return Config{
		Listen:             "127.0.0.1:15001",
		Admin:              "127.0.0.1:15000",
		Ledger:             "pare-ledger.jsonl",
		LedgerMaxBytes:     64 << 20,
		StateDir:           "pare-state",
		BundleDir:          "pare-bundle",
		BundleMinDelay:     bundle.DefaultMinDelay,
		BundleMaxDelay:     bundle.DefaultMaxDelay,
		BundleMaxBytes:     bundle.DefaultMaxBytes,
		LedgerRetain:       ledgerdb.DefaultRetain,
		CheckpointEvery:    ledger.DefaultCheckpointEvery,
		CheckpointInterval: ledger.DefaultCheckpointInterval,
		MaxBody:            10 << 20,
		MaxBodyMemory:      256 << 20,
		ConsentTTL:         30 * time.Second,
		LogFormat:          "text",
		LogLevel:           "info",
		MaxConnsPerVendor:  256,
		ReadHeaderTimeout:  10 * time.Second,
		ReadTimeout:        60 * time.Second,
		WriteTimeout:       120 * time.Second,
		IdleTimeout:        120 * time.Second,
		UpstreamTimeout:    30 * time.Second,
		ShutdownTimeout:    20 * time.Second,
		MaxHeaderBytes:     64 << 10,
		GCPercent:          defaultGCPercent,
		MinBodyRate:        64 << 10,
		BodyWait:           10 * time.Second,
		MaxConns:           4096,
		DropIn:             true,
		LegalJWKSRefresh:   identity.DefaultRefresh,
		LegalJWKSMaxAge:    identity.DefaultMaxAge,
	}
}

// loadConfigFile decodes path strictly over c: an unknown key is an error,
// because a misspelled setting silently ignored could mean a leak.
func loadConfigFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// validate reports every problem of the values themselves at once, without
// touching the filesystem or the network (preflight does that).
func (c *Config) validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen is empty"))
	}
	for _, l := range []struct{ key, addr string }{{"listen", c.Listen}, {"admin", c.Admin}, {"metrics_listen", c.MetricsListen}} {
		if l.addr == "" {
			continue
		}
		if err := checkListenAddr(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.key, err))
		}
	}
	// Port 0 asks for a free port per listener, so equal ":0" addresses
	// cannot collide.
	if c.Admin != "" && c.Admin == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		errs = append(errs, errors.New("admin must not share the egress listener's address"))
	}
	if c.MetricsListen != "" && !strings.HasSuffix(c.MetricsListen, ":0") &&
		(c.MetricsListen == c.Listen || c.MetricsListen == c.Admin) {
		errs = append(errs, errors.New("metrics_listen must not share the egress or admin listener's address"))
	}
	if c.Ledger == "" {
		errs = append(errs, errors.New("ledger is empty: every disclosure must be recorded"))
	}
	if c.StateDir == "" && c.LedgerKey == "" {
		errs = append(errs, errors.New("state_dir is empty and no ledger_key is given: the ledger's checkpoints need a signing key"))
	}
	if c.CheckpointEvery <= 0 {
		errs = append(errs, fmt.Errorf("checkpoint_every %d: want a positive number of records", c.CheckpointEvery))
	}
	if c.CheckpointInterval <= 0 {
		errs = append(errs, fmt.Errorf("checkpoint_interval %s: want a positive duration", c.CheckpointInterval))
	}
	if c.LedgerSink != "" {
		if _, err := pgx.ParseConfig(c.LedgerSink); err != nil {
			// pgx's message may quote the DSN, password included.
			errs = append(errs, errors.New("ledger_sink: not a PostgreSQL connection string (postgres://user@host/db)"))
		}
	}
	if c.LedgerCheckpoint != "" && c.LedgerCheckpoint == c.Ledger {
		errs = append(errs, errors.New("ledger_checkpoint must not be the ledger file"))
	}
	if c.MaxBody <= 0 {
		errs = append(errs, errors.New("max_body must be positive"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if n := countSet(c.Consents, c.ConsentURL, c.ConsentsDSN); n > 1 {
		errs = append(errs, errors.New("consents, consent_url and consents_dsn are exclusive"))
	}
	if c.Bundle != "" {
		if c.Policies != "" {
			errs = append(errs, errors.New("policies and bundle are exclusive: a sidecar takes its policy from one place"))
		}
		if len(c.BundleKeys) == 0 {
			errs = append(errs, errors.New("bundle needs bundle_key: the public key(s) bundles must be signed with"))
		}
		if c.BundleDir == "" {
			errs = append(errs, errors.New("bundle needs bundle_dir: where the last good bundle is kept for a restart"))
		}
	} else if len(c.BundleKeys) > 0 {
		errs = append(errs, errors.New("bundle_key is set but bundle is not"))
	}
	if (c.CACert == "") != (c.CAKey == "") {
		errs = append(errs, errors.New("ca_cert and ca_key go together"))
	}
	if c.DropIn && c.CACert == "" && c.StateDir == "" {
		errs = append(errs, errors.New("drop_in needs state_dir (where the CA is generated) or ca_cert and ca_key"))
	}
	if c.Transparent != "" && !c.DropIn {
		errs = append(errs, errors.New("transparent needs drop_in"))
	}
	if strings.ContainsAny(c.CompanyName+c.PrivacyContact, "\r\n") {
		errs = append(errs, errors.New("company_name and privacy_contact are one line each"))
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"consent_ttl", c.ConsentTTL}, {"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout},
		{"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}, {"upstream_timeout", c.UpstreamTimeout},
		{"shutdown_timeout", c.ShutdownTimeout}, {"legal_jwks_refresh", c.LegalJWKSRefresh}, {"legal_jwks_max_age", c.LegalJWKSMaxAge}} {
		// Zero would mean "no timeout" to net/http: a slow client could
		// then hold a connection, and its body memory, forever.
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration", d.key, d.v))
		}
	}
	if c.MaxConnsPerVendor <= 0 {
		errs = append(errs, fmt.Errorf("max_conns_per_vendor %d: want 1 or more", c.MaxConnsPerVendor))
	}
	if c.MaxHeaderBytes <= 0 {
		errs = append(errs, errors.New("max_header_bytes must be positive"))
	}
	if c.MaxBodyMemory <= 0 {
		errs = append(errs, errors.New("max_body_memory must be positive"))
	}
	if c.LegalJWKS != "" {
		if err := c.identityOptions().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("legal_jwks: %w", err))
		}
	} else if c.LegalJWTAudience != "" || c.LegalJWTIssuer != "" {
		errs = append(errs, errors.New("legal_jwt_audience and legal_jwt_issuer are set but legal_jwks is not: without the keys no token can be checked"))
	}
	if c.GCPercent < 0 {
		errs = append(errs, fmt.Errorf("gc_percent %d: want 0 (the runtime's default) or more", c.GCPercent))
	}
	return errors.Join(errs...)
}

// identityOptions are the options of the identity provider's keys; the
// caller adds what serve wires in (Install, metrics, logger).
func (c *Config) identityOptions() identity.Options {
	return identity.Options{Source: c.LegalJWKS, Audience: c.LegalJWTAudience, Issuer: c.LegalJWTIssuer,
		Refresh: c.LegalJWKSRefresh, MaxAge: c.LegalJWKSMaxAge}
}

// bundleDirUsed is the bundle directory when bundles are in use.
func (c *Config) bundleDirUsed() string {
	if c.Bundle == "" {
		return ""
	}
	return c.BundleDir
}

// ledgerKeyFile is the signing key's name in the state directory.
const ledgerKeyFile = "ledger.key"

func (c *Config) ledgerKeyPath() string {
	if c.LedgerKey != "" {
		return c.LedgerKey
	}
	return filepath.Join(c.StateDir, ledgerKeyFile)
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// checkListenAddr accepts HOST:PORT with a numeric port; HOST may be empty
// (every interface), an IP or a name. Names are resolved by preflight.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT: %w", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if strings.ContainsAny(host, " /\\") {
		return fmt.Errorf("%q: bad host %q", addr, host)
	}
	return nil
}

// parseLogLevel accepts exactly the four documented levels: a typo such as
// "verbose" must not silently mean info.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
}

// ByteSize is a size in bytes that also reads "10MiB", "512KiB", "1GiB".
type ByteSize int64

func parseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want bytes or a number with KiB, MiB, GiB", s)
	}
	return ByteSize(n * mult), nil
}

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func (b *ByteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *ByteSize) Set(s string) error {
	v, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
