package datamap

import (
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Geometry of the picture, in SVG user units (CSS pixels at 100%).
const (
	width      = 1040.0
	boxLeftX   = 20.0
	boxLeftW   = 190.0
	boxRightX  = 700.0
	boxRightW  = 320.0
	topY       = 46.0
	boxGap     = 16.0
	slotGap    = 3.0
	bandMax    = 300.0 // all observed disclosures together are this thick
	bandMin    = 3.0   // a single disclosure stays visible
	allowedW   = 1.6   // the stroke of a flow only the contracts allow
	lineHeight = 14.0
)

// palette colours purposes in the order they sort; chosen to stay apart for the common forms of
// colour blindness as far as ten colours can, and printable.
var palette = []string{"#3b6fc4", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#b91c1c", "#475569", "#a16207"}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

type box struct {
	y, h   float64
	cursor float64 // next free slot's top
}

// WriteSVG draws the map as one standalone SVG document.
func WriteSVG(w io.Writer, m *Map) error {
	_, err := io.WriteString(w, svg(m))
	return err
}

func svg(m *Map) string {
	// Purposes and their colours.
	var purposes []string
	seenP := map[string]bool{}
	for _, f := range m.Flows {
		if !seenP[f.Purpose] {
			seenP[f.Purpose] = true
			purposes = append(purposes, f.Purpose)
		}
	}
	sort.Strings(purposes)
	colour := map[string]string{}
	for i, p := range purposes {
		colour[p] = palette[i%len(palette)]
	}

	total := 0
	for _, f := range m.Flows {
		total += f.Count
	}
	thick := func(f Flow) float64 { return bandWidth(f.Count, total) }

	// Services, in the order of their flows; "any service" last.
	var services []string
	seenS := map[string]bool{}
	for _, f := range m.Flows {
		if !seenS[f.Service] {
			seenS[f.Service] = true
			services = append(services, f.Service)
		}
	}
	left := map[string]*box{}
	y := topY
	for _, s := range services {
		h := 16.0
		n := 0
		for _, f := range m.Flows {
			if f.Service == s {
				h += thick(f) + slotGap
				n++
			}
		}
		h = max(h, 40)
		left[s] = &box{y: y, h: h, cursor: y + 8}
		y += h + boxGap
	}
	leftEnd := y

	right := map[string]*box{}
	y = topY
	for _, v := range m.Vendors {
		h := 16.0
		for _, f := range m.Flows {
			if f.Vendor == v.ID {
				h += thick(f) + slotGap
			}
		}
		text := 8 + 18 + 2*lineHeight + float64(len(v.Categories))*lineHeight
		h = max(h, text)
		right[v.ID] = &box{y: y, h: h, cursor: y + 8}
		y += h + boxGap
	}
	height := max(leftEnd, y) + 30 + lineHeight*1.4*float64((len(purposes)+2)/3+1)

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %s %s" width="%s" height="%s" font-family="Liberation Sans, Arial, Helvetica, sans-serif" role="img" aria-label="Where personal data goes">`+"\n",
		f1(width), f1(height), f1(width), f1(height))
	fmt.Fprintf(&b, `<text x="%s" y="24" font-size="13" font-weight="700" fill="#4b5565">SERVICES</text>`, f1(boxLeftX))
	fmt.Fprintf(&b, `<text x="%s" y="24" font-size="13" font-weight="700" fill="#4b5565">RECIPIENTS</text>`+"\n", f1(boxRightX))

	// Bands first, under the boxes. Vendor-side slots follow the order of services so bands
	// do not cross more than they must.
	for _, f := range m.Flows {
		l, r := left[f.Service], right[f.Vendor]
		if l == nil || r == nil {
			continue
		}
		t := thick(f)
		y0, y1 := l.cursor, r.cursor
		l.cursor += t + slotGap
		r.cursor += t + slotGap
		x0, x1 := boxLeftX+boxLeftW, boxRightX
		mx := (x0 + x1) / 2
		title := flowTitle(f, m)
		if f.Count == 0 {
			cy0, cy1 := y0+t/2, y1+t/2
			fmt.Fprintf(&b, `<path d="M%s %s C%s %s %s %s %s %s" fill="none" stroke="%s" stroke-width="%s" stroke-dasharray="5 4" opacity=".7"><title>%s</title></path>`+"\n",
				f1(x0), f1(cy0), f1(mx), f1(cy0), f1(mx), f1(cy1), f1(x1), f1(cy1), colour[f.Purpose], f1(allowedW), esc(title))
			continue
		}
		fmt.Fprintf(&b, `<path d="M%s %s C%s %s %s %s %s %s L%s %s C%s %s %s %s %s %s Z" fill="%s" opacity=".55"><title>%s</title></path>`+"\n",
			f1(x0), f1(y0), f1(mx), f1(y0), f1(mx), f1(y1), f1(x1), f1(y1),
			f1(x1), f1(y1+t), f1(mx), f1(y1+t), f1(mx), f1(y0+t), f1(x0), f1(y0+t),
			colour[f.Purpose], esc(title))
	}

	// Service boxes.
	for _, s := range services {
		l := left[s]
		name, fill, stroke, dash := s, "#eef3fb", "#3b6fc4", ""
		if s == "" {
			name, fill, stroke, dash = "any service", "#fff", "#9ca3af", ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" rx="5" fill="%s" stroke="%s"%s/>`, f1(boxLeftX), f1(l.y), f1(boxLeftW), f1(l.h), fill, stroke, dash)
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="14" font-weight="700" fill="#1d2330">%s</text>`+"\n", f1(boxLeftX+10), f1(l.y+22), esc(name))
	}
	// Vendor boxes.
	for _, v := range m.Vendors {
		r := right[v.ID]
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" rx="5" fill="#fff" stroke="#9ca3af"/>`, f1(boxRightX), f1(r.y), f1(boxRightW), f1(r.h))
		tx := boxRightX + 12
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="14" font-weight="700" fill="#1d2330">%s</text>`, f1(tx), f1(r.y+20), esc(v.Name))
		where := v.Role
		if v.Country != "" {
			where += " · " + v.Country
			if v.Transfer != "" {
				where += " (" + v.Transfer + ")"
			}
		}
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="12" fill="#4b5565">%s</text>`, f1(tx), f1(r.y+20+lineHeight+2), esc(where))
		ly := r.y + 20 + 2*lineHeight + 4
		for _, c := range v.Categories {
			fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="11.5" fill="#1d2330">• %s</text>`, f1(tx+4), f1(ly), esc(c))
			ly += lineHeight
		}
		if m.Observed {
			fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="12" text-anchor="end" fill="#4b5565">%d</text>`, f1(boxRightX+boxRightW-10), f1(r.y+20), v.Count)
		}
		b.WriteString("\n")
	}

	// Legend: purposes, then what a dashed line means.
	ly := max(leftEnd, y) + 14
	for i, p := range purposes {
		x := boxLeftX + float64(i%3)*340
		yy := ly + float64(i/3)*lineHeight*1.4
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="14" height="10" fill="%s" opacity=".7"/><text x="%s" y="%s" font-size="12" fill="#1d2330">%s</text>`,
			f1(x), f1(yy), colour[p], f1(x+20), f1(yy+9), esc(purposeLabel(p)))
	}
	ly += float64((len(purposes)+2)/3) * lineHeight * 1.4
	note := "Band width: disclosures recorded in the period. Dashed: allowed by a contract, not seen."
	if !m.Observed {
		note = "Dashed: allowed by a contract (no ledger read, so no volumes)."
	}
	fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="12" fill="#4b5565">%s</text>`+"\n", f1(boxLeftX), f1(ly+10), esc(note))
	b.WriteString("</svg>\n")
	return b.String()
}

// bandWidth is a flow's thickness: its share of all disclosures, linearly (a flow twice as busy
// is twice as wide), never thinner than bandMin; a flow with no disclosures is a dashed line.
func bandWidth(count, total int) float64 {
	if count <= 0 || total <= 0 {
		return allowedW
	}
	return max(bandMin, float64(count)/float64(total)*bandMax)
}

func flowTitle(f Flow, m *Map) string {
	name := f.Vendor
	for _, v := range m.Vendors {
		if v.ID == f.Vendor {
			name = v.Name
		}
	}
	svc := f.Service
	if svc == "" {
		svc = "any service"
	}
	s := fmt.Sprintf("%s → %s for %s", svc, name, purposeLabel(f.Purpose))
	switch {
	case f.Count == 1:
		s += ": 1 disclosure"
	case f.Count > 1:
		s += fmt.Sprintf(": %d disclosures", f.Count)
	default:
		s += ": allowed, not seen"
	}
	if len(f.Categories) > 0 {
		s += "; " + strings.Join(f.Categories, ", ")
	}
	return s
}
