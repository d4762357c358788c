package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the serve configuration: a YAML file (--config) whose keys match
// the flags; flags given on the command line override it.
type Config struct {
	Listen            string        `yaml:"listen"`
	Admin             string        `yaml:"admin"`
	MetricsListen     string        `yaml:"metrics_listen"` // /metrics, /healthz, /readyz only
	Pprof             bool          `yaml:"pprof"`          // /debug/pprof/ on the admin listener
	Policies          string        `yaml:"policies"`       // "" = the bundled policies
	Service           string        `yaml:"service"`
	Ledger            string        `yaml:"ledger"`
	LedgerMaxBytes    ByteSize      `yaml:"ledger_max_bytes"`
	HMACKeyFile       string        `yaml:"hmac_key_file"`
	Resolve           []string      `yaml:"resolve"`
	UpstreamCA        []string      `yaml:"upstream_ca"`
	MaxBody           ByteSize      `yaml:"max_body"`
	MaxBodyMemory     ByteSize      `yaml:"max_body_memory"`
	DryRun            bool          `yaml:"dry_run"`
	Consents          string        `yaml:"consents"`    // consents file
	ConsentURL        string        `yaml:"consent_url"` // consent service
	ConsentTTL        time.Duration `yaml:"consent_ttl"`
	LogFormat         string        `yaml:"log_format"`
	LogLevel          string        `yaml:"log_level"`
	MaxConnsPerVendor int           `yaml:"max_conns_per_vendor"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	UpstreamTimeout   time.Duration `yaml:"upstream_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	MaxHeaderBytes    ByteSize      `yaml:"max_header_bytes"`
	GCPercent         int           `yaml:"gc_percent"`
}

func defaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:15001",
		Admin:             "127.0.0.1:15000",
		Ledger:            "pare-ledger.jsonl",
		LedgerMaxBytes:    64 << 20,
		MaxBody:           10 << 20,
		MaxBodyMemory:     256 << 20,
		ConsentTTL:        30 * time.Second,
		LogFormat:         "text",
		LogLevel:          "info",
		MaxConnsPerVendor: 256,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		UpstreamTimeout:   30 * time.Second,
		ShutdownTimeout:   20 * time.Second,
		MaxHeaderBytes:    64 << 10,
		GCPercent:         defaultGCPercent,
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
	if c.MaxBody <= 0 {
		errs = append(errs, errors.New("max_body must be positive"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"consent_ttl", c.ConsentTTL}, {"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout},
		{"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}, {"upstream_timeout", c.UpstreamTimeout},
		{"shutdown_timeout", c.ShutdownTimeout}} {
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
	if c.Consents != "" && c.ConsentURL != "" {
		errs = append(errs, errors.New("consents and consent_url are exclusive"))
	}
	if c.GCPercent < 0 {
		errs = append(errs, fmt.Errorf("gc_percent %d: want 0 (the runtime's default) or more", c.GCPercent))
	}
	return errors.Join(errs...)
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
