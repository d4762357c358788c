package policydiff

import (
	"bytes"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"unicode"
)

// FuzzParseSpec: any argument parses or is refused with an error; a git
// source never has a revision git could read as an option, nor a path that
// leaves the repository. Seeds in testdata/fuzz/FuzzParseSpec.
func FuzzParseSpec(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		switch sp.Kind {
		case KindDir:
			if sp.Path != s || strings.HasPrefix(s, GitPrefix) {
				t.Errorf("%q: %+v", s, sp)
			}
		case KindGit:
			if sp.Rev == "" || strings.HasPrefix(sp.Rev, "-") || strings.ContainsFunc(sp.Rev, func(r rune) bool {
				return unicode.IsSpace(r) || unicode.IsControl(r) || r == ':'
			}) {
				t.Errorf("%q: revision %q", s, sp.Rev)
			}
			if !fs.ValidPath(sp.Path) {
				t.Errorf("%q: path %q", s, sp.Path)
			}
		default:
			t.Errorf("%q: kind %q", s, sp.Kind)
		}
	})
}

// FuzzTarFS: any bytes read as an archive give an error or plain relative
// paths holding at most the limit, never a panic. Seeds in
// testdata/fuzz/FuzzTarFS (git archive output among them).
func FuzzTarFS(f *testing.F) {
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, raw []byte) {
		fsys, err := TarFS(bytes.NewReader(raw), limit)
		if err != nil {
			return
		}
		total := 0
		err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !fs.ValidPath(p) {
				t.Errorf("path %q", p)
			}
			if !d.IsDir() {
				b, err := fs.ReadFile(fsys, p)
				if err != nil {
					return err
				}
				total += len(b)
			}
			return nil
		})
		if err != nil || total > limit {
			t.Errorf("walk: %v, %d bytes", err, total)
		}
	})
}

// FuzzSameFiles: any `git ls-tree -r -z` output is checked against a
// policy's files without a panic, and accepted only when it lists exactly
// those files, all blobs. Seeds in testdata/fuzz/FuzzSameFiles.
func FuzzSameFiles(f *testing.F) {
	fsys := fstest.MapFS{"egress.rego": {Data: []byte("package egress\n")}, "contracts/a.yaml": {Data: []byte("a:\n")}}
	f.Fuzz(func(t *testing.T, listing string) {
		if sameFiles(fsys, listing) != nil {
			return
		}
		var names []string
		for _, e := range strings.Split(listing, "\x00") {
			if e == "" {
				continue
			}
			meta, name, _ := strings.Cut(e, "\t")
			if f := strings.Fields(meta); len(f) != 3 || f[1] != "blob" {
				t.Errorf("%q accepted: %q is not a blob", listing, e)
			}
			names = append(names, name)
		}
		slices.Sort(names)
		names = slices.Compact(names)
		if !slices.Equal(names, []string{"contracts/a.yaml", "egress.rego"}) {
			t.Errorf("%q accepted: lists %q", listing, names)
		}
	})
}
