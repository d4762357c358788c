package headless

import (
	"fmt"
	"image"
	"image/color"
)

// Difference says how far two screenshots are apart.
type Difference struct {
	Cells     int     // cells compared
	Differing int     // cells whose mean colour differs by more than the tolerance
	Fraction  float64 // Differing / Cells
	// Map is b dimmed, with the differing cells painted red: what to look at when a check fails.
	Map *image.RGBA
}

// Compare compares two screenshots of the same size cell by cell: a cell of cell×cell pixels
// differs when the mean of any of its colour channels differs by more than tol (0-255).
//
// Means over cells, not pixels, because what a render check must catch is layout and colour (a
// column gone, a table overflowing, a style lost) while what differs between two correct renders
// on two machines is the anti-aliasing and hinting of glyphs: those move single pixels a lot and
// a cell's mean a little.
func Compare(a, b image.Image, cell int, tol float64) (Difference, error) {
	ab, bb := a.Bounds(), b.Bounds()
	if ab.Dx() != bb.Dx() || ab.Dy() != bb.Dy() {
		return Difference{}, fmt.Errorf("screenshots of %dx%d and %dx%d: sizes differ", ab.Dx(), ab.Dy(), bb.Dx(), bb.Dy())
	}
	if cell < 1 {
		return Difference{}, fmt.Errorf("cell size %d: want 1 or more", cell)
	}
	w, h := ab.Dx(), ab.Dy()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	var d Difference
	for y0 := 0; y0 < h; y0 += cell {
		for x0 := 0; x0 < w; x0 += cell {
			var sa, sb [3]float64
			n := 0
			for y := y0; y < y0+cell && y < h; y++ {
				for x := x0; x < x0+cell && x < w; x++ {
					ca := color.RGBAModel.Convert(a.At(ab.Min.X+x, ab.Min.Y+y)).(color.RGBA)
					cb := color.RGBAModel.Convert(b.At(bb.Min.X+x, bb.Min.Y+y)).(color.RGBA)
					sa[0], sa[1], sa[2] = sa[0]+float64(ca.R), sa[1]+float64(ca.G), sa[2]+float64(ca.B)
					sb[0], sb[1], sb[2] = sb[0]+float64(cb.R), sb[1]+float64(cb.G), sb[2]+float64(cb.B)
					// the map: b at a third of its contrast
					m.SetRGBA(x, y, color.RGBA{170 + cb.R/3, 170 + cb.G/3, 170 + cb.B/3, 255})
					n++
				}
			}
			d.Cells++
			differs := false
			for i := range sa {
				if diff := (sa[i] - sb[i]) / float64(n); diff > tol || diff < -tol {
					differs = true
				}
			}
			if !differs {
				continue
			}
			d.Differing++
			for y := y0; y < y0+cell && y < h; y++ {
				for x := x0; x < x0+cell && x < w; x++ {
					m.SetRGBA(x, y, color.RGBA{230, 40, 40, 255})
				}
			}
		}
	}
	d.Fraction = float64(d.Differing) / float64(d.Cells)
	d.Map = m
	return d, nil
}
