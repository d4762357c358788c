// Command image builds Pare's container image without a container engine,
// as an OCI image layout directory (see internal/ociimage):
//
//	go run ./cmd/image -o pare-image                 # linux/amd64 and linux/arm64
//	go run ./cmd/image -o pare-image -platform linux/amd64
//	crane push pare-image ghcr.io/pare-dev/pare:0.1.0  # or skopeo copy oci:pare-image docker://...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/pare-dev/pare/internal/ociimage"
)

func main() {
	out := flag.String("o", "pare-image", "OCI layout directory to write (must not exist)")
	platforms := flag.String("platform", "linux/amd64,linux/arm64", "comma-separated platforms")
	ca := flag.String("ca-bundle", ociimage.CABundle, "PEM bundle of the CA certificates to ship (the build machine's by default)")
	tag := flag.String("tag", "", "image reference name in the layout (default: the module version)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "image: unexpected argument", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *platforms, *ca, *tag); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, platforms, ca, tag string) error {
	tmp, err := os.MkdirTemp("", "pare-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	opt := ociimage.Options{CABundle: ca, Tag: tag}
	for _, s := range strings.Split(platforms, ",") {
		p, err := ociimage.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		bin := filepath.Join(tmp, "proxy-"+p.OS+"-"+p.Arch)
		if err := ociimage.GoBuild(ctx, ".", "./cmd/proxy", p, bin); err != nil {
			return err
		}
		opt.Binaries = append(opt.Binaries, ociimage.Binary{Platform: p, Path: bin})
	}
	digest, err := ociimage.Build(out, opt)
	if err != nil {
		return err
	}
	fmt.Printf("%s: image index %s (%s)\n", out, digest, platforms)
	return nil
}
