package datamap

import (
	_ "embed"
	"encoding/json"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/contract"
)

func purposeLabel(p string) string { return contract.PurposeWords(p) }

//go:embed datamap.html.tmpl
var pageHTML string

var page = template.Must(template.New("datamap").Funcs(template.FuncMap{
	"join":    strings.Join,
	"purpose": purposeLabel,
	"day":     func(t time.Time) string { return t.UTC().Format("2 January 2006") },
	"lastday": func(t time.Time) string { return t.Add(-time.Nanosecond).UTC().Format("2 January 2006") },
}).Parse(pageHTML))

type pageData struct {
	*Map
	// SVG is built by svg(), which escapes every string it draws.
	SVG template.HTML
}

// WriteHTML writes the map as one self-contained page: the SVG, and the same flows as a table.
func WriteHTML(w io.Writer, m *Map) error {
	return page.Execute(w, pageData{Map: m, SVG: template.HTML(svg(m))})
}

// WriteJSON writes the map's flows and vendors as indented JSON.
func WriteJSON(w io.Writer, m *Map) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}
