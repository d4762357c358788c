package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/pare-dev/pare/internal/engine"
)

// policiesDir is the repository's policies directory: the bundles under test
// carry the real policy.
const policiesDir = "../../policies"

// build runs Build on fsys and returns the bundle's bytes.
func build(t testing.TB, fsys fs.FS, key testKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, _, err := Build(context.Background(), fsys, &buf, WriteOptions{Key: key.signing}); err != nil {
		t.Fatalf("build: %v", err)
	}
	return buf.Bytes()
}

func verifier(t testing.TB, keys ...testKey) *opabundle.VerificationConfig {
	t.Helper()
	var pubs []PublicKey
	for i, k := range keys {
		pubs = append(pubs, PublicKey{Name: "key" + string(rune('0'+i)), PEM: k.pub})
	}
	vc, err := NewVerificationConfig(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

// dirFS copies the policies directory into a MapFS that a test may edit.
func dirFS(t testing.TB) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(policiesDir), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join(policiesDir, name))
		m[name] = &fstest.MapFile{Data: b, Mode: 0o644}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuildReadRoundTrip(t *testing.T) {
	key := newECKey(t)
	raw := build(t, os.DirFS(policiesDir), key)
	dir, err := engine.LoadDir(context.Background(), policiesDir, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	p, c, err := LoadPolicy(context.Background(), raw, verifier(t, key), 0, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision != dir.Revision || c.Revision != dir.Revision {
		t.Fatalf("bundle revision %s (manifest %s), directory revision %s: want one revision", p.Revision, c.Revision, dir.Revision)
	}
	if !slices.Equal(p.Files, dir.Files) || !slices.Equal(c.Names, dir.Files) {
		t.Fatalf("bundle files %v (names %v), directory files %v", p.Files, c.Names, dir.Files)
	}
	for _, name := range c.Names {
		got, _ := fs.ReadFile(c.Files, name)
		want, _ := os.ReadFile(filepath.Join(policiesDir, name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the directory's", name)
		}
		if strings.HasSuffix(name, "_test.rego") {
			t.Errorf("%s: tests do not belong in a bundle", name)
		}
	}
	if since := time.Since(c.BuiltAt); since < 0 || since > time.Hour {
		t.Errorf("built_at %v: Build must stamp the time of the build", c.BuiltAt)
	}
	if len(p.Contracts) != len(dir.Contracts) || p.Contracts["stripe"] == nil {
		t.Fatalf("contracts %v", p.Vendors)
	}
	// Reproducible: the same files give the same entries (an ECDSA
	// signature is randomized, so .signatures.json differs).
	a, b := unpack(t, raw), unpack(t, build(t, os.DirFS(policiesDir), key))
	if len(a) != len(b) {
		t.Fatalf("two builds have %d and %d entries", len(a), len(b))
	}
	for i := range a {
		if a[i].hdr.Name != b[i].hdr.Name || (a[i].hdr.Name != "/.signatures.json" && a[i].hdr.Name != "/.manifest" && !bytes.Equal(a[i].data, b[i].data)) {
			t.Errorf("two builds differ at %s", a[i].hdr.Name)
		}
	}
}

// entry is one tar entry, for tests that take bundles apart.
type entry struct {
	hdr  tar.Header
	data []byte
}

func unpack(t testing.TB, raw []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, entry{*h, b})
	}
}

func pack(t testing.TB, es []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range es {
		h := e.hdr
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// edit unpacks raw, lets f change the entries and packs them again.
func edit(t testing.TB, raw []byte, f func([]entry) []entry) []byte {
	t.Helper()
	return pack(t, f(unpack(t, raw)))
}

func replaceFile(name string, f func([]byte) []byte) func([]entry) []entry {
	return func(es []entry) []entry {
		for i := range es {
			if es[i].hdr.Name == "/"+name {
				es[i].data = f(es[i].data)
			}
		}
		return es
	}
}

// TestReadRefuses tries to get a policy past verification: every case must
// be refused with a reason naming what is wrong.
func TestReadRefuses(t *testing.T) {
	key, other := newECKey(t), newECKey(t)
	good := build(t, os.DirFS(policiesDir), key)

	// A policy that does not compile, and one whose contract is invalid,
	// both correctly signed: only the engine can refuse them.
	broken := dirFS(t)
	broken["egress.rego"].Data = append(bytes.Clone(broken["egress.rego"].Data), []byte("\nbroken if { undefined_rule_xyz }\n")...)
	var brokenRaw bytes.Buffer
	if err := Write(&brokenRaw, broken, []string{"contracts/stripe.yaml", "egress.rego", "legal.rego"}, WriteOptions{Key: key.signing, Revision: "x"}); err != nil {
		t.Fatal(err)
	}
	badContract := dirFS(t)
	badContract["contracts/zendesk.yaml"].Data = bytes.Replace(badContract["contracts/zendesk.yaml"].Data, []byte("  role: support\n"), []byte("  role: support\n  colour: blue\n"), 1)
	p, err := engine.Load(context.Background(), dirFS(t), engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var badContractRaw bytes.Buffer
	if err := Write(&badContractRaw, badContract, p.Files, WriteOptions{Key: key.signing, Revision: p.Revision}); err != nil {
		t.Fatal(err)
	}
	var wrongRevision bytes.Buffer
	if err := Write(&wrongRevision, dirFS(t), p.Files, WriteOptions{Key: key.signing, Revision: "git-abc123"}); err != nil {
		t.Fatal(err)
	}

	bomb := pack(t, []entry{{tar.Header{Name: "/big.rego", Mode: 0o644, Typeflag: tar.TypeReg}, make([]byte, 2<<20)}})

	tests := []struct {
		name string
		raw  []byte
		max  int64
		want string
	}{
		{"unsigned", edit(t, good, func(es []entry) []entry {
			return slices.DeleteFunc(es, func(e entry) bool { return e.hdr.Name == "/.signatures.json" })
		}), 0, "bundle missing .signatures.json"},
		{"signed by another key", build(t, os.DirFS(policiesDir), other), 0, "verification key corresponding to ID " + other.signing.KeyID() + " not found"},
		{"a contract changed after signing", edit(t, good, replaceFile("contracts/stripe.yaml", func(b []byte) []byte {
			return bytes.Replace(b, []byte("- email"), []byte("- phone"), 1)
		})), 0, "contracts/stripe.yaml: digest mismatch"},
		{"a rule changed after signing", edit(t, good, replaceFile("egress.rego", func(b []byte) []byte {
			return append(b, []byte("\n# harmless?\n")...)
		})), 0, "egress.rego: digest mismatch"},
		{"the manifest changed after signing", edit(t, good, replaceFile(".manifest", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"revision":"`), []byte(`"revision":"0`), 1)
		})), 0, ".manifest: digest mismatch"},
		{"a file added after signing", edit(t, good, func(es []entry) []entry {
			return append(es, entry{tar.Header{Name: "/contracts/evil.yaml", Mode: 0o644, Typeflag: tar.TypeReg}, []byte("evil: {}\n")})
		}), 0, "contracts/evil.yaml not included in bundle signature"},
		{"a file removed after signing", edit(t, good, func(es []entry) []entry {
			return slices.DeleteFunc(es, func(e entry) bool { return e.hdr.Name == "/legal.rego" })
		}), 0, "specified in bundle signatures but not found"},
		{"a file twice", edit(t, good, func(es []entry) []entry {
			for _, e := range es {
				if e.hdr.Name == "/contracts/stripe.yaml" {
					return append(es, e)
				}
			}
			return es
		}), 0, "not included in bundle signature"},
		{"a signature with the payload of another bundle", edit(t, good, func(es []entry) []entry {
			for i, e := range es {
				if e.hdr.Name == "/.signatures.json" {
					for _, o := range unpack(t, build(t, os.DirFS(policiesDir), other)) {
						if o.hdr.Name == "/.signatures.json" {
							es[i].data = o.data
						}
					}
				}
			}
			return es
		}), 0, "not found"},
		{"over the size bound compressed", good, 100, "bundle too large"},
		{"over the size bound uncompressed (gzip bomb)", bomb, 1 << 20, "bundle too large: over 1048576 bytes uncompressed"},
		{"not gzip", []byte("<html>not a bundle</html>"), 0, "not a gzipped tarball"},
		{"does not compile", brokenRaw.Bytes(), 0, "egress.rego:"},
		{"a contract does not validate", badContractRaw.Bytes(), 0, "contracts/zendesk.yaml:"},
		{"manifest revision is not the content's", wrongRevision.Bytes(), 0, `manifest revision "git-abc123" is not the revision of its files`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, err := LoadPolicy(context.Background(), tt.raw, verifier(t, key), tt.max, engine.LoadOptions{})
			if err == nil {
				t.Fatalf("loaded revision %s, want a refusal", p.Revision)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v\nwant it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("no verification key", func(t *testing.T) {
		if _, err := Read(good, nil, 0); err == nil {
			t.Fatal("read without a verification key")
		}
	})
	t.Run("contract error names file and line", func(t *testing.T) {
		_, _, err := LoadPolicy(context.Background(), badContractRaw.Bytes(), verifier(t, key), 0, engine.LoadOptions{})
		want := "contracts/zendesk.yaml:"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `unknown key "colour"`) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestBuildRefusesFailingTests(t *testing.T) {
	key := newECKey(t)
	fsys := dirFS(t)
	fsys["zz_test.rego"] = &fstest.MapFile{Data: []byte("package egress_test\n\ntest_fails if { 1 == 2 }\n")}
	var buf bytes.Buffer
	_, _, err := Build(context.Background(), fsys, &buf, WriteOptions{Key: key.signing})
	if err == nil || !strings.Contains(err.Error(), "zz_test.rego:3: FAIL data.egress_test.test_fails") {
		t.Fatalf("err %v", err)
	}
	if buf.Len() != 0 {
		t.Fatal("a bundle was written although a test failed")
	}
	if _, _, err := Build(context.Background(), dirFS(t), &buf, WriteOptions{}); err == nil {
		t.Fatal("built without a signing key")
	}
}

func tarHeader(name string) tar.Header {
	return tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}
}

// TestReadRefusesAlgorithmConfusion: the classic JWT attacks on a signature
// check. The algorithm is the configured key's, never the token's: a token
// that says "none", or HS256 keyed with the (public) verification key, is
// refused.
func TestReadRefusesAlgorithmConfusion(t *testing.T) {
	key := newECKey(t)
	good := build(t, os.DirFS(policiesDir), key)
	var token string
	for _, e := range unpack(t, good) {
		if e.hdr.Name == "/.signatures.json" {
			var sc struct{ Signatures []string }
			if err := json.Unmarshal(e.data, &sc); err != nil || len(sc.Signatures) != 1 {
				t.Fatalf("signatures %s: %v", e.data, err)
			}
			token = sc.Signatures[0]
		}
	}
	payload := strings.Split(token, ".")[1]
	enc := base64.RawURLEncoding
	forge := func(alg string, sign func(signed string) string) []byte {
		hdr := enc.EncodeToString([]byte(`{"alg":"` + alg + `","kid":"` + key.signing.KeyID() + `","typ":"JWT"}`))
		signed := hdr + "." + payload
		forged := signed + "." + sign(signed)
		return edit(t, good, replaceFile(".signatures.json", func([]byte) []byte {
			b, _ := json.Marshal(map[string][]string{"signatures": {forged}})
			return b
		}))
	}
	cases := map[string][]byte{
		"none": forge("none", func(string) string { return "" }),
		"HS256 keyed with the public key": forge("HS256", func(signed string) string {
			m := hmac.New(sha256.New, key.pub)
			m.Write([]byte(signed))
			return enc.EncodeToString(m.Sum(nil))
		}),
	}
	// Control: the same surgery with the genuine token still reads, so a
	// refusal below is the signature's, not the repacking's.
	genuine := edit(t, good, replaceFile(".signatures.json", func([]byte) []byte {
		b, _ := json.Marshal(map[string][]string{"signatures": {token}})
		return b
	}))
	if _, err := Read(genuine, verifier(t, key), 0); err != nil {
		t.Fatalf("control: %v", err)
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Read(raw, verifier(t, key), 0); err == nil {
				t.Fatal("a forged signature was accepted")
			}
		})
	}
}

// TestBundleContractsOnlyFromContractsDir: a bundle, even one validly
// signed, cannot add a vendor to data.contracts past contract validation:
// not with a data file beside the contracts, nor with a Rego module of
// package contracts. Build refuses to sign such a directory, and a sidecar
// refuses such a bundle (signed by a key that skipped Build's checks),
// naming the file.
func TestBundleContractsOnlyFromContractsDir(t *testing.T) {
	const evil = `{"name": "Evil", "reference": "X-1", "role": "hosting", "hosts": ["evil.example"], ` +
		`"purposes": ["support"], "routes": [{"methods": ["POST"], "path": "/**", "body": "opaque"}]}`
	for _, tt := range []struct{ file, content string }{
		{"extra.yaml", "contracts:\n  evil: " + evil + "\n"},
		{"data.json", `{"contracts": {"evil": ` + evil + `}}`},
		{"evil.rego", "package contracts\n\nevil := " + evil + "\n"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			key := newECKey(t)
			fsys := dirFS(t)
			fsys[tt.file] = &fstest.MapFile{Data: []byte(tt.content), Mode: 0o644}
			var buf bytes.Buffer
			if _, _, err := Build(context.Background(), fsys, &buf, WriteOptions{Key: key.signing}); err == nil || !strings.Contains(err.Error(), tt.file) {
				t.Fatalf("build: %v; want an error naming %s", err, tt.file)
			}
			var files []string
			for name := range fsys {
				if !strings.HasSuffix(name, "_test.rego") && (strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".json")) {
					files = append(files, name)
				}
			}
			buf.Reset()
			if err := Write(&buf, fsys, files, WriteOptions{Key: key.signing, Revision: "any", BuiltAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if _, err := Read(buf.Bytes(), verifier(t, key), 0); err != nil {
				t.Fatalf("the signed bundle does not verify: %v", err)
			}
			_, _, err := LoadPolicy(context.Background(), buf.Bytes(), verifier(t, key), 0, engine.LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.file) {
				t.Fatalf("load: %v; want an error naming %s", err, tt.file)
			}
		})
	}
}
