package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/pare-dev/pare/internal/engine"
)

// Names of the bundle's own files, beside the policy files.
const (
	manifestFile   = ".manifest"
	signaturesFile = ".signatures.json"
)

// WriteOptions say how Write signs and labels a bundle.
type WriteOptions struct {
	// Key signs the bundle. Required: sidecars refuse unsigned bundles.
	Key *SigningKey
	// Revision is the manifest's revision. Build sets it to the engine's
	// content revision, which sidecars check on activation.
	Revision string
	// Metadata goes into the manifest's metadata (e.g. source_revision, the
	// commit the policy was built from).
	Metadata map[string]any
	// BuiltAt, when set, goes into the metadata as built_at. Build sets it
	// to the time of the build: sidecars refuse a bundle built before the
	// one they enforce (see Source), so a bundle server cannot roll the
	// fleet back to an older, validly signed policy.
	BuiltAt time.Time
}

// metaBuiltAt is the manifest metadata key of WriteOptions.BuiltAt.
const metaBuiltAt = "built_at"

// Write writes a signed bundle to w holding the named files of fsys (paths
// relative to its root, as engine.Policy.Files lists them), byte for byte.
// It does not check the policy: Build does, and a sidecar checks again.
//
// The tarball is written here with archive/tar rather than OPA's
// bundle.Writer because that writer only knows modules and one data.json,
// and a Pare bundle carries the contract files themselves (see the package
// doc). The hashes and the signature are OPA's. The output is reproducible:
// the same files and key (RSA signatures are deterministic) give the same bytes.
func Write(w io.Writer, fsys fs.FS, files []string, opt WriteOptions) error {
	if opt.Key == nil {
		return errors.New("write bundle: a signing key is required")
	}
	names := slices.Clone(files)
	slices.Sort(names)
	if i := slices.Index(names, ""); i >= 0 || len(names) == 0 {
		return errors.New("write bundle: no files")
	}
	contents := make([][]byte, len(names))
	for i, name := range names {
		if !fs.ValidPath(name) || strings.HasPrefix(path.Base(name), ".") {
			return fmt.Errorf("write bundle: invalid file name %q", name)
		}
		if i > 0 && names[i-1] == name {
			return fmt.Errorf("write bundle: %s listed twice", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		contents[i] = b
	}

	meta := maps.Clone(opt.Metadata)
	if !opt.BuiltAt.IsZero() {
		if meta == nil {
			meta = map[string]any{}
		}
		meta[metaBuiltAt] = opt.BuiltAt.UTC().Format(time.RFC3339Nano)
	}
	m := opabundle.Manifest{Revision: opt.Revision, Metadata: meta}
	m.Init()
	m.SetRegoVersion(ast.RegoV1)
	manifest, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("write bundle: manifest: %w", err)
	}

	hasher, err := opabundle.NewSignatureHasher(opabundle.SHA256)
	if err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	infos := make([]opabundle.FileInfo, 0, len(names)+1)
	for i, name := range append([]string{manifestFile}, names...) {
		b := manifest
		if i > 0 {
			b = contents[i-1]
		}
		sum, err := hashFile(hasher, name, b)
		if err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		infos = append(infos, opabundle.NewFile(name, sum, string(opabundle.SHA256)))
	}
	token, err := opabundle.GenerateSignedToken(infos,
		opabundle.NewSigningConfig(opt.Key.pem, opt.Key.alg, ""), opt.Key.keyID)
	if err != nil {
		return fmt.Errorf("write bundle: sign: %w", err)
	}
	sigs, err := json.Marshal(opabundle.SignaturesConfig{Signatures: []string{token}})
	if err != nil {
		return fmt.Errorf("write bundle: signatures: %w", err)
	}

	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	add := func(name string, b []byte) error {
		hdr := &tar.Header{Name: "/" + name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add(manifestFile, manifest); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	if err := add(signaturesFile, sigs); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	for i, name := range names {
		if err := add(name, contents[i]); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

// hashFile hashes a file the way OPA's verifier will: structured documents
// (.manifest, data.json, data.yaml) by their parsed value, so that
// formatting does not matter, and everything else by its bytes.
func hashFile(h opabundle.SignatureHasher, name string, b []byte) (string, error) {
	var v any = b
	if opabundle.IsStructuredDoc(name) {
		if err := util.Unmarshal(b, &v); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	sum, err := h.HashFile(v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return hex.EncodeToString(sum), nil
}

// Build checks the policies in fsys exactly as a sidecar will (engine.Load:
// Rego compiles, every contract validates) and runs their Rego tests, then
// writes the signed bundle of the files the engine loaded (Rego without the
// tests, contracts and other data) to w, with the engine's revision as the
// manifest revision and the time of the build as built_at (unless opt
// says otherwise). Tests run here, in CI, rather than on every sidecar:
// a sidecar activates a bundle only if it compiles and validates, but does
// not run the tests again.
func Build(ctx context.Context, fsys fs.FS, w io.Writer, opt WriteOptions) (*engine.Policy, int, error) {
	p, err := engine.Load(ctx, fsys, engine.LoadOptions{CacheBytes: -1})
	if err != nil {
		return nil, 0, err
	}
	results, err := engine.Test(ctx, fsys)
	if err != nil {
		return nil, 0, err
	}
	var failed []error
	for _, r := range results {
		if r.Fail || r.Error != nil {
			loc := ""
			if r.Location != nil {
				loc = fmt.Sprintf("%s:%d: ", r.Location.File, r.Location.Row)
			}
			failed = append(failed, fmt.Errorf("%sFAIL %s.%s", loc, r.Package, r.Name))
			if r.Error != nil {
				failed[len(failed)-1] = fmt.Errorf("%sERROR %s.%s: %w", loc, r.Package, r.Name, r.Error)
			}
		}
	}
	if len(failed) > 0 {
		return nil, len(results), fmt.Errorf("%d of %d Rego tests failed:\n%w", len(failed), len(results), errors.Join(failed...))
	}
	opt.Revision = p.Revision
	if opt.BuiltAt.IsZero() {
		opt.BuiltAt = time.Now()
	}
	var buf bytes.Buffer
	if err := Write(&buf, fsys, p.Files, opt); err != nil {
		return nil, len(results), err
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return nil, len(results), fmt.Errorf("write bundle: %w", err)
	}
	return p, len(results), nil
}
