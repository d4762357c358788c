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

// TestImage packs the binary the e2e tests run into the container image,
// reads the image back from its OCI layout as a registry client would, and
// checks what a cluster relies on: the entrypoint, the non-root user, the
// labels, and that the binary in the image is this one and runs.
func TestImage(t *testing.T) {
	t.Parallel()
	ca := startStub(t).CAFile // any PEM bundle: the image ships what it is given
	dir := filepath.Join(t.TempDir(), "image")
	if _, err := ociimage.Build(dir, ociimage.Options{
		Binaries: []ociimage.Binary{{Platform: ociimage.HostPlatform(), Path: proxyBin}}, CABundle: ca,
	}); err != nil {
		t.Fatal(err)
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
	want, err := os.ReadFile(proxyBin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.Data["/pare"], want) {
		t.Fatal("/pare in the image is not the binary the e2e tests run")
	}

	// The binary, taken out of the image, runs: `proxy version`, and a
	// check of its embedded policies.
	bin := filepath.Join(t.TempDir(), "pare")
	if err := os.WriteFile(bin, img.Data["/pare"], 0o755); err != nil {
		t.Fatal(err)
	}
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
