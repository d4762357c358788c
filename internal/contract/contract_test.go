package contract

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// TestTestdata runs every testdata file as a subtest: *.good.* files must load cleanly, *.bad.*
// files must fail with exactly the errors their "# want:" lines list (substrings, one error each),
// which also proves that all problems are reported at once.
func TestTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*")
	if err != nil {
		t.Fatal(err)
	}
	var good, bad int
	for _, file := range files {
		name := filepath.Base(file)
		if fi, err := os.Stat(file); err == nil && fi.IsDir() {
			continue // testdata/fuzz: the fuzz tests' seeds
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(name, data)
			switch {
			case strings.Contains(name, ".good."):
				good++
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				if c == nil || c.ID != strings.SplitN(name, ".", 2)[0] {
					t.Fatalf("contract id: got %+v", c)
				}
			case strings.Contains(name, ".bad."):
				bad++
				wants := wantLines(string(data))
				if len(wants) == 0 {
					t.Fatal("a .bad. file needs # want: lines")
				}
				if err == nil {
					t.Fatal("want an error, got none")
				}
				got := strings.Split(err.Error(), "\n")
				ok := len(got) == len(wants)
				for _, w := range wants {
					if !containsLine(got, w) {
						t.Errorf("missing error %q", w)
						ok = false
					}
				}
				if !ok {
					t.Errorf("got %d errors, want %d:\n%s", len(got), len(wants), err)
				}
			default:
				t.Fatal("testdata files are named *.good.* or *.bad.*")
			}
		})
	}
	if good == 0 || bad == 0 {
		t.Fatalf("found %d good and %d bad testdata files", good, bad)
	}
}

func wantLines(s string) []string {
	var wants []string
	for _, line := range strings.Split(s, "\n") {
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			wants = append(wants, w)
		}
	}
	return wants
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// The bundled contracts are valid, and the set spans every role the privacy policy names.
func TestBundledContracts(t *testing.T) {
	cs, err := LoadDir("../../policies/contracts")
	if err != nil {
		t.Fatalf("bundled contracts:\n%v", err)
	}
	roles := map[string]bool{}
	for _, c := range cs {
		roles[c.Role] = true
	}
	for _, r := range Roles {
		if !roles[r] {
			t.Errorf("no bundled contract of role %s", r)
		}
	}
}

const okContract = `%s:
  name: Vendor
  reference: REF-1
  role: support
  hosts: [%s]
  purposes: [support]
  routes: [{methods: [GET], path: /x, body: none}]
`

func contractFile(id, host string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(strings.ReplaceAll(strings.Replace(okContract, "%s", id, 1), "%s", host))}
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{
		"contracts/alpha.yaml":      contractFile("alpha", "api.alpha.example"),
		"contracts/beta.yml":        contractFile("beta", "api.beta.example"),
		"contracts/README.md":       {Data: []byte("not a contract")},
		"contracts/.hidden.yaml":    {Data: []byte("not: [valid")},
		"contracts/.git/HEAD":       {Data: []byte("ref")},
		"policies/contracts/x.yaml": contractFile("x", "x.example"),
	}
	cs, err := LoadFS(fsys, "contracts")
	if err != nil {
		t.Fatal(err)
	}
	got := HostIndex(cs)
	want := map[string][]string{"alpha": {"api.alpha.example"}, "beta": {"api.beta.example"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("HostIndex: got %v, want %v", got, want)
	}
	if cs["beta"].File != "contracts/beta.yml" {
		t.Errorf("File: got %q", cs["beta"].File)
	}
}

func TestLoadFSErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fsys  fstest.MapFS
		wants []string
	}{{
		name: "host claimed twice",
		fsys: fstest.MapFS{
			"contracts/alpha.yaml": contractFile("alpha", "api.shared.example"),
			"contracts/beta.yaml":  contractFile("beta", "api.shared.example"),
		},
		wants: []string{`contracts/beta.yaml:5: host "api.shared.example" is also claimed by alpha (contracts/alpha.yaml)`},
	}, {
		name: "vendor defined twice",
		fsys: fstest.MapFS{
			"contracts/alpha.yaml": contractFile("alpha", "api.alpha.example"),
			"contracts/alpha.json": {Data: []byte(`{"alpha": {"name": "A", "reference": "R", "role": "support", "hosts": ["a.example"], "purposes": ["support"], "routes": [{"methods": ["GET"], "path": "/", "body": "none"}]}}`)},
		},
		wants: []string{`contracts/alpha.yaml:2: vendor "alpha" is also defined in contracts/alpha.json`},
	}, {
		name: "subdirectory",
		fsys: fstest.MapFS{
			"contracts/alpha.yaml":    contractFile("alpha", "api.alpha.example"),
			"contracts/old/beta.yaml": contractFile("beta", "api.beta.example"),
		},
		wants: []string{"contracts/old: subdirectories are not allowed"},
	}, {
		name: "every file's problems at once",
		fsys: fstest.MapFS{
			"contracts/alpha.yaml": {Data: []byte("alpha:\n  nme: A\n")},
			"contracts/beta.yaml":  {Data: []byte("beta: [\n")},
		},
		wants: []string{
			`contracts/alpha.yaml:2: unknown key "nme"`,
			"contracts/beta.yaml:2: did not find expected node content",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadFS(tc.fsys, "contracts")
			if err == nil {
				t.Fatal("want an error")
			}
			got := strings.Split(err.Error(), "\n")
			for _, w := range tc.wants {
				if !containsLine(got, w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if len(got) != len(tc.wants) {
				t.Errorf("got %d errors, want %d:\n%v", len(got), len(tc.wants), err)
			}
		})
	}
}

func TestLoadMissingDir(t *testing.T) {
	_, err := LoadFS(fstest.MapFS{}, "contracts")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want fs.ErrNotExist, got %v", err)
	}
	_, err = LoadDir(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want fs.ErrNotExist, got %v", err)
	}
}

// LoadDir names files by the directory it was given, so errors point at the file to edit.
func TestLoadDirNamesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "contracts")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alpha.yaml"), []byte("alpha:\n  nme: A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadDir(dir)
	want := filepath.ToSlash(dir) + `/alpha.yaml:2: unknown key "nme"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("want %q, got %v", want, err)
	}
}

// A contract built in code (no file, no lines) validates too, with file-only positions.
func TestValidateInCode(t *testing.T) {
	c := &Contract{ID: "code", Name: "Code", Reference: "C-1", Role: "support", Hosts: []string{"code.example"}, Purposes: []string{"support"}}
	err := c.Validate()
	if err == nil || err.Error() != "code: routes: at least one route is required (a contract with no routes allows nothing)" {
		t.Fatalf("got %v", err)
	}
	c.Routes = []Route{{Methods: []string{"GET"}, Path: "/", Body: BodyNone}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "contracts/x.yaml", Line: 3, Msg: "m"}
	if e.Error() != "contracts/x.yaml:3: m" {
		t.Fatal(e.Error())
	}
	e.Line = 0
	if e.Error() != "contracts/x.yaml: m" {
		t.Fatal(e.Error())
	}
}
