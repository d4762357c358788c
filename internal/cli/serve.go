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
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/pare-dev/pare/internal/buildinfo"
	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/ca"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/extproc"
	"github.com/pare-dev/pare/internal/identity"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pipeline"
	"github.com/pare-dev/pare/internal/proxy"
	"github.com/pare-dev/pare/policies"
)

func newServeFlagSet(c *Config, configPath *string) *flag.FlagSet {
	return newFrontEndFlagSet(modeServe, c, configPath)
}

func newFrontEndFlagSet(mode string, c *Config, configPath *string) *flag.FlagSet {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	serveFlags(fs, c, configPath)
	return fs
}

func serveFlags(fs *flag.FlagSet, c *Config, configPath *string) {
	fs.StringVar(configPath, "config", "", "YAML config file (keys as the flags, with _ for -); flags override it")
	fs.StringVar(&c.Listen, "listen", c.Listen, "egress listener (the app's HTTP_PROXY)")
	fs.StringVar(&c.Admin, "admin", c.Admin, "admin listener: /metrics /healthz /readyz /debug/policy /debug/bundle /debug/ledger/checkpoint, /debug/pprof/ with --pprof (empty: off)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "listener serving only /metrics /healthz /readyz, for Prometheus and probes when admin stays on loopback (empty: off)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/ on the admin listener")
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
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for what the sidecar generates once and keeps (the ledger's signing key, the drop-in CA)")
	fs.StringVar(&c.LedgerKey, "ledger-key", c.LedgerKey, "ledger checkpoint signing key (default STATE-DIR/"+ledgerKeyFile+", created on first start)")
	fs.StringVar(&c.LedgerCheckpoint, "ledger-checkpoint", c.LedgerCheckpoint, "witness file replaced by every signed checkpoint: put it on another volume than the ledger")
	fs.StringVar(&c.LedgerSink, "ledger-sink", c.LedgerSink, "ship the ledger to this PostgreSQL database (postgres://user@host/db; password from PGPASSWORD or PGPASSFILE), off the request path")
	fs.DurationVar(&c.LedgerRetain, "ledger-retain", c.LedgerRetain, "with --ledger-sink: delete a rotated ledger file this long after it was shipped (negative: never)")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", c.CheckpointEvery, "sign a ledger checkpoint after this many records")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", c.CheckpointInterval, "sign a ledger checkpoint at least this often while records arrive")
	fs.StringVar(&c.HMACKeyFile, "hmac-key-file", c.HMACKeyFile, "file holding the master key for hmac transforms (default: random per process)")
	fs.Var((*listFlag)(&c.Resolve), "resolve", "HOST:PORT:ADDR — send that vendor's traffic to ADDR (repeatable; the TLS name checked stays HOST)")
	fs.Var((*listFlag)(&c.UpstreamCA), "upstream-ca", "PEM file of extra CA certificates to trust for vendors (repeatable)")
	fs.Var(&c.MaxBody, "max-body", "largest request body accepted (e.g. 10MiB); larger gets 413")
	fs.Var(&c.MaxBodyMemory, "max-body-memory", "body bytes all requests may hold at once (charged as they arrive, about twice a body's size); others wait")
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
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "how long an app may take to send a request's headers")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "how long an app may take to send a whole request")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "how long answering a request may take, vendor included")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "how long an idle keep-alive connection from the app stays open")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
	fs.Var(&c.MaxHeaderBytes, "max-header-bytes", "largest request header block accepted (431 beyond)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "most app connections the egress and transparent listeners hold at once; more wait in the kernel's accept queue (0: no limit)")
	fs.DurationVar(&c.BodyWait, "body-wait", c.BodyWait, "how long a request waits for body memory (--max-body-memory) before 503 overloaded")
	fs.Var(&c.MinBodyRate, "min-body-rate", "slowest a request body may arrive (bytes/s averaged, after 5s); slower senders get 408 (0: off)")
	fs.BoolVar(&c.DropIn, "drop-in", c.DropIn, "intercept CONNECT tunnels (HTTPS_PROXY) to contract hosts with a local CA")
	fs.StringVar(&c.CACert, "ca-cert", c.CACert, "PEM CA certificate for drop-in mode (default: generated in --state-dir)")
	fs.StringVar(&c.CAKey, "ca-key", c.CAKey, "PEM key of --ca-cert (mode 0600)")
	fs.Var((*listFlag)(&c.Passthrough), "passthrough", "HOST that CONNECT may tunnel without inspection when no contract names it (repeatable)")
	fs.StringVar(&c.CompanyName, "company-name", c.CompanyName, "the company, named in the privacy office's documents (ledger report --for subject, ropa, datamap)")
	fs.StringVar(&c.PrivacyContact, "privacy-contact", c.PrivacyContact, "where a person asks about their data, named in those documents")
	fs.StringVar(&c.LegalJWKS, "legal-jwks", c.LegalJWKS, "the identity provider's keys (a JWKS file, or its https:// URL): X-Data-Requester and X-Legal-Approver must then be tokens it signed")
	fs.StringVar(&c.LegalJWTAudience, "legal-jwt-audience", c.LegalJWTAudience, "with --legal-jwks: the audience (aud) the tokens must be issued for")
	fs.StringVar(&c.LegalJWTIssuer, "legal-jwt-issuer", c.LegalJWTIssuer, "with --legal-jwks: the issuer (iss) the tokens must come from")
	fs.DurationVar(&c.LegalJWKSRefresh, "legal-jwks-refresh", c.LegalJWKSRefresh, "how often the identity provider's keys are read again")
	fs.DurationVar(&c.LegalJWKSMaxAge, "legal-jwks-max-age", c.LegalJWKSMaxAge, "how long the last keys read stay in force while reading them fails; then legal requests are refused (503 identity_unavailable)")
	fs.StringVar(&c.Transparent, "transparent", c.Transparent, "TLS listener for connections redirected to Pare (e.g. 127.0.0.1:15006); the vendor is the SNI")
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

// memoryLimit is the soft memory limit Pare sets unless GOMEMLIMIT is set.
// The body budget bounds the body bytes live at once, not the garbage the
// GC lets pile up before it runs: at a GC target of 400 a full budget
// (256 MiB live) let the heap grow to five times that, and 64 concurrent
// 10 MiB uploads took Pare to 0.93–1.14 GiB of RSS where it had been 370
// MiB. A soft limit of the budget plus 256 MiB for everything else (the
// pooled buffers, connections, the policy) makes the GC work harder only
// while large bodies are in flight; small requests keep the cheap target.
// Measured on that check: 404–530 MiB at 400–512 MiB, no slower.
// GOMEMLIMIT (the Helm chart sets it from the container's memory limit,
// "off" for none) wins, as for any Go program.
func memoryLimit(c Config) int64 { return int64(c.MaxBodyMemory) + 256<<20 }

func applyMemoryLimit(c Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(memoryLimit(c))
	log.Debug("soft memory limit set", "bytes", memoryLimit(c))
}

func runServe(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	return runFrontEnd(ctx, args, stderr, modeServe)
}

// runExtproc is serve with the Envoy ext_proc gRPC server in place of the
// HTTP listeners: the same flags, pipeline, ledger and admin endpoints.
func runExtproc(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	return runFrontEnd(ctx, args, stderr, modeExtproc)
}

func runFrontEnd(ctx context.Context, args []string, stderr io.Writer, mode string) int {
	// Two passes: the first finds --config, the second applies the flags
	// over the file so that flags win.
	var configPath string
	scratch := defaultConfigFor(mode)
	fs := newFrontEndFlagSet(mode, &scratch, &configPath)
	fs.SetOutput(stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	c := defaultConfigFor(mode)
	if configPath != "" {
		if err := loadConfigFile(configPath, &c); err != nil {
			fmt.Fprintf(stderr, "proxy %s: %v\n", mode, err)
			return exitUsage
		}
	}
	fs = newFrontEndFlagSet(mode, &c, &configPath)
	fs.SetOutput(io.Discard)
	_ = fs.Parse(args)
	if err := c.validate(); err != nil {
		fmt.Fprintf(stderr, "proxy %s: config: %v\n", mode, err)
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
	applyMemoryLimit(c, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Get().Collector())
	metrics := pipeline.NewMetrics(reg)
	reloads := newReloads(reg, metrics, log)

	hmacKey := pre.hmacKey
	if hmacKey == nil {
		log.Warn("no --hmac-key-file: hmac pseudonyms use a random key and change on restart")
	}
	eng, err := engine.New(engine.Options{HMACKey: hmacKey})
	if err != nil {
		return err
	}
	var idKeys *identity.Keys
	if c.LegalJWKS != "" {
		// Before any policy is installed: from the first request on, the
		// policy knows legal requests need tokens, keys read or not.
		opt := c.identityOptions()
		opt.Install, opt.Registerer, opt.Logger = eng.SetData, reg, log
		if idKeys, err = identity.New(opt); err != nil {
			return fmt.Errorf("legal_jwks: %w", err)
		}
		if err := idKeys.Start(ctx); err != nil {
			return err
		}
	}
	swapped := func(p *engine.Policy) { reloads.loaded(p, false) }
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
	signer, vkey, created, err := ledger.LoadOrCreateKey(c.ledgerKeyPath())
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if created {
		log.Warn("ledger signing key created: give its public key to whoever verifies the ledger ('proxy ledger pubkey')",
			"key_file", c.ledgerKeyPath(), "pubkey", vkey)
	}
	if c.LedgerCheckpoint == "" {
		log.Warn("no --ledger-checkpoint: signed checkpoints are kept beside the ledger and served on the admin listener only")
	}
	led, err := ledger.Open(c.Ledger, ledger.Options{
		MaxBytes: int64(c.LedgerMaxBytes), Logger: log,
		ObserveSync: func(d time.Duration) { fsyncSeconds.Observe(d.Seconds()) },
		Signer:      signer, CheckpointEvery: c.CheckpointEvery, CheckpointInterval: c.CheckpointInterval,
		WitnessPath: c.LedgerCheckpoint,
	})
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	sink, err := newLedgerSink(c, led, signer, reg, log)
	if err != nil {
		_ = led.Close()
		return err
	}
	defer sink.drain(c.ShutdownTimeout) // after Close below: ships the last records and the final checkpoint
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "relocations_total",
			Help: "New ledger files started because the file was deleted, renamed or replaced under the proxy (its records were saved).",
		}, func() float64 { return float64(led.Stats().Relocations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "checkpoints_total",
			Help: "Signed ledger checkpoints written.",
		}, func() float64 { return float64(led.Stats().Checkpoints) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "checkpoint_errors_total",
			Help: "Ledger checkpoints that could not be written to the checkpoint log or the witness file.",
		}, func() float64 { return float64(led.Stats().CheckpointErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "checkpoint_records",
			Help: "Records covered by the latest signed checkpoint (compare with records_total to see what is not yet signed).",
		}, func() float64 {
			if cp := led.Checkpoint(); cp != nil {
				return float64(cp.Size)
			}
			return 0
		}),
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

	resolve := pre.resolve
	var pathKey []byte // random per process without an hmac key: path hashes then match within one run only
	if hmacKey != nil {
		pathKey = pipeline.PathKey(hmacKey)
	}
	pl, err := pipeline.New(pipeline.Config{
		Engine: eng, Ledger: led, Consents: src, Metrics: metrics, Logger: log, PathKey: pathKey,
		Service: c.Service, MaxBody: int64(c.MaxBody), BodyMemory: int64(c.MaxBodyMemory), BodyWait: c.BodyWait, DryRun: c.DryRun,
		LegalTokens: idKeys != nil,
	})
	if err != nil {
		return err
	}
	var dropIn *ca.CA
	if c.DropIn {
		if dropIn, err = openCA(c, eng.Policy()); err != nil {
			return err
		}
		if dropIn == nil {
			log.Error("drop-in mode off: no valid policy to constrain a new CA to; fix the policy and restart")
		} else if dropIn.Generated {
			log.Info("drop-in CA generated: apps must trust it (proxy ca export)", "state_dir", c.StateDir,
				"constrained_to", dropIn.Certificate().PermittedDNSDomains)
		}
	}
	limits := proxy.ServerLimits{
		ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		IdleTimeout: c.IdleTimeout, MaxHeaderBytes: int(c.MaxHeaderBytes),
	}
	minRate := int64(c.MinBodyRate)
	if minRate == 0 {
		minRate = -1
	}
	// The front ends: the HTTP egress listener (and, in drop-in mode, the
	// transparent TLS listener) for serve, the ext_proc gRPC server for
	// extproc. Both drive the same pipeline.
	var fronts []*frontEnd
	switch c.mode {
	case modeExtproc:
		fe, err := extprocFront(c, pl)
		if err != nil {
			return err
		}
		fronts = append(fronts, fe)
	default:
		px, err := proxy.New(proxy.Config{
			Pipeline: pl, CA: dropIn, Passthrough: c.Passthrough, Tunnels: proxy.NewTunnelMetrics(reg), Limits: limits,
			MinBodyRate: minRate,
			Upstream: proxy.UpstreamOptions{
				Resolve: resolve, ExtraCAs: c.UpstreamCA, MaxConnsPerVendor: c.MaxConnsPerVendor,
				ResponseHeaderTimeout: c.UpstreamTimeout,
			},
		})
		if err != nil {
			return err
		}
		defer px.Close()
		egressLn, err := listen(c.Listen, c.MaxConns)
		if err != nil {
			return fmt.Errorf("egress listener: %w", err)
		}
		fronts = append(fronts, httpFront("egress", egressLn, limits.Server(px, log)))
		if c.Transparent != "" && dropIn != nil {
			tln, err := listen(c.Transparent, c.MaxConns)
			if err != nil {
				closeFronts(fronts)
				return fmt.Errorf("transparent listener: %w", err)
			}
			fronts = append(fronts, &frontEnd{name: "transparent", addr: tln.Addr().String(),
				serve: func() error { return px.ServeTransparent(tln) },
				shutdown: func(ctx context.Context) error {
					tln.Close()
					return px.Shutdown(ctx)
				},
				close: func() { tln.Close() },
			})
		}
	}

	if bundles != nil {
		wg.Add(1)
		go func() { defer wg.Done(); bundles.Run(ctx) }()
	}
	if idKeys != nil {
		wg.Add(1)
		go func() { defer wg.Done(); idKeys.Run(ctx) }()
	}
	sink.start(ctx, &wg)
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

	adminAddr := ""
	if c.Admin != "" {
		adminLn, err := net.Listen("tcp", c.Admin)
		if err != nil {
			closeFronts(fronts)
			return fmt.Errorf("admin listener: %w", err)
		}
		adminAddr = adminLn.Addr().String()
		var handler http.Handler = ledgerAdmin(led, adminHandler(eng, reg, c.Pprof))
		if bundles != nil {
			mux := http.NewServeMux()
			mux.Handle("GET /debug/bundle", bundles)
			mux.Handle("/", handler)
			handler = mux
		}
		admin := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		fronts = append(fronts, httpFront("admin", adminLn, admin))
	}
	metricsAddr := ""
	if c.MetricsListen != "" {
		ln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			closeFronts(fronts)
			return fmt.Errorf("metrics listener: %w", err)
		}
		metricsAddr = ln.Addr().String()
		m := &http.Server{Handler: ledgerAdmin(led, metricsHandler(eng, reg)), ReadHeaderTimeout: 5 * time.Second}
		fronts = append(fronts, httpFront("metrics", ln, m))
	}
	errc := make(chan error, len(fronts))
	for _, fe := range fronts {
		go func() { errc <- fe.serve() }()
	}
	addr := func(name string) string {
		for _, fe := range fronts {
			if fe.name == name {
				return fe.addr
			}
		}
		return ""
	}
	log.Info("pare listening", "egress", addr("egress"), "extproc", addr("extproc"), "admin", adminAddr, "metrics", metricsAddr,
		"transparent", addr("transparent"), "service", c.Service, "ledger", c.Ledger, "ledger_origin", led.Origin(), "dry_run", c.DryRun)
	if ready != nil {
		ready(fronts[0].addr, adminAddr, metricsAddr)
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			closeFronts(fronts)
			return err
		}
	}
	log.Info("shutting down: draining in-flight requests")
	sctx, scancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer scancel()
	for _, fe := range fronts {
		if err := fe.shutdown(sctx); err != nil {
			log.Warn("shutdown", "listener", fe.name, "err", err)
		}
	}
	return nil
}

// frontEnd is one of serve's listeners, with one lifecycle: serve until
// shut down (drain) or closed (abort).
type frontEnd struct {
	name, addr string
	serve      func() error
	shutdown   func(context.Context) error
	close      func()
}

func httpFront(name string, ln net.Listener, srv *http.Server) *frontEnd {
	return &frontEnd{name: name, addr: ln.Addr().String(),
		serve:    func() error { return srv.Serve(ln) },
		shutdown: srv.Shutdown,
		close:    func() { srv.Close() },
	}
}

func closeFronts(fronts []*frontEnd) {
	for _, fe := range fronts {
		fe.close()
	}
}

// listen opens a TCP listener holding at most max connections (0: no
// limit); more wait in the kernel's accept queue.
func listen(addr string, max int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if max > 0 {
		return &limitListener{TCPListener: ln.(*net.TCPListener), sem: make(chan struct{}, max), done: make(chan struct{})}, nil
	}
	return ln, nil
}

// limitListener is netutil.LimitListener keeping the accepted connection a
// TCP connection: net/http half-closes a connection it refuses (431, 400)
// and lingers so the client reads the answer, which it can only do with
// CloseWrite — netutil's wrapper hides it, and clients then got a reset
// instead of the status.
type limitListener struct {
	*net.TCPListener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.TCPListener.AcceptTCP()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{TCPConn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.TCPListener.Close()
}

type limitedConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}

// extprocFront is the Envoy ext_proc gRPC server on c.Listen. A message
// carries a whole buffered body (or its filtered form), so the gRPC limits
// are the body limit plus room for the headers.
func extprocFront(c Config, pl *pipeline.Pipeline) (*frontEnd, error) {
	ln, err := listen(c.Listen, c.MaxConns)
	if err != nil {
		return nil, fmt.Errorf("extproc listener: %w", err)
	}
	msg := int(c.MaxBody) + int(c.MaxBody)/8 + 1<<20
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(msg), grpc.MaxSendMsgSize(msg))
	extprocv3.RegisterExternalProcessorServer(gs, extproc.New(pl))
	return &frontEnd{name: "extproc", addr: ln.Addr().String(),
		serve: func() error { return gs.Serve(ln) },
		shutdown: func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { gs.GracefulStop(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				gs.Stop()
				return ctx.Err()
			}
		},
		close: gs.Stop,
	}, nil
}

// openCA opens the drop-in CA, generating it constrained to the hosts of
// pol's contracts when there is none. Without a policy a new CA could not
// be constrained, so none is generated (nil, nil).
func openCA(c Config, pol *engine.Policy) (*ca.CA, error) {
	opt := ca.Options{StateDir: c.StateDir, CertFile: c.CACert, KeyFile: c.CAKey}
	if c.CACert == "" {
		if pol == nil {
			if _, err := os.Stat(filepath.Join(c.StateDir, ca.KeyFile)); err != nil {
				return nil, nil
			}
		} else {
			opt.Hosts = policyHosts(pol)
		}
	}
	return ca.Open(opt)
}

func policyHosts(pol *engine.Policy) []string {
	var hosts []string
	for _, hs := range pol.Vendors {
		hosts = append(hosts, hs...)
	}
	return hosts
}

// ledgerAdmin puts the ledger on the admin listener in front of next: the
// latest signed checkpoint at /debug/ledger/checkpoint (a witness anyone
// with admin access can keep), and /readyz answering 503 while the ledger
// cannot write — every disclosure is refused then, so the sidecar is not
// ready. Everything else goes to next.
func ledgerAdmin(led *ledger.Ledger, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := led.Err(); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			// The error names the ledger path, nothing of any record.
			fmt.Fprintf(w, "ledger unavailable: %v\n", err)
			return
		}
		next.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /debug/ledger/checkpoint", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		cp := led.Checkpoint()
		if cp == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("no checkpoint written yet\n"))
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(cp.Note)
	})
	return mux
}
