package ropa

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

//go:embed ropa.html.tmpl
var pageHTML string

var page = template.Must(template.New("ropa").Funcs(template.FuncMap{
	"join": strings.Join,
	"day": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2 January 2006")
	},
	"lastday": func(t time.Time) string { return t.Add(-time.Nanosecond).UTC().Format("2 January 2006") },
}).Parse(pageHTML))

// WriteHTML writes the record as one self-contained, printable page (landscape).
func WriteHTML(w io.Writer, rec *Record) error { return page.Execute(w, rec) }

// WriteJSON writes the record as indented JSON.
func WriteJSON(w io.Writer, rec *Record) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rec)
}

// WriteCSV writes one row per processing activity, the columns of Art. 30(1); with a ledger, the
// disclosures of the period too. Lists are joined with "; "; a cell a spreadsheet would run as a
// formula is prefixed with a quote.
func WriteCSV(w io.Writer, rec *Record) error {
	cw := csv.NewWriter(w)
	head := []string{"controller", "privacy_contact", "recipient", "contract", "recipient_category", "purpose",
		"lawful_basis", "data_categories", "personal_data", "country", "third_country", "transfer_safeguard",
		"retention", "technical_measures"}
	if rec.Usage != nil {
		head = append(head, "disclosures_in_period")
	}
	rows := [][]string{head}
	for _, a := range rec.Activities {
		basis := a.Basis
		if a.BasisArticle != "" {
			basis += " (" + a.BasisArticle + ")"
		}
		transfer := a.Transfer
		if a.TransferArticle != "" {
			transfer += " (" + a.TransferArticle + ")"
		}
		row := []string{rec.Company, rec.Contact, a.Recipient, a.Reference, a.Role, a.PurposeWords, basis,
			strings.Join(a.Categories, "; "), strings.Join(a.Data, "; "), a.Country, strconv.FormatBool(a.ThirdCountry),
			transfer, a.Retention, strings.Join(a.Measures, "; ")}
		if rec.Usage != nil {
			row = append(row, strconv.Itoa(a.Disclosures))
		}
		rows = append(rows, row)
	}
	for _, row := range rows {
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				row[i] = "'" + c
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
