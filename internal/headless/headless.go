// Package headless turns a self-contained HTML page into a PDF or a PNG screenshot with a
// headless Chromium, and compares screenshots. It owns the one way Pare starts Chromium: with the
// flags that keep it off the network and a fresh profile each time, in its own process group so
// nothing outlives a call.
package headless

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// ErrNotFound is returned by Find when no Chromium is installed.
var ErrNotFound = errors.New("no Chromium found (install Debian's chromium package, or set PARE_CHROMIUM to its path)")

// Find returns the Chromium to run: $PARE_CHROMIUM, else the first of chromium, chromium-browser,
// google-chrome on PATH.
func Find() (string, error) {
	if p := os.Getenv("PARE_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("PARE_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// Browser runs one Chromium binary.
type Browser struct {
	Path string
	// Timeout bounds one run; 0 means a minute.
	Timeout time.Duration
}

// flags: headless, no sandbox (it needs user namespaces, which containers and root lack), and
// nothing that reaches for the network: on a closed network Chromium otherwise waits on its
// background fetches and never exits.
var flags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
	"--force-device-scale-factor=1", "--font-render-hinting=none",
}

// PrintPDF prints the page to PDF (A4, no header or footer: the page carries its own).
func (b Browser) PrintPDF(ctx context.Context, html []byte) ([]byte, error) {
	return b.run(ctx, html, "page.pdf", "--no-pdf-header-footer", "--print-to-pdf=")
}

// Screenshot renders the page in a window of width×height CSS pixels and returns what shows.
func (b Browser) Screenshot(ctx context.Context, html []byte, width, height int) (image.Image, error) {
	out, err := b.run(ctx, html, "page.png", "--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height), "--screenshot=")
	if err != nil {
		return nil, err
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("chromium screenshot: %w", err)
	}
	return img, nil
}

// run writes the page to a fresh directory and runs Chromium on it; the last flag is completed
// with the output file's path.
func (b Browser) run(ctx context.Context, html []byte, outName string, extra ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "pare-chromium-")
	if err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	defer os.RemoveAll(dir)
	page := filepath.Join(dir, "page.html")
	if err := os.WriteFile(page, html, 0o600); err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	out := filepath.Join(dir, outName)
	args := append([]string{"--user-data-dir=" + filepath.Join(dir, "profile")}, flags...)
	args = append(args, extra...)
	args[len(args)-1] += out
	args = append(args, "file://"+page)

	timeout := b.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.Path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "HOME="+dir) // nothing written to the real home
	ownGroup(cmd)
	// A helper that outlives the browser would hold stderr open and Wait with it; the group is
	// killed right after, so do not wait for it long.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	killGroup(cmd) // helpers (zygote, GPU process) must not outlive the call
	if err != nil {
		return nil, fmt.Errorf("chromium %s: %w: %s", filepath.Base(outName), err, tail(stderr.Bytes(), 600))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("chromium wrote no %s: %w: %s", outName, err, tail(stderr.Bytes(), 600))
	}
	return data, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
