package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/engine"
)

func runCheck(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("policies", "policies", "policies directory")
	verbose := fs.Bool("v", false, "list every Rego test")
	configPath := fs.String("config", "", "also validate this serve config file (strictly: unknown keys are errors)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *configPath != "" {
		c := defaultConfig()
		if err := loadConfigFile(*configPath, &c); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFail
		}
		// Exactly the checks serve makes before it listens.
		if _, err := c.preflight(ctx, slog.New(slog.DiscardHandler)); err != nil {
			fmt.Fprintf(stderr, "config %s: %v\n", *configPath, err)
			return exitFail
		}
		if c.Bundle != "" {
			// The policy comes from the bundle server; what can be checked
			// here is that the keys bundles are verified with are usable.
			if _, err := bundle.VerificationConfigFromFiles(c.BundleKeys...); err != nil {
				fmt.Fprintf(stderr, "config %s: %v\n", *configPath, err)
				return exitFail
			}
			fmt.Fprintf(stdout, "%s: valid serve config (policy from the bundle %s)\n", *configPath, c.Bundle)
			return exitOK
		}
		fmt.Fprintf(stdout, "%s: valid serve config\n", *configPath)
		if c.Policies == "" {
			return exitOK // the bundled policies: checked by the tests that built this binary
		}
		*dir = c.Policies
	}
	// Compile (contracts validated strictly inside Load) exactly as serve
	// would, then run the Rego tests against the same data.
	p, err := engine.LoadDir(ctx, *dir, engine.LoadOptions{})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	results, err := engine.Test(ctx, os.DirFS(*dir))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *dir, err)
		return exitFail
	}
	failed := 0
	for _, r := range results {
		loc := ""
		if r.Location != nil {
			loc = fmt.Sprintf("%s/%s:%d: ", *dir, r.Location.File, r.Location.Row)
		}
		switch {
		case r.Error != nil:
			failed++
			fmt.Fprintf(stderr, "%sERROR %s.%s: %v\n", loc, r.Package, r.Name, r.Error)
		case r.Fail:
			failed++
			fmt.Fprintf(stderr, "%sFAIL %s.%s\n", loc, r.Package, r.Name)
		case *verbose:
			fmt.Fprintf(stdout, "%sPASS %s.%s (%s)\n", loc, r.Package, r.Name, r.Duration)
		}
	}
	fmt.Fprintf(stdout, "%s: revision %s, %d files, %d vendors, %d Rego tests, %d failed\n",
		*dir, p.Revision[:12], len(p.Files), len(p.Vendors), len(results), failed)
	fmt.Fprintf(stdout, "%s: %s\n", *dir, p.CacheKey())
	if failed > 0 {
		return exitFail
	}
	return exitOK
}
