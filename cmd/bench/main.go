// Command bench runs Pare's benchmark harness: the same workload against the
// vendor stub, a bare reverse proxy, Pare and the proxy + OPA server pattern.
// See BENCHMARKS.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pare-dev/pare/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
