package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var rowColors = map[int]string{
	RowFloor:        "#555555",
	RowReverseProxy: "#1f77b4",
	RowPare:         "#d62728",
	RowOPA:          "#2ca02c",
	RowExtProc:      "#9467bd",
	RowTunnel:       "#17becf",
	RowDropIn:       "#ff7f0e",
	RowBaseline:     "#8c564b",
}

// SVG plots p50 (solid) and p99 (dashed) latency against body size for the
// attendee-array series at the key concurrency, one colour per row, both
// axes logarithmic. It returns "" when there is nothing to plot.
func (r *Results) SVG() string {
	conc := r.keyConc()
	type pt struct{ x, y50, y99 float64 }
	series := map[int][]pt{}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	var ticks []Workload
	for _, w := range r.Workloads {
		if w.Nominal == 0 {
			continue
		}
		ticks = append(ticks, w)
		for _, row := range r.Rows {
			s := r.sample(row, w.Name, conc)
			if s == nil {
				continue
			}
			p := pt{float64(w.size), ms(s.Quantile(0.5)), ms(s.Quantile(0.99))}
			series[row] = append(series[row], p)
			xmin, xmax = math.Min(xmin, p.x), math.Max(xmax, p.x)
			ymin, ymax = math.Min(ymin, p.y50), math.Max(ymax, p.y99)
		}
	}
	if len(series) == 0 || ymin <= 0 {
		return ""
	}
	const (
		width, height         = 860, 500
		left, right, top, bot = 80, 230, 50, 70
	)
	pw, ph := float64(width-left-right), float64(height-top-bot)
	lx0, lx1 := math.Log10(xmin)-0.15, math.Log10(xmax)+0.15
	ly0, ly1 := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if ly1 == ly0 {
		ly1++
	}
	X := func(x float64) float64 { return left + (math.Log10(x)-lx0)/(lx1-lx0)*pw }
	Y := func(y float64) float64 { return top + ph - (math.Log10(y)-ly0)/(ly1-ly0)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">Latency vs request body size (attendee arrays, concurrency %d)</text>`+"\n", left, conc)
	// Grid and y ticks: decades, with 2× and 5× minor lines.
	for d := ly0; d <= ly1; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > ly1+1e-9 {
				break
			}
			y := Y(v)
			stroke := "#eeeeee"
			if m == 1 {
				stroke = "#cccccc"
				fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-8, y, trimFloat(v))
			}
			fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, left+pw, y, y, stroke)
		}
	}
	for _, w := range ticks {
		x := X(float64(w.size))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#cccccc"/>`+"\n", x, x, top, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+ph+18, html.EscapeString(SizeLabel(w.Nominal)))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#333333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">request body (log scale)</text>`+"\n", left+pw/2, height-22)
	fmt.Fprintf(&b, `<text transform="translate(22 %.1f) rotate(-90)" text-anchor="middle">latency, ms (log scale)</text>`+"\n", top+ph/2)

	ly := float64(top + 10)
	for _, row := range r.Rows {
		pts, ok := series[row]
		if !ok {
			continue
		}
		col := rowColors[row]
		for _, q := range []struct {
			name string
			dash string
			get  func(pt) float64
		}{{"p50", "", func(p pt) float64 { return p.y50 }}, {"p99", ` stroke-dasharray="6 4"`, func(p pt) float64 { return p.y99 }}} {
			var path strings.Builder
			for i, p := range pts {
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, X(p.x), Y(q.get(p)))
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.TrimSpace(path.String()), col, q.dash)
			for _, p := range pts {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", X(p.x), Y(q.get(p)), col)
			}
			lx := float64(left) + pw + 16
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, lx+28, ly, ly, col, q.dash)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s %s</text>`+"\n", lx+36, ly, html.EscapeString(RowName(row)), q.name)
			ly += 20
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.4f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
