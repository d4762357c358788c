package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/ca"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

// runCA manages the drop-in CA: `ca export` prints the certificate apps
// must trust, `ca init` creates it ahead of the first start (or replaces it
// with --force, e.g. after a new vendor was added to the contracts).
func runCA(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "Usage: proxy ca export [--state-dir DIR | --ca-cert FILE]\n       proxy ca init [--state-dir DIR] [--policies DIR] [--force] [--unconstrained]")
	}
	if len(args) == 0 {
		usage()
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage()
		return exitOK
	case "export":
		return caExport(args[1:], stdout, stderr)
	case "init":
		return caInit(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "proxy ca: unknown subcommand %q\n", args[0])
	usage()
	return exitUsage
}

func caExport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ca export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultConfig().StateDir, "the state directory serve generates the CA in")
	certFile := fs.String("ca-cert", "", "a supplied CA certificate (as given to serve --ca-cert)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	name := *certFile
	if name == "" {
		name = filepath.Join(*stateDir, ca.CertFile)
	}
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) && *certFile == "" {
		fmt.Fprintf(stderr, "proxy ca export: no CA in %s yet: run `proxy ca init` or start `proxy serve` once\n", *stateDir)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stderr, "proxy ca export:", err)
		return exitUsage
	}
	_, _ = stdout.Write(b)
	return exitOK
}

func caInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ca init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultConfig().StateDir, "where to write ca.crt and ca.key")
	dir := fs.String("policies", "", "policies whose contract hosts the CA is constrained to (default: the bundled policies)")
	force := fs.Bool("force", false, "replace an existing CA (apps must then trust the new one)")
	unconstrained := fs.Bool("unconstrained", false, "no name constraints: new vendors need no new CA, but a stolen key can mint certificates for any host")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if _, err := os.Stat(filepath.Join(*stateDir, ca.KeyFile)); err == nil && !*force {
		fmt.Fprintf(stderr, "proxy ca init: %s already holds a CA; --force replaces it\n", *stateDir)
		return exitUsage
	}
	var hosts []string
	if !*unconstrained {
		var pol *engine.Policy
		var err error
		if *dir == "" {
			pol, err = engine.Load(ctx, policies.FS, engine.LoadOptions{})
		} else {
			pol, err = engine.LoadDir(ctx, *dir, engine.LoadOptions{})
		}
		if err != nil {
			fmt.Fprintln(stderr, "proxy ca init:", err)
			return exitUsage
		}
		hosts = policyHosts(pol)
	}
	if err := ca.Generate(*stateDir, hosts, time.Now()); err != nil {
		fmt.Fprintln(stderr, "proxy ca init:", err)
		return exitFail
	}
	constraint := "unconstrained"
	if len(hosts) > 0 {
		constraint = "constrained to " + strings.Join(ca.Constraints(hosts), ", ")
	}
	fmt.Fprintf(stdout, "CA written to %s (%s)\n", filepath.Join(*stateDir, ca.CertFile), constraint)
	return exitOK
}
