package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/pipeline"
)

func runBundle(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintln(stderr, "Usage: proxy bundle build DIR --signing-key KEY.pem -o bundle.tar.gz [--source-revision REV]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("bundle build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("signing-key", "", "PEM private key (RSA or ECDSA) to sign the bundle with (required)")
	out := fs.String("o", "", "where to write the bundle (required)")
	sourceRev := fs.String("source-revision", "", "what the policy was built from (a commit), kept in the manifest's metadata")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: proxy bundle build DIR --signing-key KEY.pem -o bundle.tar.gz [--source-revision REV]\n\n"+
			"Checks the policies in DIR as a sidecar will (Rego compiles, every contract validates), runs\n"+
			"their Rego tests, and writes a signed bundle for `proxy serve --bundle URL --bundle-key PUB.pem`.\n\n")
		fs.PrintDefaults()
	}
	// Flags may come before or after DIR.
	var dirs []string
	rest := args[1:]
	for {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		dirs = append(dirs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(dirs) != 1 || *keyFile == "" || *out == "" {
		fs.Usage()
		return exitUsage
	}
	dir := dirs[0]
	pemBytes, err := os.ReadFile(*keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "proxy bundle build:", err)
		return exitUsage
	}
	key, err := bundle.ParseSigningKey(pemBytes)
	if err != nil {
		fmt.Fprintf(stderr, "proxy bundle build: %s: %v\n", *keyFile, err)
		return exitUsage
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		fmt.Fprintf(stderr, "proxy bundle build: %s is not a policies directory\n", dir)
		return exitUsage
	}
	opt := bundle.WriteOptions{Key: key}
	if *sourceRev != "" {
		opt.Metadata = map[string]any{"source_revision": *sourceRev}
	}
	var buf bytes.Buffer
	p, tests, err := bundle.Build(ctx, os.DirFS(dir), &buf, opt)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", dir, err)
		return exitFail
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		fmt.Fprintln(stderr, "proxy bundle build:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: revision %s, %d files, %d vendors, %d Rego tests passed; signed %s with key %s\n",
		*out, p.Revision, len(p.Files), len(p.Vendors), tests, key.Algorithm(), key.KeyID())
	return exitOK
}

// writeFileAtomic writes path by rename, so a bundle server publishing the
// output directory never serves half a bundle.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// newBundleSource sets up --bundle: the keys, OPA's downloader and the
// metrics. swapped updates the policy metrics after each activation.
func newBundleSource(c Config, eng *engine.Engine, metrics *pipeline.Metrics, reg prometheus.Registerer, log *slog.Logger, swapped func(*engine.Policy)) (*bundle.Source, error) {
	vc, err := bundle.VerificationConfigFromFiles(c.BundleKeys...)
	if err != nil {
		return nil, err
	}
	return bundle.NewSource(eng, bundle.SourceOptions{
		URL: c.Bundle, Verification: vc, Dir: c.BundleDir,
		MinDelay: c.BundleMinDelay, MaxDelay: c.BundleMaxDelay, LongPollTimeout: c.BundleLongPoll,
		CACert: c.BundleCA, TokenFile: c.BundleTokenFile, MaxBytes: int64(c.BundleMaxBytes),
		Logger: log, Registerer: reg,
	}, func(p *engine.Policy, err error) {
		if err != nil {
			metrics.Reloads.WithLabelValues("failure").Inc()
			return
		}
		metrics.Reloads.WithLabelValues("success").Inc()
		swapped(p)
	})
}
