package ociimage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testCA is any PEM certificate: the builder copies it, it does not parse it.
const testCA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

// buildHello builds testdata/hello the way the image's binary is built
// (static), so these tests need no build of Pare itself.
func buildHello(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/hello")
	cmd.Env = append(os.Environ(), GoBuildEnv...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func writeCA(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, []byte(testCA), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuild(t *testing.T) {
	bin := buildHello(t)
	dir := filepath.Join(t.TempDir(), "image")
	if _, err := Build(dir, Options{Binaries: []Binary{{HostPlatform(), bin}}, CABundle: writeCA(t), Tag: "test"}); err != nil {
		t.Fatal(err)
	}
	img, err := Inspect(dir, HostPlatform())
	if err != nil {
		t.Fatal(err)
	}
	c := img.Config.Config
	if strings.Join(c.Entrypoint, " ") != BinaryPath || strings.Join(c.Cmd, " ") != "serve" || c.User != User {
		t.Errorf("entrypoint %v cmd %v user %q", c.Entrypoint, c.Cmd, c.User)
	}
	if img.Config.OS != "linux" || img.Config.Architecture != HostPlatform().Arch {
		t.Errorf("platform %s/%s", img.Config.OS, img.Config.Architecture)
	}
	for k, want := range map[string]string{"org.opencontainers.image.title": "pare", "org.opencontainers.image.source": Source,
		"org.opencontainers.image.version": "devel"} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	if img.Ref != "test" {
		t.Errorf("ref name %q", img.Ref)
	}
	if !strings.Contains(string(img.Data["/etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd does not name the user 65532:\n%s", img.Data["/etc/passwd"])
	}
	if string(img.Data[CABundle]) != testCA {
		t.Errorf("%s is not the CA bundle given", CABundle)
	}
	h := img.Files[BinaryPath]
	if h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Fatalf("%s: %+v, want an executable owned by root (not writable by the user it runs as)", BinaryPath, h)
	}
	// The binary in the image is the one built, and it runs.
	want, _ := os.ReadFile(bin)
	if !bytes.Equal(img.Data[BinaryPath], want) {
		t.Error("the image's binary differs from the one built")
	}
	run := filepath.Join(t.TempDir(), "pare")
	if err := os.WriteFile(run, img.Data[BinaryPath], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(run, "version").Output()
	if err != nil || string(out) != "hello version\n" {
		t.Errorf("the image's binary: %q, %v", out, err)
	}
}

// TestReproducible: the same binary gives the same image, byte for byte,
// so a rebuild can be checked against a published digest.
func TestReproducible(t *testing.T) {
	bin, ca := buildHello(t), writeCA(t)
	var digests []v1.Hash
	for range 2 {
		d, err := Build(filepath.Join(t.TempDir(), "image"), Options{Binaries: []Binary{{HostPlatform(), bin}}, CABundle: ca})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds, two digests: %v", digests)
	}
}

func TestBuildRefuses(t *testing.T) {
	bin, ca := buildHello(t), writeCA(t)
	exists := t.TempDir()
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("no certificates here"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A dynamically linked executable from the host (the go command is
	// static; the shell rarely is).
	dynamic := ""
	for _, c := range []string{"/bin/sh", "/bin/true", "/usr/bin/env"} {
		if f, err := os.Open(c); err == nil {
			d, err := isDynamicELF(f)
			f.Close()
			if err == nil && d {
				dynamic = c
				break
			}
		}
	}
	tests := []struct {
		name string
		dir  string
		opt  Options
		want string
	}{
		{"no binary", "", Options{CABundle: ca}, "no binary"},
		{"existing directory", exists, Options{Binaries: []Binary{{HostPlatform(), bin}}, CABundle: ca}, "exists"},
		{"missing CA bundle", "", Options{Binaries: []Binary{{HostPlatform(), bin}}, CABundle: "/nonexistent"}, "CA bundle"},
		{"CA bundle without certificates", "", Options{Binaries: []Binary{{HostPlatform(), bin}}, CABundle: notPEM}, "no PEM"},
		{"not an executable", "", Options{Binaries: []Binary{{HostPlatform(), ca}}, CABundle: ca}, "not an ELF"},
	}
	if dynamic != "" {
		tests = append(tests, struct {
			name string
			dir  string
			opt  Options
			want string
		}{"dynamically linked", "", Options{Binaries: []Binary{{HostPlatform(), dynamic}}, CABundle: ca}, "dynamically linked"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir == "" {
				dir = filepath.Join(t.TempDir(), "image")
			}
			_, err := Build(dir, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestGoBuild(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hello")
	if err := GoBuild(context.Background(), ".", "./testdata/hello", HostPlatform(), out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if d, err := isDynamicELF(f); err != nil || d {
		t.Errorf("GoBuild made a dynamic executable (%v)", err)
	}
	if err := GoBuild(context.Background(), ".", "./testdata/nope", HostPlatform(), out); err == nil {
		t.Error("building a missing package succeeded")
	}
}

func TestParsePlatform(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Platform
		err  bool
	}{
		{"linux/amd64", Platform{"linux", "amd64"}, false},
		{"linux/arm64", Platform{"linux", "arm64"}, false},
		{"windows/amd64", Platform{}, true},
		{"linux", Platform{}, true},
		{"linux/", Platform{}, true},
		{"linux/arm64/v8", Platform{}, true},
	} {
		got, err := ParsePlatform(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParsePlatform(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func FuzzParsePlatform(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlatform(s)
		if err == nil && p.String() != s {
			t.Errorf("ParsePlatform(%q) = %v: does not round-trip", s, p)
		}
	})
}
