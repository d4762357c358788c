// Command proxy is Pare: the need-to-know egress proxy. See `proxy help`.
package main

import (
	"os"

	"github.com/pare-dev/pare/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
