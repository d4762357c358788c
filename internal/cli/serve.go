package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/proxy"
	"github.com/pare-dev/pare/policies"
)

func serveFlags(fs *flag.FlagSet, c *Config, configPath *string) {
	fs.StringVar(configPath, "config", "", "YAML config file (keys as the flags, with _ for -); flags override it")
	fs.StringVar(&c.Listen, "listen", c.Listen, "egress listener (the app's HTTP_PROXY)")
	fs.StringVar(&c.Admin, "admin", c.Admin, "admin listener: /metrics /healthz /readyz /debug/policy /debug/bundle (empty: off)")
	fs.StringVar(&c.Policies, "policies", c.Policies, "policies directory, hot reloaded (default: the bundled policies)")
	fs.StringVar(&c.Bundle, "bundle", c.Bundle, "URL of a signed policy bundle (proxy bundle build), polled instead of --policies")
	fs.Var((*listFlag)(&c.BundleKeys), "bundle-key", "PEM public key a bundle must be signed with (repeatable: key rotation)")
	fs.StringVar(&c.BundleDir, "bundle-dir", c.BundleDir, "directory keeping the last good bundle, used at start while the bundle server is down")
	fs.DurationVar(&c.BundleMinDelay, "bundle-min-delay", c.BundleMinDelay, "shortest wait between bundle polls (whole seconds)")
	fs.DurationVar(&c.BundleMaxDelay, "bundle-max-delay", c.BundleMaxDelay, "longest wait between bundle polls, and the longest retry backoff (whole seconds)")
	fs.DurationVar(&c.BundleLongPoll, "bundle-long-poll", c.BundleLongPoll, "ask the bundle server to hold each poll up to this long until the bundle changes (0: off)")
	fs.StringVar(&c.BundleCA, "bundle-ca", c.BundleCA, "PEM file of CA certificates for an https bundle server (default: the system's)")
	fs.StringVar(&c.BundleTokenFile, "bundle-token-file", c.BundleTokenFile, "file holding a bearer token for the bundle server, re-read on every poll")
	fs.Var(&c.BundleMaxBytes, "bundle-max-bytes", "largest bundle accepted, compressed or not")
	fs.StringVar(&c.Service, "service", c.Service, "this workload's service name (input.source.service)")
	fs.StringVar(&c.Ledger, "ledger", c.Ledger, "disclosure ledger file")
	fs.Var(&c.LedgerMaxBytes, "ledger-max-bytes", "rotate the ledger at this size")
	fs.StringVar(&c.HMACKeyFile, "hmac-key-file", c.HMACKeyFile, "file holding the master key for hmac transforms (default: random per process)")
	fs.Var((*listFlag)(&c.Resolve), "resolve", "HOST:PORT:ADDR — send that vendor's traffic to ADDR (repeatable; the TLS name checked stays HOST)")
	fs.Var((*listFlag)(&c.UpstreamCA), "upstream-ca", "PEM file of extra CA certificates to trust for vendors (repeatable)")
	fs.Var(&c.MaxBody, "max-body", "largest request body accepted (e.g. 10MiB); larger gets 413")
	fs.Var(&c.MaxBodyMemory, "max-body-memory", "body bytes all requests may hold at once (each is charged twice its size); others wait")
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "forward original payloads but record what would have been removed or refused")
	fs.StringVar(&c.Consents, "consents", c.Consents, "consents file (YAML or JSON), hot reloaded")
	fs.StringVar(&c.ConsentURL, "consent-url", c.ConsentURL, "consent service base URL: GET {url}/{subject}")
	fs.StringVar(&c.ConsentsDSN, "consents-dsn", c.ConsentsDSN, "PostgreSQL consents table (postgres://...; see consent.PostgresSchema), changes followed with LISTEN/NOTIFY")
	fs.DurationVar(&c.ConsentTTL, "consent-ttl", c.ConsentTTL, "how long a consent service (or database) answer is cached at most")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.IntVar(&c.MaxConnsPerVendor, "max-conns-per-vendor", c.MaxConnsPerVendor, "bound on concurrent upstream connections per vendor host")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", c.UpstreamTimeout, "how long to wait for a vendor's response headers (504 after)")
	fs.IntVar(&c.GCPercent, "gc-percent", c.GCPercent, "Go GC target percentage (GOGC in the environment overrides it; 0: the runtime's default)")
}

// defaultGCPercent is the GC target Pare runs with unless GOGC is set. Its
// live heap is small (3-5 MiB: the compiled policy and connection state), so
// at Go's default of 100 the heap target sits near the runtime's 4 MiB floor
// and the collector runs every few MiB allocated — about 30 times a second
// at 4,000 requests/s, which was a sixth of Pare's CPU in profiles. 400 runs
// it a quarter as often for some 15 MiB more heap; GOMEMLIMIT (the Helm
// chart sets it from the memory limit) still makes the GC work harder
// before the container's limit is reached.
const defaultGCPercent = 400

// applyGCPercent sets the GC target from the config unless the operator set
// GOGC, which the runtime has applied already and which wins, as for any Go
// program.
func applyGCPercent(c Config, log *slog.Logger) {
	if os.Getenv("GOGC") != "" || c.GCPercent <= 0 {
		return
	}
	debug.SetGCPercent(c.GCPercent)
	log.Debug("gc target set", "gc_percent", c.GCPercent)
}

func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	// Two passes: the first finds --config, the second applies the flags
	// over the file so that flags win.
	var configPath string
	scratch := defaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serveFlags(fs, &scratch, &configPath)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	c := defaultConfig()
	if configPath != "" {
		if err := loadConfigFile(configPath, &c); err != nil {
			fmt.Fprintln(stderr, "proxy serve:", err)
			return exitUsage
		}
	}
	fs = flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serveFlags(fs, &c, &configPath)
	_ = fs.Parse(args)
	if err := c.validate(); err != nil {
		fmt.Fprintln(stderr, "proxy serve: config:", err)
		return exitUsage
	}
	log := newLogger(stderr, c.LogFormat, c.LogLevel)
	if err := serve(ctx, c, log, nil); err != nil {
		log.Error("serve failed", "err", err)
		return exitFail
	}
	return exitOK
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listening reports the bound addresses (for the demo and tests, which
// listen on port 0).
type listening func(egress, admin string)

// serve runs the proxy until ctx is done, then drains in-flight requests and
// closes the ledger.
func serve(ctx context.Context, c Config, log *slog.Logger, ready listening) error {
	applyGCPercent(c, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := proxy.NewMetrics(reg)

	var hmacKey []byte
	if c.HMACKeyFile != "" {
		b, err := os.ReadFile(c.HMACKeyFile)
		if err != nil {
			return fmt.Errorf("hmac key: %w", err)
		}
		hmacKey = []byte(strings.TrimSpace(string(b)))
		if len(hmacKey) < 16 {
			return fmt.Errorf("hmac key %s: at least 16 bytes wanted", c.HMACKeyFile)
		}
	} else {
		log.Warn("no --hmac-key-file: hmac pseudonyms use a random key and change on restart")
	}
	eng, err := engine.New(engine.Options{HMACKey: hmacKey})
	if err != nil {
		return err
	}
	swapped := func(p *engine.Policy) {
		metrics.Revision.Reset()
		metrics.Revision.WithLabelValues(p.Revision).Set(1)
		metrics.LastReload.SetToCurrentTime()
	}
	var pol *engine.Policy
	var bundles *bundle.Source
	switch {
	case c.Bundle != "":
		// No built-in fallback: until a signed bundle (or the persisted
		// last good one) is active, every request is refused.
		bundles, err = newBundleSource(c, eng, metrics, reg, log, swapped)
		if err != nil {
			return err
		}
		if err := bundles.Restore(ctx); errors.Is(err, fs.ErrNotExist) {
			log.Info("no persisted bundle: every request is refused until the bundle server answers", "dir", c.BundleDir)
		}
	case c.Policies == "":
		pol, err = engine.Load(ctx, policies.FS, engine.LoadOptions{})
	default:
		pol, err = engine.LoadDir(ctx, c.Policies, engine.LoadOptions{})
	}
	if bundles != nil {
		// The bundle source activates, logs and counts by itself.
	} else if err != nil {
		// Start anyway and refuse with 503 until a valid policy arrives:
		// /readyz tells the orchestrator, and the watcher may fix it.
		metrics.Reloads.WithLabelValues("failure").Inc()
		log.Error("policy not loaded: every request is refused until it is fixed", "err", err)
	} else {
		metrics.Reloads.WithLabelValues("success").Inc()
		eng.Swap(pol)
		swapped(pol)
		log.Info("policy loaded", "revision", pol.Revision[:12], "files", len(pol.Files), "vendors", len(pol.Vendors))
	}

	fsyncSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "pare", Subsystem: "ledger", Name: "fsync_duration_seconds",
		Help:    "Time of each ledger fsync: the disk latency a durable record adds to requests.",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14), // 25 µs to 200 ms
	})
	reg.MustRegister(fsyncSeconds)
	led, err := ledger.Open(c.Ledger, ledger.Options{
		MaxBytes: int64(c.LedgerMaxBytes), Logger: log,
		ObserveSync: func(d time.Duration) { fsyncSeconds.Observe(d.Seconds()) },
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer func() {
		if err := led.Close(); err != nil {
			log.Error("ledger close", "err", err)
		}
	}()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "records_total",
			Help: "Ledger records made durable (disclosures, refusals and outcomes).",
		}, func() float64 { return float64(led.Stats().Records) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "fsyncs_total",
			Help: "Successful ledger fsyncs; fsyncs ÷ records is how well group commit batches.",
		}, func() float64 { return float64(led.Stats().Batches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "rotations_total",
			Help: "Ledger files rotated by size.",
		}, func() float64 { return float64(led.Stats().Rotations) }),
	)

	var src consent.Source
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	switch {
	case c.Consents != "":
		f, err := consent.OpenFile(c.Consents, log)
		if err != nil {
			return err
		}
		src = f
		wg.Add(1)
		go func() { defer wg.Done(); _ = f.Watch(ctx) }()
	case c.ConsentURL != "":
		h, err := consent.NewHTTP(c.ConsentURL, consent.HTTPOptions{TTL: c.ConsentTTL})
		if err != nil {
			return err
		}
		src = h
	case c.ConsentsDSN != "":
		pg, err := consent.OpenPostgres(ctx, c.ConsentsDSN, consent.PostgresOptions{TTL: c.ConsentTTL, Logger: log})
		if err != nil {
			return err
		}
		src = pg
		wg.Add(1)
		go func() { defer wg.Done(); pg.Run(ctx) }()
		defer func() { cancel(); wg.Wait(); pg.Close() }()
	}

	resolve := map[string]string{}
	for _, r := range c.Resolve {
		hp, addr, err := proxy.ParseResolve(r)
		if err != nil {
			return err
		}
		resolve[hp] = addr
	}
	px, err := proxy.New(proxy.Config{
		Engine: eng, Ledger: led, Consents: src, Metrics: metrics, Logger: log,
		Service: c.Service, MaxBody: int64(c.MaxBody), BodyMemory: int64(c.MaxBodyMemory), DryRun: c.DryRun,
		Upstream: proxy.UpstreamOptions{
			Resolve: resolve, ExtraCAs: c.UpstreamCA, MaxConnsPerVendor: c.MaxConnsPerVendor,
			ResponseHeaderTimeout: c.UpstreamTimeout,
		},
	})
	if err != nil {
		return err
	}
	defer px.Close()

	if bundles != nil {
		wg.Add(1)
		go func() { defer wg.Done(); bundles.Run(ctx) }()
	}
	if c.Policies != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := eng.Watch(ctx, c.Policies, engine.LoadOptions{}, func(p *engine.Policy, err error) {
				if err != nil {
					metrics.Reloads.WithLabelValues("failure").Inc()
					log.Error("policy reload failed: keeping the last good policy", "err", err)
					return
				}
				metrics.Reloads.WithLabelValues("success").Inc()
				swapped(p)
				log.Info("policy reloaded", "revision", p.Revision[:12], "files", len(p.Files))
			})
			if err != nil {
				log.Error("policy watcher stopped", "err", err)
			}
		}()
	}

	egressLn, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("egress listener: %w", err)
	}
	egress := &http.Server{
		Handler:           px,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    int(c.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	servers := []*http.Server{egress}
	errc := make(chan error, 2)
	go func() { errc <- egress.Serve(egressLn) }()
	adminAddr := ""
	if c.Admin != "" {
		adminLn, err := net.Listen("tcp", c.Admin)
		if err != nil {
			egress.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		adminAddr = adminLn.Addr().String()
		var handler http.Handler = proxy.AdminHandler(eng, reg)
		if bundles != nil {
			mux := http.NewServeMux()
			mux.Handle("GET /debug/bundle", bundles)
			mux.Handle("/", handler)
			handler = mux
		}
		admin := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, admin)
		go func() { errc <- admin.Serve(adminLn) }()
	}
	log.Info("pare listening", "egress", egressLn.Addr().String(), "admin", adminAddr,
		"service", c.Service, "ledger", c.Ledger, "dry_run", c.DryRun)
	if ready != nil {
		ready(egressLn.Addr().String(), adminAddr)
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			for _, s := range servers {
				s.Close()
			}
			return err
		}
	}
	log.Info("shutting down: draining in-flight requests")
	sctx, scancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer scancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "err", err)
		}
	}
	return nil
}
