package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pare-dev/pare/internal/buildinfo"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/proxy"
	"github.com/pare-dev/pare/policies"
)

func newServeFlagSet(c *Config, configPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, c, configPath)
	return fs
}

func serveFlags(fs *flag.FlagSet, c *Config, configPath *string) {
	fs.StringVar(configPath, "config", "", "YAML config file (keys as the flags, with _ for -); flags override it")
	fs.StringVar(&c.Listen, "listen", c.Listen, "egress listener (the app's HTTP_PROXY)")
	fs.StringVar(&c.Admin, "admin", c.Admin, "admin listener: /metrics /healthz /readyz /debug/policy, /debug/pprof/ with --pprof (empty: off)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "listener serving only /metrics /healthz /readyz, for Prometheus and probes when admin stays on loopback (empty: off)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/ on the admin listener")
	fs.StringVar(&c.Policies, "policies", c.Policies, "policies directory, hot reloaded (default: the bundled policies)")
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
	fs.DurationVar(&c.ConsentTTL, "consent-ttl", c.ConsentTTL, "how long a consent service answer is cached")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.IntVar(&c.MaxConnsPerVendor, "max-conns-per-vendor", c.MaxConnsPerVendor, "bound on concurrent upstream connections per vendor host")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", c.UpstreamTimeout, "how long to wait for a vendor's response headers (504 after)")
	fs.IntVar(&c.GCPercent, "gc-percent", c.GCPercent, "Go GC target percentage (GOGC in the environment overrides it; 0: the runtime's default)")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "how long an app may take to send a request's headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "how long an app may take to send a whole request")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "how long answering a request may take, vendor included")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long an idle keep-alive connection from the app stays open")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
	fs.Var(&c.MaxHeaderBytes, "max-header-bytes", "largest request header block accepted (431 beyond)")
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
	fs := newServeFlagSet(&scratch, &configPath)
	fs.SetOutput(stderr)
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
	fs = newServeFlagSet(&c, &configPath)
	fs.SetOutput(io.Discard)
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
	lv, _ := parseLogLevel(level) // validated with the config
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listening reports the bound addresses (for the demo and tests, which
// listen on port 0); "" for a listener that is off.
type listening func(egress, admin, metrics string)

// serve runs the proxy until ctx is done, then drains in-flight requests and
// closes the ledger.
func serve(ctx context.Context, c Config, log *slog.Logger, ready listening) error {
	pre, err := c.preflight(ctx, log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	applyGCPercent(c, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Get().Collector())
	metrics := proxy.NewMetrics(reg)
	reloads := newReloads(reg, metrics, log)

	if c.HMACKeyFile == "" {
		log.Warn("no --hmac-key-file: hmac pseudonyms use a random key and change on restart")
	}
	eng, err := engine.New(engine.Options{HMACKey: pre.hmacKey})
	if err != nil {
		return err
	}
	var pol *engine.Policy
	if c.Policies == "" {
		pol, err = engine.Load(ctx, policies.FS, engine.LoadOptions{})
	} else {
		pol, err = engine.LoadDir(ctx, c.Policies, engine.LoadOptions{})
	}
	if err != nil {
		// Start anyway and refuse with 503 until a valid policy arrives:
		// /readyz tells the orchestrator, and the watcher may fix it.
		reloads.failed(err, true)
	} else {
		eng.Swap(pol)
		reloads.loaded(pol, true)
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
	case pre.consentFile != nil:
		f := pre.consentFile
		src = f
		wg.Add(1)
		go func() { defer wg.Done(); _ = f.Watch(ctx) }()
	case pre.consentHTTP != nil:
		src = pre.consentHTTP
	}
	resolve := pre.resolve
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

	if c.Policies != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := eng.Watch(ctx, c.Policies, engine.LoadOptions{}, func(p *engine.Policy, err error) {
				if err != nil {
					reloads.failed(err, false)
					return
				}
				reloads.loaded(p, false)
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
	errc := make(chan error, 3)
	go func() { errc <- egress.Serve(egressLn) }()
	adminAddr := ""
	if c.Admin != "" {
		adminLn, err := net.Listen("tcp", c.Admin)
		if err != nil {
			egress.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		adminAddr = adminLn.Addr().String()
		admin := &http.Server{Handler: adminHandler(eng, reg, c.Pprof), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, admin)
		go func() { errc <- admin.Serve(adminLn) }()
	}
	metricsAddr := ""
	if c.MetricsListen != "" {
		ln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			return fmt.Errorf("metrics listener: %w", err)
		}
		metricsAddr = ln.Addr().String()
		m := &http.Server{Handler: metricsHandler(eng, reg), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, m)
		go func() { errc <- m.Serve(ln) }()
	}
	log.Info("pare listening", "egress", egressLn.Addr().String(), "admin", adminAddr, "metrics", metricsAddr,
		"service", c.Service, "ledger", c.Ledger, "dry_run", c.DryRun)
	if ready != nil {
		ready(egressLn.Addr().String(), adminAddr, metricsAddr)
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
