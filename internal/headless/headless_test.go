package headless_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"testing"

	"github.com/pare-dev/pare/internal/headless"
	"github.com/pare-dev/pare/internal/headless/headlesstest"
)

func fill(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func TestCompare(t *testing.T) {
	white := color.RGBA{255, 255, 255, 255}
	a := fill(32, 32, white)
	for _, tc := range []struct {
		name string
		b    func() *image.RGBA
		want int // differing cells of 16 (8x8 cells)
	}{
		{"identical", func() *image.RGBA { return fill(32, 32, white) }, 0},
		// One black pixel in a 64-pixel cell moves its mean by 4: noise, not a difference.
		{"a pixel", func() *image.RGBA { b := fill(32, 32, white); b.SetRGBA(3, 3, color.RGBA{0, 0, 0, 255}); return b }, 0},
		// A block of colour is.
		{"a block", func() *image.RGBA {
			b := fill(32, 32, white)
			for y := 0; y < 8; y++ {
				for x := 8; x < 16; x++ {
					b.SetRGBA(x, y, color.RGBA{200, 40, 40, 255})
				}
			}
			return b
		}, 1},
		{"a tint everywhere", func() *image.RGBA { return fill(32, 32, color.RGBA{240, 240, 255, 255}) }, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := headless.Compare(a, tc.b(), 8, 8)
			if err != nil {
				t.Fatal(err)
			}
			if d.Cells != 16 || d.Differing != tc.want {
				t.Errorf("cells %d, differing %d; want 16, %d", d.Cells, d.Differing, tc.want)
			}
		})
	}
	if _, err := headless.Compare(a, fill(32, 31, white), 8, 8); err == nil {
		t.Error("sizes differ: want an error")
	}
	if _, err := headless.Compare(a, a, 0, 8); err == nil {
		t.Error("cell 0: want an error")
	}
}

// Chromium renders what the page says, and prints it to PDF; neither run leaves a process behind
// (the group is killed).
func TestChromium(t *testing.T) {
	b := headlesstest.Browser(t)
	page := []byte(`<!DOCTYPE html><html><body style="margin:0;background:#fff"><div style="width:100px;height:50px;background:rgb(0,128,255)"></div></body></html>`)
	img, err := b.Screenshot(context.Background(), page, 300, 200)
	if err != nil {
		t.Fatal(err)
	}
	if got := color.RGBAModel.Convert(img.At(50, 25)).(color.RGBA); got.R > 10 || got.G < 118 || got.G > 138 || got.B < 245 {
		t.Errorf("pixel in the box: %v", got)
	}
	if got := color.RGBAModel.Convert(img.At(200, 150)).(color.RGBA); got.R < 245 {
		t.Errorf("pixel outside the box: %v", got)
	}
	pdf, err := b.PrintPDF(context.Background(), page)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Errorf("not a PDF: %q", pdf[:min(16, len(pdf))])
	}
}

func TestChromiumErrors(t *testing.T) {
	b := headless.Browser{Path: "/nonexistent/chromium"}
	if _, err := b.PrintPDF(context.Background(), []byte("x")); err == nil {
		t.Error("a missing binary: want an error")
	}
	t.Setenv("PARE_CHROMIUM", "/nonexistent/chromium")
	if _, err := headless.Find(); err == nil {
		t.Error("PARE_CHROMIUM pointing nowhere: want an error")
	}
}
