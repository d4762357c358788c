package policydiff

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "policies", want: Spec{Kind: KindDir, Path: "policies"}},
		{in: "/tmp/bundle.tar.gz", want: Spec{Kind: KindDir, Path: "/tmp/bundle.tar.gz"}},
		{in: "./git:main", want: Spec{Kind: KindDir, Path: "./git:main"}},
		{in: "git:main", want: Spec{Kind: KindGit, Rev: "main", Path: "policies"}},
		{in: "git:origin/main~1", want: Spec{Kind: KindGit, Rev: "origin/main~1", Path: "policies"}},
		{in: "git:v1.2:deploy/policies/", want: Spec{Kind: KindGit, Rev: "v1.2", Path: "deploy/policies"}},
		{in: "git:HEAD:", want: Spec{Kind: KindGit, Rev: "HEAD", Path: "."}},
		{in: "git:HEAD:.", want: Spec{Kind: KindGit, Rev: "HEAD", Path: "."}},
		{in: "", err: "empty"},
		{in: "git:", err: "no revision"},
		{in: "git::policies", err: "no revision"},
		{in: "git:--output=/tmp/x", err: "starts with '-'"},
		{in: "git:main branch", err: "space"},
		{in: "git:main\x00", err: "control"},
		{in: "git:main:../secrets", err: "relative to the repository"},
		{in: "git:main:/etc", err: "relative to the repository"},
		{in: "git:main:a//b", err: "relative to the repository"},
	} {
		got, err := ParseSpec(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSpec(%q): %v, want an error with %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
		case got != tc.want:
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// git runs git in dir with a fixed identity and no user or system config.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Policy Author", "GIT_AUTHOR_EMAIL=author@webinar-co.example",
		"GIT_COMMITTER_NAME=Policy Author", "GIT_COMMITTER_EMAIL=author@webinar-co.example")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// writeTree writes fsys into dir.
func writeTree(t *testing.T, fsys fs.FS, dir string) {
	t.Helper()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// gitRepo is a temporary repository with two commits: the bundled policies
// under policies/, then Zendesk's contract gaining the requester's phone.
func gitRepo(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (.ci/run installs it)")
	}
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	writeTree(t, policies.FS, filepath.Join(dir, "policies"))
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "policies")
	writeTree(t, variant(t, zendeskPhone...), filepath.Join(dir, "policies"))
	git(t, dir, "commit", "-q", "-am", "zendesk: the requester's phone")
	return dir
}

func TestGitSource(t *testing.T) {
	ctx := context.Background()
	repo := gitRepo(t)
	bundled, err := engine.Load(ctx, policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opt := SourceOptions{Repo: repo}
	old, err := Open(ctx, "git:HEAD~1", opt)
	if err != nil {
		t.Fatal(err)
	}
	if old.Kind != KindGit || old.Commit != git(t, repo, "rev-parse", "HEAD~1") || old.Policy.Revision != bundled.Revision {
		t.Errorf("git:HEAD~1 = %+v, revision %s; want the first commit and the bundled revision %s", old, old.Policy.Revision, bundled.Revision)
	}
	// The same directory named with its path; and from a subdirectory of the
	// work tree (git finds the repository, the path stays the root's).
	sub := filepath.Join(repo, "policies", "contracts")
	new, err := Open(ctx, "git:main:policies", SourceOptions{Repo: sub})
	if err != nil {
		t.Fatal(err)
	}
	if new.Policy.Revision == old.Policy.Revision || new.Commit != git(t, repo, "rev-parse", "HEAD") {
		t.Errorf("git:main:policies = commit %s revision %s", new.Commit, new.Policy.Revision)
	}
	r, err := Compare(ctx, old, new, Options{Filter: only("zendesk", "POST", "/api/v2/tickets{,.json}", "support"), Scope: "Zendesk"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Widens || r.Old.Commit != old.Commit || !hasChange(r, Change{Effect: Widens, Kind: KindStarts, Vendor: "zendesk",
		Item: "ticket/requester/phone", Label: "phone number", Categories: []string{"contact"}, Personal: true}) {
		t.Errorf("report of git:HEAD~1 against git:main: widens %v, %d groups", r.Widens, len(r.Groups))
	}
	// The work tree is not what a git source reads: an edit on disk does not
	// show.
	if err := os.WriteFile(filepath.Join(repo, "policies", "egress.rego"), []byte("package egress\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := Open(ctx, "git:HEAD", opt); err != nil || again.Policy.Revision != new.Policy.Revision {
		t.Errorf("git:HEAD after a work tree edit: %v", err)
	}

	for _, tc := range []struct{ arg, err string }{
		{"git:no-such-branch", "not a commit"},
		{"git:HEAD:no/such/dir", "no/such/dir"},
		{"git:HEAD:policies/egress.rego", "policies/egress.rego"},
		{"git:HEAD:policies/contracts", "no rule defines"}, // contracts without the Rego
	} {
		if _, err := Open(ctx, tc.arg, opt); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Open(%s): %v, want an error with %q", tc.arg, err, tc.err)
		}
	}
	if _, err := Open(ctx, "git:HEAD", SourceOptions{Repo: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a commit") {
		t.Errorf("git source outside a repository: %v", err)
	}
}

// A policy that does not compile at a revision is an error naming the
// revision, the file and the line.
func TestGitSourceBrokenPolicy(t *testing.T) {
	ctx := context.Background()
	repo := gitRepo(t)
	f := filepath.Join(repo, "policies", "contracts", "zendesk.yaml")
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, bytes.Replace(b, []byte("  role: support\n"), []byte("  role: support\n  colour: blue\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "commit", "-q", "-am", "broken")
	_, err := Open(ctx, "git:HEAD", SourceOptions{Repo: repo})
	if err == nil || !strings.Contains(err.Error(), "zendesk.yaml:") || !strings.Contains(err.Error(), "colour") || !strings.Contains(err.Error(), "git:HEAD (commit") {
		t.Errorf("broken policy at HEAD: %v", err)
	}
}

// A symbolic link in the policies directory of a revision is refused: it
// would name something outside what the commit holds.
func TestGitSourceRefusesLinks(t *testing.T) {
	repo := gitRepo(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(repo, "policies", "contracts", "passwd.yaml")); err != nil {
		t.Skip(err)
	}
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "link")
	if _, err := Open(context.Background(), "git:HEAD", SourceOptions{Repo: repo}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a link in the policies: %v", err)
	}
}

func TestBundleSource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keyFile, pubFile := filepath.Join(dir, "ci.pem"), filepath.Join(dir, "ci.pub.pem")
	writeKeys(t, keyFile, pubFile)
	otherPub := filepath.Join(dir, "other.pub.pem")
	writeKeys(t, filepath.Join(dir, "other.pem"), otherPub)
	kb, _ := os.ReadFile(keyFile)
	key, err := bundle.ParseSigningKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	built, _, err := bundle.Build(ctx, policies.FS, &raw, bundle.WriteOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(file, raw.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, file, SourceOptions{BundleKeys: []string{pubFile}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != KindBundle || s.Policy.Revision != built.Revision {
		t.Errorf("bundle source %+v; want the revision of the directory it was built from", s)
	}
	for _, tc := range []struct {
		keys []string
		err  string
	}{
		{nil, "--bundle-key"},
		{[]string{otherPub}, "verif"},
		{[]string{filepath.Join(dir, "missing.pem")}, "missing.pem"},
	} {
		if _, err := Open(ctx, file, SourceOptions{BundleKeys: tc.keys}); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("bundle with keys %v: %v, want an error with %q", tc.keys, err, tc.err)
		}
	}
	// A file that is not a bundle, and a bundle changed after signing.
	notBundle := filepath.Join(dir, "notes.txt")
	os.WriteFile(notBundle, []byte("not a tarball"), 0o644)
	if _, err := Open(ctx, notBundle, SourceOptions{BundleKeys: []string{pubFile}}); err == nil {
		t.Error("a text file opened as a bundle")
	}
	if _, err := Open(ctx, filepath.Join(dir, "nothing-here"), SourceOptions{}); err == nil || !strings.Contains(err.Error(), "nothing-here") {
		t.Errorf("a missing source: %v", err)
	}
}

func writeKeys(t *testing.T, priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTarFS(t *testing.T) {
	type entry struct {
		name string
		typ  byte
		body string
	}
	mk := func(es ...entry) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Size: int64(len(e.body)), Mode: 0o644}
			if e.typ == tar.TypeSymlink {
				h.Linkname, h.Size = "/etc/passwd", 0
			}
			if e.typ == tar.TypeDir {
				h.Size = 0
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Size > 0 {
				tw.Write([]byte(e.body))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	fsys, err := TarFS(bytes.NewReader(mk(entry{"contracts/", tar.TypeDir, ""}, entry{"contracts/a.yaml", tar.TypeReg, "a: {}"}, entry{"egress.rego", tar.TypeReg, "package egress"})), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fs.ReadFile(fsys, "contracts/a.yaml"); err != nil || string(b) != "a: {}" {
		t.Errorf("contracts/a.yaml: %q %v", b, err)
	}
	for name, raw := range map[string][]byte{
		"link":          mk(entry{"x.yaml", tar.TypeSymlink, ""}),
		"dotdot":        mk(entry{"../x.rego", tar.TypeReg, "x"}),
		"absolute":      mk(entry{"/x.rego", tar.TypeReg, "x"}),
		"twice":         mk(entry{"x.rego", tar.TypeReg, "x"}, entry{"x.rego", tar.TypeReg, "y"}),
		"below a file":  mk(entry{"x", tar.TypeReg, "x"}, entry{"x/y.rego", tar.TypeReg, "y"}),
		"file and dir":  mk(entry{"x/y.rego", tar.TypeReg, "y"}, entry{"x", tar.TypeReg, "x"}),
		"over the size": mk(entry{"a.rego", tar.TypeReg, strings.Repeat("a", 600)}, entry{"b.rego", tar.TypeReg, strings.Repeat("b", 600)}),
		"not a tar":     []byte("garbage that is not a tarball at all, but long enough to look at................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."),
	} {
		if _, err := TarFS(bytes.NewReader(raw), 1000); err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}

// The revision under review writes its own .gitattributes: a file it marks
// export-ignore, which git archive leaves out but a checkout (and a bundle
// built from it) holds, must not slip past the diff; nor a submodule, which
// git archive leaves empty and a checkout may fill. (A .gitattributes above
// the policies directory does not reach git archive of the directory's tree.)
func TestGitSourceHoldsEveryFileOfTheTree(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, repo string)
		err  string
	}{
		{"export-ignore in the policies", func(t *testing.T, repo string) {
			os.WriteFile(filepath.Join(repo, "policies", "hidden.rego"), []byte("package egress\n"), 0o644)
			os.WriteFile(filepath.Join(repo, "policies", ".gitattributes"), []byte("hidden.rego export-ignore\n"), 0o644)
			git(t, repo, "add", ".")
			git(t, repo, "commit", "-q", "-m", "hidden")
		}, "left out hidden.rego"},
		{"submodule", func(t *testing.T, repo string) {
			// Staged straight into the index: `git add` would drop a gitlink
			// with no directory in the work tree.
			git(t, repo, "update-index", "--add", "--cacheinfo", "160000,"+git(t, repo, "rev-parse", "HEAD")+",policies/vendored")
			git(t, repo, "commit", "-q", "-m", "submodule")
		}, "vendored is not a file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := gitRepo(t)
			tc.edit(t, repo) // and commits
			if _, err := Open(ctx, "git:HEAD", SourceOptions{Repo: repo}); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Open(git:HEAD): %v, want an error with %q", err, tc.err)
			}
		})
	}
}
