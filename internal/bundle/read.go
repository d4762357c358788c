package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/pare-dev/pare/internal/engine"
)

// DefaultMaxBytes bounds a bundle, compressed and uncompressed alike. Pare's
// policy is tens of kilobytes; the bound is what a broken or hostile bundle
// server can make a sidecar hold in memory.
const DefaultMaxBytes = 16 << 20

// ErrTooLarge is wrapped by the errors of a bundle over its size bound.
var ErrTooLarge = errors.New("bundle too large")

// Contents is a verified bundle.
type Contents struct {
	// Revision is the manifest's revision.
	Revision string
	// Metadata is the manifest's metadata (source_revision, built_at, ...).
	Metadata map[string]any
	// BuiltAt is the metadata's built_at; zero when absent or malformed.
	BuiltAt time.Time
	// Files holds the bundle's files other than .manifest and
	// .signatures.json, at their paths in the policies directory, exactly the
	// bytes the signature covers. Read-only.
	Files fs.FS
	// Names lists Files.
	Names []string
}

// Read verifies the gzipped tarball raw with OPA's bundle reader against vc
// and returns its files. vc must not be nil: every bundle must be signed by
// one of its keys, and every file must be covered by the signature with the
// right hash. maxBytes (<= 0: DefaultMaxBytes) bounds raw and its
// uncompressed size. Read does not compile anything; LoadPolicy does.
func Read(raw []byte, vc *opabundle.VerificationConfig, maxBytes int64) (*Contents, error) {
	if vc == nil || !vc.SignatureRequired() {
		return nil, errors.New("read bundle: a verification key is required")
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if err := checkSize(raw, maxBytes); err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	// The files are taken from the very descriptors OPA's reader verifies, so
	// that what the engine loads cannot differ from what the signature covers
	// (a second tar parser could disagree with OPA's about, say, a duplicate
	// entry or a link).
	c := &capture{
		DirectoryLoader: opabundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "").WithSizeLimitBytes(maxBytes),
		max:             maxBytes,
		files:           fstest.MapFS{},
	}
	b, err := opabundle.NewCustomReader(c).
		WithBundleVerificationConfig(vc).
		WithRegoVersion(ast.RegoV1).
		WithSizeLimitBytes(maxBytes).
		Read()
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if c.err != nil {
		return nil, fmt.Errorf("read bundle: %w", c.err)
	}
	// OPA's reader already refuses a bundle without a signature when one is
	// required; this guards against that ever changing under us.
	if len(b.Signatures.Signatures) == 0 || b.Type() != opabundle.SnapshotBundleType {
		return nil, errors.New("read bundle: not a signed snapshot bundle")
	}
	out := &Contents{Revision: b.Manifest.Revision, Metadata: b.Manifest.Metadata, Files: c.files, Names: c.names}
	if s, ok := out.Metadata[metaBuiltAt].(string); ok {
		out.BuiltAt, _ = time.Parse(time.RFC3339Nano, s)
	}
	return out, nil
}

// checkSize refuses raw when it, or what it decompresses to, exceeds max. It
// decompresses into io.Discard, so the check itself holds nothing more than
// raw; OPA's tarball loader then buffers every file, which this bounds.
func checkSize(raw []byte, max int64) error {
	if int64(len(raw)) > max {
		return fmt.Errorf("%w: %d bytes compressed, the limit is %d", ErrTooLarge, len(raw), max)
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("not a gzipped tarball: %w", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(gz, max+1))
	if err != nil {
		return fmt.Errorf("not a gzipped tarball: %w", err)
	}
	if n > max {
		return fmt.Errorf("%w: over %d bytes uncompressed", ErrTooLarge, max)
	}
	return nil
}

// capture hands OPA's reader the tarball's files one by one and keeps a copy
// of each, under the name the signature check uses (the path without its
// leading slash).
type capture struct {
	opabundle.DirectoryLoader
	max   int64
	files fstest.MapFS
	names []string
	err   error
}

func (c *capture) NextFile() (*opabundle.Descriptor, error) {
	d, err := c.DirectoryLoader.NextFile()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	n, err := d.Read(&buf, c.max+1)
	_ = d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if n > c.max {
		return nil, fmt.Errorf("%w: file %s", ErrTooLarge, d.Path())
	}
	name := strings.TrimPrefix(d.Path(), "/")
	switch {
	case name == manifestFile || opabundle.IsSignaturesFile(d.Path()):
		// OPA's reader deals with these.
	case !fs.ValidPath(name) || name == ".":
		c.err = errors.Join(c.err, fmt.Errorf("file %q: not a plain relative path", d.Path()))
	case c.files[name] != nil:
		c.err = errors.Join(c.err, fmt.Errorf("file %s: in the tarball twice", name))
	default:
		c.files[name] = &fstest.MapFile{Data: bytes.Clone(buf.Bytes()), Mode: 0o444}
		c.names = append(c.names, name)
	}
	return opabundle.NewDescriptor(d.URL(), d.Path(), &buf), nil
}

// LoadPolicy reads raw as Read does and compiles it with the engine exactly
// as a policies directory is compiled (engine.Load: Rego compiles, contracts
// validate with file:line). The manifest's revision must be the engine's
// content revision: a bundle's revision is then the same string as the
// revision of the directory it was built from, in ledger records and metrics.
func LoadPolicy(ctx context.Context, raw []byte, vc *opabundle.VerificationConfig, maxBytes int64, opt engine.LoadOptions) (*engine.Policy, *Contents, error) {
	c, err := Read(raw, vc, maxBytes)
	if err != nil {
		return nil, nil, err
	}
	p, err := engine.Load(ctx, c.Files, opt)
	if err != nil {
		return nil, c, fmt.Errorf("bundle %s: %w", short(c.Revision), err)
	}
	if c.Revision != p.Revision {
		return nil, c, fmt.Errorf("bundle: manifest revision %q is not the revision of its files (%s): build bundles with `proxy bundle build`",
			clip(c.Revision), p.Revision)
	}
	return p, c, nil
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// clip bounds a value from a bundle echoed in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
