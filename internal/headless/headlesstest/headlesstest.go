// Package headlesstest checks a page as a person sees it: rendered in headless Chromium and
// compared with a golden screenshot within a tolerance.
package headlesstest

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/pare-dev/pare/internal/headless"
)

// Window is the size pages are rendered at: an A4-ish reading width, tall enough for the
// bundled examples.
const (
	Width  = 1100
	Height = 1500
)

// The tolerance of the golden comparison: a 16×16-pixel cell differs when the mean of a colour
// channel moves by more than 8 of 255, and a render may differ in at most 1% of its cells.
//
// Why: the pages name fonts that share their metrics across systems (Liberation Sans, Arial,
// Helvetica; .ci/run installs Liberation with Chromium), so the layout (line breaks, column
// widths, row heights) is the same wherever one of them is installed, and what differs between two
// correct renders is how glyphs are rasterised. Measured on the subject report (cell/tolerance
// 16/8): the same page twice 0%; glyphs placed with subpixel precision instead (the kind of change
// another Chromium or FreeType brings) 0.4%; the regressions this check is for — the category
// tags hidden 1.2%, the summary's background turned pink 3.3%, the "Where" rows dropped 12.6%, the
// page 40px wider 12.2%, the stylesheet lost 43% — and DejaVu Sans, which is not
// metric-compatible and so moves the layout, 8.7%. Smaller cells or a lower tolerance flag glyph
// noise (subpixel glyphs: 5.6% at 8/8); a higher tolerance misses colour changes (0% at 16/16).
const (
	Cell      = 16
	Tolerance = 8.0
	MaxFrac   = 0.01
)

var update = flag.Bool("update-png", false, "rewrite the golden screenshots in testdata/")

// Browser returns the Chromium to render with. Without one the test is skipped, except under
// CI=true, where a missing Chromium is a failure: .ci/run installs it.
func Browser(t testing.TB) headless.Browser {
	t.Helper()
	p, err := headless.Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v: CI must render the pages (.ci/run installs chromium)", err)
		}
		t.Skip(err)
	}
	return headless.Browser{Path: p}
}

// Render renders a page at Window size.
func Render(t testing.TB, html []byte) image.Image {
	t.Helper()
	img, err := Browser(t).Screenshot(context.Background(), html, Width, Height)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Golden renders html and compares it with the PNG at golden; with -update-png it rewrites the
// golden instead. On a failure the difference map is written beside the golden (*.diff.png) and
// the render (*.got.png), for a person to look at.
func Golden(t testing.TB, html []byte, golden string) {
	t.Helper()
	got := Render(t, html)
	if *update {
		writePNG(t, golden, got)
		return
	}
	f, err := os.Open(golden)
	if err != nil {
		t.Fatalf("%v (run with -update-png to create it)", err)
	}
	defer f.Close()
	want, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", golden, err)
	}
	d, err := headless.Compare(want, got, Cell, Tolerance)
	if err != nil {
		t.Fatalf("%s: %v", golden, err)
	}
	t.Logf("%s: %d of %d cells differ (%.2f%%)", filepath.Base(golden), d.Differing, d.Cells, 100*d.Fraction)
	if d.Fraction > MaxFrac {
		base := golden[:len(golden)-len(filepath.Ext(golden))]
		writePNG(t, base+".got.png", got)
		writePNG(t, base+".diff.png", d.Map)
		t.Errorf("%s: the render differs in %.1f%% of its cells (at most %.0f%% allowed); see %s.diff.png and %s.got.png, and rerun with -update-png if the change is intended",
			golden, 100*d.Fraction, 100*MaxFrac, base, base)
	}
}

func writePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
