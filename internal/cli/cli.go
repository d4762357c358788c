// Package cli implements the subcommands of the proxy binary. Each command
// parses its flags, wires the packages that do the work and maps the result
// to an exit code; the work itself lives in those packages.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes shared by the commands.
const (
	exitOK     = 0
	exitFail   = 1 // check found problems, verify found a bad record, serve failed
	exitUsage  = 2 // usage or policy error
	exitDenied = 3 // explain: the request would be refused
	exitWidens = 3 // diff: the new policy widens disclosure
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the egress proxy (default: bundled policies, 127.0.0.1:15001, admin 127.0.0.1:15000)", runServe},
		{"extproc", "run the pipeline as an Envoy ext_proc gRPC server (default 127.0.0.1:15002; serve's flags)", runExtproc},
		{"explain", "show exactly what a vendor would receive for a request, and why", runExplain},
		{"check", "compile the policies, validate every contract, run the Rego tests", runCheck},
		{"diff", "what a policy change lets out that it did not before (and what no longer): for a pull request", runDiff},
		{"bundle", "bundle build: check the policies and write a signed bundle for a fleet", runBundle},
		{"ledger", "verify, query or report on the disclosure ledger", runLedger},
		{"ca", "export (or create) the drop-in CA apps trust for HTTPS_PROXY", runCA},
		{"ropa", "the record of processing activities (GDPR Art. 30) from the contracts, and a ledger's traffic", runRopa},
		{"datamap", "a picture of where personal data goes: services to vendors, by purpose and data category", runDatamap},
		{"demo", "start local vendor stubs and the proxy, send realistic requests, show what left", runDemo},
		{"xds", "serve Envoy sidecars their egress config over ADS (default 127.0.0.1:15010)", runXDS},
		{"envoy-bootstrap", "print the bootstrap YAML that points an Envoy at proxy xds", runEnvoyBootstrap},
		{"version", "print the version, VCS revision and Go version of this build", runVersion},
	}
}

// Main runs the command named by args[0] and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "proxy: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Pare — the need-to-know egress proxy.\n\nUsage: proxy <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'proxy <command> -h' for a command's flags.")
}

// parseFlags parses args into fs and maps -h and errors to exit codes.
func parseFlags(fs *flag.FlagSet, args []string) (exit int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
