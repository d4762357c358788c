package policydiff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"testing/fstest"
	"unicode"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/engine"
)

// Kinds of policy source.
const (
	KindDir    = "dir"    // a policies directory on disk
	KindBundle = "bundle" // a signed bundle file (proxy bundle build)
	KindGit    = "git"    // a policies directory at a git revision
)

// GitPrefix starts a git source: git:REV is the repository's policies/ at
// REV, git:REV:PATH the directory PATH (relative to the repository's root).
const GitPrefix = "git:"

// DefaultGitPath is the policies directory of a git source without a path.
const DefaultGitPath = "policies"

// MaxSourceBytes bounds what a git revision's policies directory may hold
// (and a bundle file's size: bundle.DefaultMaxBytes, the limit sidecars
// apply): the diff holds it in memory.
const MaxSourceBytes = bundle.DefaultMaxBytes

// Spec is a parsed source argument.
type Spec struct {
	Kind string
	Path string // the directory or bundle file; for git, the directory in the repository
	Rev  string // git only
}

// ParseSpec reads a source argument: "git:REV[:PATH]" is a git source;
// anything else is a path, a directory or a bundle file (told apart when
// opened). A directory whose name starts with "git:" is given as
// "./git:...".
func ParseSpec(s string) (Spec, error) {
	if s == "" {
		return Spec{}, errors.New("empty policy source")
	}
	rest, ok := strings.CutPrefix(s, GitPrefix)
	if !ok {
		return Spec{Kind: KindDir, Path: s}, nil
	}
	rev, p, hasPath := strings.Cut(rest, ":")
	if err := checkRev(rev); err != nil {
		return Spec{}, fmt.Errorf("policy source %q: %w", s, err)
	}
	if !hasPath {
		p = DefaultGitPath
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		p = "."
	}
	if !fs.ValidPath(p) {
		return Spec{}, fmt.Errorf("policy source %q: path %q: want a directory relative to the repository's root, without .. or a leading /", s, p)
	}
	return Spec{Kind: KindGit, Path: p, Rev: rev}, nil
}

// checkRev refuses what git could read as an option or that no revision
// holds; git itself says whether the revision exists.
func checkRev(rev string) error {
	switch {
	case rev == "":
		return errors.New("no revision after \"git:\"")
	case strings.HasPrefix(rev, "-"):
		return fmt.Errorf("revision %q starts with '-'", rev)
	case len(rev) > 256:
		return errors.New("revision longer than 256 characters")
	}
	for _, r := range rev {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("revision %q holds a space or control character", rev)
		}
	}
	return nil
}

// SourceOptions say how to open sources.
type SourceOptions struct {
	// BundleKeys are the PEM public keys a bundle must be signed with (one
	// of them), as for `serve --bundle-key`. A bundle source without keys is
	// refused: the diff judges a policy exactly as a sidecar would accept it.
	BundleKeys []string
	// Repo is the directory git runs in (-C) for git sources; "" is the
	// current directory. Any directory inside the work tree will do.
	Repo string
	// Git is the git binary; "" is "git" from PATH.
	Git string
}

// Side is one compiled policy of a comparison.
type Side struct {
	// Label is what the user named it (the argument as given).
	Label string
	// Kind is KindDir, KindBundle or KindGit.
	Kind string
	// Commit is the commit a git source resolved to.
	Commit string
	// Policy is the compiled policy.
	Policy *engine.Policy
}

// Open compiles the policy a source argument names, through engine.Load as
// serve compiles one (Rego compiled, every contract validated): errors name
// the file and line. A bundle is verified against opt.BundleKeys first.
func Open(ctx context.Context, arg string, opt SourceOptions) (*Side, error) {
	spec, err := ParseSpec(arg)
	if err != nil {
		return nil, err
	}
	// The diff decides every case once per policy: a decision cache would
	// only hold memory (every case differs in what the policy reads).
	lopt := engine.LoadOptions{CacheBytes: -1}
	side := &Side{Label: arg, Kind: spec.Kind}
	switch spec.Kind {
	case KindGit:
		fsys, commit, err := gitFS(ctx, opt, spec)
		if err != nil {
			return nil, err
		}
		side.Commit = commit
		if side.Policy, err = engine.Load(ctx, fsys, lopt); err != nil {
			return nil, fmt.Errorf("%s (commit %s): %w", arg, shortRev(commit), err)
		}
		return side, nil
	}
	info, err := os.Stat(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("policy source %s: %w", arg, err)
	}
	if info.IsDir() {
		if side.Policy, err = engine.LoadDir(ctx, spec.Path, lopt); err != nil {
			return nil, err
		}
		return side, nil
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("policy source %s: neither a policies directory nor a bundle file", arg)
	}
	side.Kind = KindBundle
	if len(opt.BundleKeys) == 0 {
		return nil, fmt.Errorf("policy source %s is a bundle: give --bundle-key PUB.pem to verify it with (bundles are judged as a sidecar accepts them: signed)", arg)
	}
	vc, err := bundle.VerificationConfigFromFiles(opt.BundleKeys...)
	if err != nil {
		return nil, err
	}
	raw, err := readBounded(spec.Path, MaxSourceBytes)
	if err != nil {
		return nil, fmt.Errorf("policy source %s: %w", arg, err)
	}
	if side.Policy, _, err = bundle.LoadPolicy(ctx, raw, vc, MaxSourceBytes, lopt); err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	return side, nil
}

func readBounded(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("over %d bytes", max)
	}
	return b, nil
}

// gitFS resolves spec.Rev to a commit and reads the directory spec.Path of
// that commit with `git archive`, into memory. git is run through os/exec
// rather than a Go implementation of git: the repository is the user's,
// with whatever object storage, alternates and config it has, and git reads
// it as the user's own git does.
func gitFS(ctx context.Context, opt SourceOptions, spec Spec) (fs.FS, string, error) {
	bin := opt.Git
	if bin == "" {
		bin = "git"
	}
	dir := opt.Repo
	run := func(stdout io.Writer, args ...string) error {
		if dir != "" {
			args = append([]string{"-C", dir}, args...)
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = stdout, &limitedBuffer{buf: &stderr, max: 4096}
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				return fmt.Errorf("git %s: %w", args[len(args)-1], err)
			}
			return fmt.Errorf("git %s: %w: %s", args[len(args)-1], err, msg)
		}
		return nil
	}
	var out bytes.Buffer
	// --end-of-options: a revision is never read as an option, whatever
	// checkRev let through.
	if err := run(&limitedBuffer{buf: &out, max: 4096}, "rev-parse", "--verify", "--quiet", "--end-of-options", spec.Rev+"^{commit}"); err != nil {
		return nil, "", fmt.Errorf("%s%s: not a commit in the repository: %w", GitPrefix, spec.Rev, err)
	}
	commit := strings.TrimSpace(out.String())
	// git archive run in a subdirectory of the work tree archives only
	// that subdirectory: run it at the top, where PATH is relative to. (A
	// bare repository has no top: it runs where it is.)
	var top bytes.Buffer
	if run(&limitedBuffer{buf: &top, max: 4096}, "rev-parse", "--show-toplevel") == nil && strings.TrimSpace(top.String()) != "" {
		dir = strings.TrimSpace(top.String())
	}
	tree := commit + ":"
	if spec.Path != "." {
		tree += spec.Path
	}
	var archive bytes.Buffer
	lb := &limitedBuffer{buf: &archive, max: MaxSourceBytes + 64<<10} // tar headers on top of the files
	if err := run(lb, "archive", "--format=tar", tree); err != nil {
		if lb.over {
			return nil, "", fmt.Errorf("%s%s: %s holds more than %d bytes", GitPrefix, spec.Rev, spec.Path, MaxSourceBytes)
		}
		return nil, "", fmt.Errorf("%s%s: read %s: %w", GitPrefix, spec.Rev, spec.Path, err)
	}
	fsys, err := TarFS(&archive, MaxSourceBytes)
	if err != nil {
		return nil, "", fmt.Errorf("%s%s: %s: %w", GitPrefix, spec.Rev, spec.Path, err)
	}
	// git archive leaves out what .gitattributes marks export-ignore, and
	// the revision under review writes its own .gitattributes: a pull
	// request could hide a Rego file from the diff that a checkout (and the
	// bundle built from it) holds. The tree's own listing is the truth; an
	// archive that differs from it is refused.
	var listing bytes.Buffer
	llb := &limitedBuffer{buf: &listing, max: 8 << 20}
	if err := run(llb, "ls-tree", "-r", "-z", "--full-tree", tree); err != nil {
		return nil, "", fmt.Errorf("%s%s: list %s: %w", GitPrefix, spec.Rev, spec.Path, err)
	}
	if err := sameFiles(fsys, listing.String()); err != nil {
		return nil, "", fmt.Errorf("%s%s: %s: %w", GitPrefix, spec.Rev, spec.Path, err)
	}
	return fsys, commit, nil
}

// sameFiles checks that fsys (what git archive wrote) holds exactly the
// files of a `git ls-tree -r -z` listing: none left out (export-ignore), no
// submodule (a checkout may fill it; the archive never does).
func sameFiles(fsys fs.FS, listing string) error {
	want := map[string]bool{}
	for _, e := range strings.Split(strings.TrimSuffix(listing, "\x00"), "\x00") {
		if e == "" {
			continue
		}
		meta, name, ok := strings.Cut(e, "\t")
		if !ok {
			return fmt.Errorf("git ls-tree: unexpected entry %q", e)
		}
		if f := strings.Fields(meta); len(f) != 3 || f[1] != "blob" {
			return fmt.Errorf("%s is not a file (%s): a submodule is not part of a policy from git", name, meta)
		}
		want[name] = true
	}
	got := map[string]bool{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			got[p] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	for name := range want {
		if !got[name] {
			return fmt.Errorf("git archive left out %s (export-ignore in .gitattributes?): the diff would not see a file a checkout holds", name)
		}
	}
	for name := range got {
		if !want[name] {
			return fmt.Errorf("git archive wrote %s, which the tree does not hold", name)
		}
	}
	return nil
}

// limitedBuffer keeps at most max bytes and then fails the write, which
// makes git stop with a broken pipe instead of filling memory.
type limitedBuffer struct {
	buf  *bytes.Buffer
	max  int64
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if int64(l.buf.Len()+len(p)) > l.max {
		l.over = true
		return 0, errors.New("output too large")
	}
	return l.buf.Write(p)
}

// TarFS reads a tar stream (as `git archive` writes it) into an in-memory
// file system: regular files and directories only, at valid relative paths,
// at most max bytes of file content in all. A link or a device is refused:
// a policy directory holds files, and a link would point outside what the
// revision holds.
func TarFS(r io.Reader, max int64) (fs.FS, error) {
	tr := tar.NewReader(r)
	out := fstest.MapFS{}
	dirs := map[string]bool{} // parents of the files so far
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		switch h.Typeflag {
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
			continue // git's commit id comment; pax records
		case tar.TypeDir:
			if name != "" && name != "." && !fs.ValidPath(name) {
				return nil, fmt.Errorf("read archive: directory %q: not a plain relative path", h.Name)
			}
			continue
		case tar.TypeReg:
		default:
			return nil, fmt.Errorf("read archive: %s is not a regular file (type %q): links are not followed in a policy from git", h.Name, h.Typeflag)
		}
		if !fs.ValidPath(name) || name == "." {
			return nil, fmt.Errorf("read archive: file %q: not a plain relative path", h.Name)
		}
		if out[name] != nil || dirs[name] {
			return nil, fmt.Errorf("read archive: %s is in the archive twice (or also a directory)", name)
		}
		if h.Size < 0 || total+h.Size > max {
			return nil, fmt.Errorf("read archive: over %d bytes of files", max)
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, fmt.Errorf("read archive: %s: %w", name, err)
		}
		total += int64(len(b))
		out[name] = &fstest.MapFile{Data: b, Mode: 0o444}
		// A file below another file would make an impossible tree, which
		// fstest.MapFS would show as both.
		for dir := path.Dir(name); dir != "." && !dirs[dir]; dir = path.Dir(dir) {
			if out[dir] != nil {
				return nil, fmt.Errorf("read archive: %s is below the file %s", name, dir)
			}
			dirs[dir] = true
		}
	}
}

func shortRev(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
