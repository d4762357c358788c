// Package ociimage builds Pare's container image without a container
// engine: a static binary on an otherwise empty ("scratch") filesystem that
// holds only what the binary needs (CA certificates, /etc/passwd naming the
// non-root user, /etc/nsswitch.conf), written as an OCI image layout with
// go-containerregistry. A layout is a directory any registry client can
// push (`crane push DIR REF`, `skopeo copy oci:DIR docker://REF`, `oras`).
//
// Why scratch and not a distroless base: building FROM a base needs a pull
// from a container registry, and the machines this project is built on
// reach only package registries. What distroless/static adds to scratch is
// exactly the files written here.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed facts.
const (
	BinaryPath = "/pare"
	User       = "65532:65532" // "nonroot", as in distroless
	Source     = "https://github.com/pare-dev/pare"
	// CABundle is where Go's crypto/x509 looks first on Linux.
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
)

// GoBuildEnv and GoBuildFlags build the binary the image ships: static (no
// cgo, so no libc to find in an empty image), without the build machine's
// paths, stripped.
var (
	GoBuildEnv   = []string{"CGO_ENABLED=0"}
	GoBuildFlags = []string{"-trimpath", "-ldflags=-s -w", "-buildvcs=auto"}
)

// Platform is an OS/architecture pair, "linux/amd64".
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// ParsePlatform reads "linux/amd64".
func ParsePlatform(s string) (Platform, error) {
	osName, arch, ok := strings.Cut(s, "/")
	if !ok || osName != "linux" || arch == "" || strings.Contains(arch, "/") {
		return Platform{}, fmt.Errorf("platform %q: want linux/ARCH", s)
	}
	return Platform{osName, arch}, nil
}

// HostPlatform is the platform this process runs on.
func HostPlatform() Platform { return Platform{"linux", runtime.GOARCH} }

// GoBuild builds pkg (a package path of the module in dir) for p into out.
func GoBuild(ctx context.Context, dir, pkg string, p Platform, out string) error {
	args := append(append([]string{"build"}, GoBuildFlags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), GoBuildEnv...), "GOOS="+p.OS, "GOARCH="+p.Arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, p, err, b)
	}
	return nil
}

// Binary is one platform's build of the proxy.
type Binary struct {
	Platform Platform
	Path     string
}

// Options say what to put in the image.
type Options struct {
	Binaries []Binary
	// CABundle is the PEM file copied to /etc/ssl/certs/ca-certificates.crt:
	// the roots Pare verifies vendors with (besides --upstream-ca).
	CABundle string
	// Tag names the image in the layout (org.opencontainers.image.ref.name);
	// default: the binary's version.
	Tag string
}

// Build writes the image for every binary, as one multi-platform index, to
// an OCI layout at dir (created; it must not exist yet, so that an old
// image is never mixed in). It returns the index's digest.
func Build(dir string, opt Options) (v1.Hash, error) {
	if len(opt.Binaries) == 0 {
		return v1.Hash{}, errors.New("image: no binary")
	}
	if _, err := os.Stat(dir); err == nil {
		return v1.Hash{}, fmt.Errorf("image: %s exists", dir)
	}
	ca, err := os.ReadFile(opt.CABundle)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image: CA bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return v1.Hash{}, fmt.Errorf("image: CA bundle %s holds no PEM certificate", opt.CABundle)
	}

	idx := v1.ImageIndex(empty.Index)
	var version string
	for _, b := range opt.Binaries {
		img, info, err := platformImage(b, ca)
		if err != nil {
			return v1.Hash{}, err
		}
		if version != "" && info.version != version {
			return v1.Hash{}, fmt.Errorf("image: binaries of different versions (%s, %s)", version, info.version)
		}
		version = info.version
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: b.Platform.OS, Architecture: b.Platform.Arch}},
		})
	}
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	tag := opt.Tag
	if tag == "" {
		tag = version
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image: %w", err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return v1.Hash{}, fmt.Errorf("image: %w", err)
	}
	return idx.Digest()
}

type binaryInfo struct{ version, revision, created string }

// readBinaryInfo reads what the Go linker recorded in the binary: the labels
// say the same as `proxy version` run inside the image.
func readBinaryInfo(path string) (binaryInfo, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("image: %s: %w", path, err)
	}
	in := binaryInfo{version: bi.Main.Version}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.revision = s.Value
		case "vcs.time":
			in.created = s.Value
		}
	}
	if in.version == "" || in.version == "(devel)" {
		in.version = "devel"
	}
	// A tag may not hold "+" (pseudo-versions of a modified tree do).
	in.version = strings.ReplaceAll(in.version, "+", "_")
	return in, nil
}

func platformImage(b Binary, ca []byte) (v1.Image, binaryInfo, error) {
	if err := checkStatic(b.Path); err != nil {
		return nil, binaryInfo{}, err
	}
	info, err := readBinaryInfo(b.Path)
	if err != nil {
		return nil, info, err
	}
	bin, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, info, fmt.Errorf("image: %w", err)
	}
	// Fixed timestamps make the layers, and so the digests, depend only on
	// their content: the same binary gives the same image.
	mtime := time.Unix(0, 0).UTC()
	if t, err := time.Parse(time.RFC3339, info.created); err == nil {
		mtime = t.UTC()
	}
	base, err := tarLayer(mtime, []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(CABundle, "/"), mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: 65532},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return nil, info, err
	}
	binLayer, err := tarLayer(mtime, []file{{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: bin}})
	if err != nil {
		return nil, info, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: mtime}, CreatedBy: "pare ociimage: /etc (passwd, group, nsswitch.conf, CA certificates), /home/nonroot, /tmp"}},
		mutate.Addendum{Layer: binLayer, History: v1.History{Created: v1.Time{Time: mtime}, CreatedBy: "pare ociimage: " + BinaryPath + " (static, policies embedded)"}},
	)
	if err != nil {
		return nil, info, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, info, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = b.Platform.OS, b.Platform.Arch
	cf.Created = v1.Time{Time: mtime}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"serve"},
		User:       User,
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=" + CABundle},
		Labels:     labels(info),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, info, fmt.Errorf("image: %w", err)
	}
	return img, info, nil
}

// labels are the OCI annotations of the image's config.
func labels(info binaryInfo) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "pare",
		"org.opencontainers.image.description": "Pare, the need-to-know egress proxy: every vendor call leaves minimized to its contract, recorded, or not at all.",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.version":     info.version,
	}
	if info.revision != "" {
		l["org.opencontainers.image.revision"] = info.revision
	}
	if info.created != "" {
		l["org.opencontainers.image.created"] = info.created
	}
	return l
}

type file struct {
	name string
	mode int64
	data []byte
	dir  bool
	uid  int
}

// tarLayer writes files, in the order given, into an uncompressed tar owned
// by root (unless a file says otherwise) and returns it as a gzip'd OCI
// layer.
func tarLayer(mtime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Uid: f.uid, Gid: f.uid, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return l, nil
}

// checkStatic refuses a dynamically linked binary: in an image without a
// libc it would not start.
func checkStatic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	dyn, err := isDynamicELF(f)
	if err != nil {
		return fmt.Errorf("image: %s: %w", filepath.Base(path), err)
	}
	if dyn {
		return fmt.Errorf("image: %s is dynamically linked: build with CGO_ENABLED=0", path)
	}
	return nil
}
