package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const usage = `usage:
  bench [flags]                 run the benchmark (see BENCHMARKS.md)
  bench stub     --listen ADDR --cert PEM --key PEM
  bench revproxy --listen ADDR --stub ADDR --ca PEM
  bench opaproxy --listen ADDR --stub ADDR --ca PEM --opa URL

The subcommands are the helper servers the benchmark runs as child processes.
Flags of the benchmark:
`

// Main is cmd/bench: it runs the benchmark or one of its helper servers and
// returns the exit code. ctx ends the run (the command cancels it on SIGINT
// and SIGTERM); every child process is killed before Main returns.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "stub", "revproxy", "opaproxy":
			return serverMain(ctx, args[0], args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		cfg             Config
		rows, concs     string
		sizes           string
		md, svg         string
		write, checks   bool
		profile         int
		repo, self      string
		writeSet, noLog bool
	)
	fs.BoolVar(&cfg.Quick, "quick", false, "a few seconds: few requests, one concurrency, small payloads, all rows that work; writes nothing (CI smoke run)")
	fs.StringVar(&rows, "rows", "", "comma-separated rows to run (default 1-8; 9 with --baseline)")
	fs.StringVar(&concs, "conc", "", "comma-separated concurrencies (default 1,16,64; quick: 4)")
	fs.StringVar(&sizes, "sizes", "", "comma-separated attendee-array sizes in bytes, KiB or MiB, e.g. 1KiB,64KiB (default 1KiB,64KiB,1MiB,10MiB; quick: 1KiB,64KiB)")
	fs.Float64Var(&cfg.Scale, "scale", 1, "multiply the per-cell request counts (full mode)")
	fs.StringVar(&repo, "repo", "", "module root (default: found from the working directory)")
	fs.StringVar(&cfg.PayloadDir, "payloads", "", "sample payloads (default: REPO/../shared/payloads, else REPO/bench/testdata/payloads)")
	fs.StringVar(&cfg.ProxyBin, "proxy-bin", "", "Pare binary (default: go build ./cmd/proxy)")
	fs.StringVar(&cfg.OPABin, "opa-bin", "", "OPA binary (default: built from the version pinned in go.mod, cached)")
	fs.StringVar(&cfg.Baseline, "baseline", "", "git revision: adds row 9, Pare built from it, beside row 3 (before/after in one run)")
	fs.StringVar(&cfg.BaselineBin, "baseline-bin", "", "row 9's Pare binary, prebuilt from the --baseline revision")
	fs.StringVar(&cfg.Policies, "policies", "", "Pare --policies directory; row 4 uses its contracts/ (default: the bundled policies)")
	fs.Func("only", "comma-separated payload name prefixes to run, e.g. checkout.json,attendees (default: all)", func(v string) error {
		cfg.Only = append(cfg.Only, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&cfg.LedgerDir, "ledger-dir", "", "directory for Pare's --ledger files (default: the run's temp dir; e.g. /dev/shm to take fsync cost out)")
	fs.StringVar(&self, "self", "", "binary with the helper subcommands (default: this executable)")
	fs.StringVar(&md, "md", "", "markdown file whose generated section is replaced (default: REPO/BENCHMARKS.md)")
	fs.StringVar(&svg, "svg", "", "plot file (default: REPO/bench/latency.svg)")
	fs.BoolVar(&write, "write", true, "write the markdown and the plot (always off with --quick unless given)")
	fs.BoolVar(&checks, "checks", true, "run the 413 and tunnel checks and (full mode) the memory and decision checks")
	fs.IntVar(&profile, "profile", 10, "seconds of each CPU profile: Pare under checkout.json and ticket.json, ext_proc and HTTPS_PROXY under checkout.json, at c=16 (full mode; 0: none)")
	fs.BoolVar(&noLog, "q", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "write" {
			writeSet = true
		}
	})
	var err error
	if cfg.Rows, err = intList(rows); err != nil {
		fmt.Fprintln(stderr, "--rows:", err)
		return 2
	}
	if cfg.Concurrency, err = intList(concs); err != nil {
		fmt.Fprintln(stderr, "--conc:", err)
		return 2
	}
	if cfg.Sizes, err = sizeList(sizes); err != nil {
		fmt.Fprintln(stderr, "--sizes:", err)
		return 2
	}
	if repo == "" {
		if repo, err = moduleRoot(); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	cfg.RepoDir = repo
	if cfg.PayloadDir == "" {
		cfg.PayloadDir = DefaultPayloadDir(repo)
	}
	if self == "" {
		if self, err = os.Executable(); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	cfg.SelfBin = self
	if md == "" {
		md = filepath.Join(repo, "BENCHMARKS.md")
	}
	if svg == "" {
		svg = filepath.Join(repo, "bench", "latency.svg")
	}
	if cfg.Quick {
		write = write && writeSet
		profile = 0
	}
	cfg.Checks = checks
	cfg.Profile = profile
	if !noLog {
		cfg.Log = stderr
	}

	res, err := Run(ctx, cfg)
	if res == nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	res.Command = "go run ./cmd/bench"
	if len(args) > 0 {
		res.Command += " " + strings.Join(args, " ")
	}
	failed := res.Failures()
	if write && (err != nil || len(failed) > 0) {
		fmt.Fprintln(stderr, "bench: the run failed: not writing the results")
		write = false
	}
	svgRef := ""
	if write {
		if plot := res.SVG(); plot != "" {
			if werr := os.WriteFile(svg, []byte(plot), 0o644); werr != nil {
				fmt.Fprintln(stderr, "bench:", werr)
				return 1
			}
			if rel, rerr := filepath.Rel(filepath.Dir(md), svg); rerr == nil {
				svgRef = filepath.ToSlash(rel)
			}
		}
	}
	out := res.Markdown(svgRef)
	fmt.Fprintln(stdout, out)
	if write {
		if werr := WriteMarkdown(md, out); werr != nil {
			fmt.Fprintln(stderr, "bench:", werr)
			return 1
		}
		fmt.Fprintf(stderr, "wrote %s and %s\n", md, svg)
	}
	if res.ProfileFile != "" {
		fmt.Fprintf(stderr, "CPU profile of Pare: %s\n", res.ProfileFile)
	}
	code := 0
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		code = 1
	}
	if len(failed) > 0 {
		fmt.Fprintln(stderr, "bench: failed:\n  "+strings.Join(failed, "\n  "))
		code = 1
	}
	return code
}

// Failures lists what makes the run invalid: cells with errors (a benchmark
// that measures refusals measures the wrong thing), rows that failed to run
// and checks that could not be made. Unmet targets are not failures.
func (r *Results) Failures() []string {
	var out []string
	for _, c := range r.Cells {
		switch {
		case c.Sample != nil && c.Sample.Errors > 0:
			out = append(out, fmt.Sprintf("%s / %s / c=%d: %d errors: %s", RowName(c.Row), c.Payload, c.Conc, c.Sample.Errors, oneLine(c.Sample.FirstError, 200)))
		case strings.HasPrefix(c.NA, "failed"):
			out = append(out, fmt.Sprintf("%s / %s / c=%d: %s", RowName(c.Row), c.Payload, c.Conc, c.NA))
		}
	}
	if r.Memory != nil && r.Memory.Err != "" {
		out = append(out, "memory check: "+r.Memory.Err)
	}
	if r.Limit != nil && r.Limit.Err != "" {
		out = append(out, "413 check: "+r.Limit.Err)
	}
	if r.Tunnel != nil && r.Tunnel.Err != "" {
		out = append(out, "tunnel check: "+r.Tunnel.Err)
	}
	return out
}

func serverMain(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o ServerOptions
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:0", "listen address")
	fs.StringVar(&o.Cert, "cert", "", "stub: certificate PEM")
	fs.StringVar(&o.Key, "key", "", "stub: key PEM")
	fs.StringVar(&o.Stub, "stub", "", "proxies: the stub's address")
	fs.StringVar(&o.CA, "ca", "", "proxies: CA PEM of the stub's certificate")
	fs.StringVar(&o.OPA, "opa", "", "opaproxy: OPA base URL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch name {
	case "stub":
		err = RunStub(ctx, o, stdout)
	case "revproxy":
		err = RunReverseProxy(ctx, o, stdout)
	case "opaproxy":
		err = RunOPAProxy(ctx, o, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func intList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func sizeList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		for suf, m := range map[string]int{"KiB": 1 << 10, "MiB": 1 << 20} {
			if v, ok := strings.CutSuffix(f, suf); ok {
				f, mult = strings.TrimSpace(v), m
			}
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: no go.mod above the working directory (use --repo)")
		}
		dir = parent
	}
}

// DefaultPayloadDir is shared/payloads beside the repository when present,
// else the copies in bench/testdata/payloads.
func DefaultPayloadDir(repo string) string {
	if d := filepath.Join(repo, "..", "shared", "payloads"); fileExists(filepath.Join(d, "checkout.json")) {
		return d
	}
	return filepath.Join(repo, "bench", "testdata", "payloads")
}
