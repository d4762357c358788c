package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/proxy"
	"github.com/pare-dev/pare/internal/xds"
	"github.com/pare-dev/pare/policies"
)

// runXDS serves Envoy's egress config over ADS from the policies' contracts.
func runXDS(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", xds.DefaultListen, "gRPC listener for Envoy's ADS stream")
	dir := fs.String("policies", "", "policies directory, hot reloaded (default: the bundled policies)")
	egress := fs.String("egress", xds.DefaultEgress, "IP:port of the egress listener Envoy opens for the app")
	extproc := fs.String("extproc", xds.DefaultExtProc, "host:port of proxy extproc, as Envoy reaches it")
	caFile := fs.String("ca-file", xds.DefaultCAFile, "PEM bundle Envoy validates vendors against: a path on Envoy's filesystem (replaces the system roots)")
	var resolve listFlag
	fs.Var(&resolve, "resolve", "HOST:PORT:ADDR — Envoy dials ADDR for that vendor (repeatable; SNI and the certificate name stay HOST)")
	maxBody := ByteSize(xds.DefaultMaxBody)
	fs.Var(&maxBody, "max-body", "largest request body Envoy buffers for ext_proc (use extproc's --max-body); larger gets 413")
	msgTimeout := fs.Duration("message-timeout", xds.DefaultMessageTimeout, "how long Envoy waits for each ext_proc answer (503 after)")
	upTimeout := fs.Duration("upstream-timeout", xds.DefaultUpstreamTimeout, "how long Envoy waits for a vendor's whole response (504 after)")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "proxy xds: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	opt := xds.Options{
		Egress: *egress, ExtProc: *extproc, CAFile: *caFile, Resolve: map[string]string{},
		MaxBody: int64(maxBody), MessageTimeout: *msgTimeout, UpstreamTimeout: *upTimeout,
	}
	for _, r := range resolve {
		hp, addr, err := proxy.ParseResolve(r)
		if err != nil {
			fmt.Fprintln(stderr, "proxy xds:", err)
			return exitUsage
		}
		opt.Resolve[hp] = addr
	}
	log := newLogger(stderr, *logFormat, *logLevel)
	srv, err := xds.NewServer(opt, log)
	if err != nil {
		fmt.Fprintln(stderr, "proxy xds:", err)
		return exitUsage
	}

	var pol *engine.Policy
	if *dir == "" {
		pol, err = engine.Load(ctx, policies.FS, engine.LoadOptions{CacheBytes: -1})
	} else {
		pol, err = engine.LoadDir(ctx, *dir, engine.LoadOptions{CacheBytes: -1})
	}
	if err == nil {
		var cfg *xds.Config
		if cfg, err = srv.Update(pol.Contracts); err == nil {
			log.Info("policy loaded", "revision", pol.Revision[:12], "version", cfg.Version, "vendors", len(pol.Contracts))
		}
	}
	if err != nil {
		// As serve does: start, and refuse (503 no_policy from Envoy)
		// until a valid policy arrives.
		log.Error("policy not loaded: Envoys get a config that refuses every request until it is fixed", "err", err)
		pol = nil
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("xds listener", "err", err)
		return exitFail
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	if *dir != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Watch(ctx, *dir, pol); err != nil {
				log.Error("policy watcher stopped", "err", err)
			}
		}()
	}
	log.Info("pare xds listening", "addr", ln.Addr().String(), "egress", opt.Egress, "extproc", opt.ExtProc)
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("xds failed", "err", err)
		return exitFail
	}
	return exitOK
}

// runEnvoyBootstrap prints the bootstrap of one Envoy sidecar.
func runEnvoyBootstrap(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("envoy-bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt xds.BootstrapOptions
	fs.StringVar(&opt.Node, "node", "", "this Envoy's node id (required; e.g. the pod name)")
	fs.StringVar(&opt.Cluster, "cluster", "pare-egress", "this Envoy's node cluster (e.g. the workload's service name)")
	fs.StringVar(&opt.XDS, "xds", xds.DefaultListen, "host:port of proxy xds")
	fs.StringVar(&opt.Admin, "admin", xds.DefaultEnvoyAdmin, "IP:port of Envoy's admin interface (keep it on loopback)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "proxy envoy-bootstrap: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	bs, err := xds.Bootstrap(opt)
	if err == nil {
		var y []byte
		if y, err = xds.YAML(bs); err == nil {
			_, err = stdout.Write(y)
			if err != nil {
				fmt.Fprintln(stderr, "proxy envoy-bootstrap:", err)
				return exitFail
			}
			return exitOK
		}
	}
	fmt.Fprintln(stderr, "proxy envoy-bootstrap:", err)
	return exitUsage
}
