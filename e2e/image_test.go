package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/ociimage"
)

// TestImage checks the release image that `go run ./cmd/image` built, read
// back from its OCI layout as a registry client would: the entrypoint, the
// non-root user, the labels, and that the binary in it runs. .ci/run builds
// the image and runs this with PARE_IMAGE_LAYOUT set; `go test ./...` skips
// it, because the image's static binary is a second compile of every
// package (a minute and a half of the 2-core budget), and
// internal/ociimage's own tests check the same structure on a small binary.
func TestImage(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("PARE_IMAGE_LAYOUT")
	if dir == "" {
		t.Skip("PARE_IMAGE_LAYOUT is not set: .ci/run builds the image with go run ./cmd/image and sets it")
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if _, err := ociimage.Inspect(dir, ociimage.Platform{OS: "linux", Arch: arch}); err != nil {
			t.Errorf("the release image lacks linux/%s: %v", arch, err)
		}
	}
	img, err := ociimage.Inspect(dir, ociimage.HostPlatform())
	if err != nil {
		t.Fatal(err)
	}
	c := img.Config.Config
	if strings.Join(c.Entrypoint, " ") != "/pare" || strings.Join(c.Cmd, " ") != "serve" {
		t.Errorf("entrypoint %q, cmd %q: want /pare serve", c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q: want 65532:65532, the chart's runAsUser", c.User)
	}
	if !strings.Contains(string(img.Data["/etc/passwd"]), ":65532:65532:") {
		t.Error("/etc/passwd does not name user 65532")
	}
	for _, k := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version"} {
		if c.Labels[k] == "" {
			t.Errorf("label %s missing (labels %v)", k, c.Labels)
		}
	}
	if h := img.Files["/pare"]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Fatalf("/pare: %+v, want an executable owned by root", h)
	}
	// The image's binary is the same program as the one under test: its
	// help lists the same commands.
	imgHelp, _ := runFresh(writeExec(t, img.Data["/pare"]), "help")
	ownHelp, _ := runFresh(proxyBin, "help")
	if !bytes.Equal(imgHelp, ownHelp) {
		t.Errorf("the image's /pare help differs from this checkout's:\n%s\nvs\n%s", imgHelp, ownHelp)
	}

	// The binary, taken out of the image, runs: `proxy version`, and a
	// check of its embedded policies.
	bin := writeExec(t, img.Data["/pare"])
	out, err := runFresh(bin, "version")
	if err != nil || !strings.HasPrefix(string(out), "pare ") {
		t.Fatalf("/pare version: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("ledger: "+filepath.Join(t.TempDir(), "l.jsonl")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runFresh(bin, "check", "--config", cfg); err != nil {
		t.Fatalf("/pare check --config: %v\n%s", err, out)
	}
}

// runFresh runs a binary this process has just written. A fork made by a
// parallel test between the write and the close can still hold the file
// open for writing until its exec, which makes this exec fail with ETXTBSY
// (golang.org/issue/22315); that passes, so try again.
func runFresh(bin string, args ...string) ([]byte, error) {
	for i := 0; ; i++ {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if !errors.Is(err, syscall.ETXTBSY) || i == 50 {
			return out, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeExec(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pare")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
