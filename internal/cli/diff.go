package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pare-dev/pare/internal/policydiff"
)

const diffUsage = `Usage: proxy diff [flags] OLD NEW

Decides every case of the generated input space of both policies' contracts
under OLD and under NEW, and reports what starts or stops leaving: per vendor,
route, purpose and service, the fields, transforms, query parameters, headers
and data categories, the refusals that appear or disappear, card guard, body
mode, TLS and port changes. Markdown for a pull request comment (default) or
--format json.

OLD and NEW are each
  DIR              a policies directory
  FILE             a signed bundle (proxy bundle build), verified with --bundle-key
  git:REV          the repository's policies/ at REV (git archive, run in --repo)
  git:REV:PATH     the directory PATH of the repository at REV

Exit status: 0 no change, or disclosure only narrows; 3 NEW widens disclosure
(more leaves, a refusal lifted, cards loosened, opaque where it was filtered,
plain HTTP where it was TLS, another port or recipient, dry run on), or may:
NEW decides on input OLD does not read, on the body, or on a non-deterministic
builtin OLD does not call, which no case varies; 2 usage error, a policy that
cannot be read, verified or compiled, or no result within --timeout.

Flags:
`

func runDiff(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "markdown", "markdown (a pull request comment) or json")
	sample := fs.Int("sample", 0, "decide about N cases spread over the space instead of all of them (a quick look: it can miss differences)")
	seed := fs.Uint64("seed", 0, "seed of the input space's random parts (ids, host and path spellings); the same seed gives the same cases")
	jobs := fs.Int("jobs", 0, "cases decided in parallel (default: the number of CPUs)")
	maxGroups := fs.Int("max-groups", policydiff.DefaultMaxGroups, "Markdown: groups shown one by one; the rest are counted (all are in the JSON)")
	repo := fs.String("repo", "", "directory git runs in for git: sources (default: the current directory)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up (exit 2) when the comparison has not finished by then: a policy that decides slowly must not hold CI until its job's own limit")
	var keys listFlag
	fs.Var(&keys, "bundle-key", "PEM public key a bundle source must be signed with (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, diffUsage)
		fs.PrintDefaults()
	}
	var srcs []string
	rest := args
	for {
		if code, ok := parseFlags(fs, rest); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		srcs = append(srcs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(srcs) != 2 {
		fs.Usage()
		return exitUsage
	}
	if *format != "markdown" && *format != "json" {
		fmt.Fprintf(stderr, "proxy diff: --format %q: want markdown or json\n", *format)
		return exitUsage
	}
	if *sample < 0 || *jobs < 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, "proxy diff: --sample and --jobs must not be negative, --timeout must be positive")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	sopt := policydiff.SourceOptions{BundleKeys: keys, Repo: *repo}
	var sides [2]*policydiff.Side
	for i, s := range srcs {
		side, err := policydiff.Open(ctx, s, sopt)
		if err != nil {
			fmt.Fprintf(stderr, "proxy diff: %v\n", err)
			return exitUsage
		}
		sides[i] = side
	}
	r, err := policydiff.Compare(ctx, sides[0], sides[1], policydiff.Options{Seed: *seed, Sample: *sample, Jobs: *jobs})
	if ctx.Err() != nil {
		// Decisions cut off by the deadline would read as refusals, and a
		// NEW that refuses reads as narrowing: no report at all instead.
		fmt.Fprintf(stderr, "proxy diff: did not finish within --timeout %s: %v\n", *timeout, ctx.Err())
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "proxy diff: %v\n", err)
		return exitUsage
	}
	if *format == "json" {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteMarkdown(stdout, *maxGroups)
	}
	if err != nil {
		fmt.Fprintf(stderr, "proxy diff: %v\n", err)
		return exitUsage
	}
	if r.Identical {
		fmt.Fprintf(stderr, "proxy diff: OLD and NEW are the same files (revision %.12s): no change\n", r.New.Revision)
	} else {
		fmt.Fprintf(stderr, "proxy diff: %d of %d cases decided under both policies in %.1fs (%d jobs): %s\n",
			r.Evaluated, r.SpaceCases, r.Elapsed.Seconds(), r.Jobs, r.Verdict())
	}
	if r.Widens {
		return exitWidens
	}
	return exitOK
}
