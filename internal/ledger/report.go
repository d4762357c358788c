package ledger

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report says what was disclosed about one person, to whom and why: the
// accounting of disclosures a privacy officer gives under GDPR Art. 15(1)(c)
// (recipients) and HIPAA 45 CFR 164.528 (date, recipient, what, purpose).
//
// What counts as a disclosure: every "disclosure" record, whatever the
// vendor answered. The record is written before the request is sent, so a
// vendor error (500) or a failed connection does not prove that nothing
// left; the report errs on the side of listing it, and shows the answers.
// Refusals (nothing left) and outcome records are not disclosures.
// Disclosures recorded in dry-run mode, where the policy was evaluated but
// not enforced, are listed in rows of their own, labelled.
type Report struct {
	Subject string    `json:"subject"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	// Generated is left zero by BuildReport, so the same records always
	// render the same bytes; the caller stamps it.
	Generated   time.Time   `json:"generated,omitzero"`
	Disclosures int         `json:"disclosures"`
	Recipients  []Recipient `json:"recipients"`
}

// Recipient groups the disclosures to one vendor for one purpose.
type Recipient struct {
	Vendor string `json:"vendor"`
	// Name is the recipient's identity as recorded (name and contract
	// reference), from the latest disclosure that carried one.
	Name    string    `json:"name,omitempty"`
	Purpose string    `json:"purpose"`
	DryRun  bool      `json:"dry_run"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	Count   int       `json:"count"`
	// Fields is the union of what was sent, in plain words, with what a
	// transform did to it ("receipt email address (pseudonymised)").
	Fields []string `json:"fields"`
	// Paths is the same union as recorded, for the technical reader.
	Paths      []string       `json:"paths"`
	LegalBases []string       `json:"legal_bases,omitempty"`
	Outcomes   []OutcomeCount `json:"outcomes"`
}

// Display is how a person reads the recipient: its recorded name, or the
// vendor id when records predate names.
func (r Recipient) Display() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Vendor
}

// OutcomeCount counts what the vendor answered: a status code, or
// "not recorded" when no outcome record was found.
type OutcomeCount struct {
	Outcome string `json:"outcome"`
	Count   int    `json:"count"`
}

// NotRecorded is the outcome of a disclosure without an outcome record (the
// process stopped before the vendor answered, or the answer was not logged).
const NotRecorded = "not recorded"

// BuildReport groups the disclosures in records about subject (all subjects
// when empty) made in [since, until) (zero: unbounded) by vendor, purpose and
// dry-run. records are typically Query's result; outcome records among them
// are matched to their disclosure by DecisionID.
func BuildReport(records []Record, subject string, since, until time.Time) *Report {
	rep := &Report{Subject: subject, Since: since, Until: until, Recipients: []Recipient{}}
	outcomes := map[string]string{}
	for i := range records {
		if r := &records[i]; r.Kind == KindOutcome && r.DecisionID != "" {
			outcomes[r.DecisionID] = r.Outcome
		}
	}
	type key struct {
		vendor, purpose string
		dry             bool
	}
	type acc struct {
		rec      Recipient
		fields   map[string]bool
		paths    map[string]bool
		bases    map[string]bool
		outcomes map[string]int
	}
	groups := map[key]*acc{}
	f := Filter{Subject: subject, Since: since, Until: until}
	for i := range records {
		r := &records[i]
		if r.Kind != KindDisclosure || !f.match(r) {
			continue
		}
		k := key{r.Vendor, r.Purpose, r.DryRun}
		g := groups[k]
		if g == nil {
			g = &acc{
				rec:    Recipient{Vendor: r.Vendor, Purpose: r.Purpose, DryRun: r.DryRun, First: r.Time, Last: r.Time},
				fields: map[string]bool{}, paths: map[string]bool{}, bases: map[string]bool{}, outcomes: map[string]int{},
			}
			groups[k] = g
		}
		g.rec.Count++
		if r.Recipient != "" && !r.Time.Before(g.rec.Last) {
			g.rec.Name = r.Recipient
		}
		if r.Time.Before(g.rec.First) {
			g.rec.First = r.Time
		}
		if r.Time.After(g.rec.Last) {
			g.rec.Last = r.Time
		}
		// What left: the fields sent as they were and the transformed ones,
		// which left in their transformed form.
		sent := append(append([]string(nil), r.FieldsSent...), r.Transformed...)
		for p := range r.Transforms {
			sent = append(sent, p)
		}
		transformed := map[string]bool{}
		for _, p := range r.Transformed {
			transformed[p] = true
		}
		for _, p := range sent {
			g.paths[p] = true
			d := Describe(p)
			if t, ok := r.Transforms[p]; ok {
				d += " (" + DescribeTransform(t) + ")"
			} else if transformed[p] {
				d += " (transformed)"
			}
			g.fields[d] = true
		}
		if r.LegalBasis != "" {
			g.bases[r.LegalBasis] = true
		}
		out, ok := outcomes[r.DecisionID]
		if !ok || r.DecisionID == "" {
			out = r.Outcome
		}
		if out == "" {
			out = NotRecorded
		}
		g.outcomes[out]++
		rep.Disclosures++
	}
	for _, g := range groups {
		g.rec.Fields = sortedKeys(g.fields)
		g.rec.Paths = sortedKeys(g.paths)
		if len(g.bases) > 0 {
			g.rec.LegalBases = sortedKeys(g.bases)
		}
		g.rec.Outcomes = []OutcomeCount{}
		for _, o := range sortedKeys(g.outcomes) {
			g.rec.Outcomes = append(g.rec.Outcomes, OutcomeCount{o, g.outcomes[o]})
		}
		rep.Recipients = append(rep.Recipients, g.rec)
	}
	sort.Slice(rep.Recipients, func(i, j int) bool {
		a, b := rep.Recipients[i], rep.Recipients[j]
		if a.Vendor != b.Vendor {
			return a.Vendor < b.Vendor
		}
		if a.Purpose != b.Purpose {
			return a.Purpose < b.Purpose
		}
		return !a.DryRun && b.DryRun
	})
	return rep
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteCSV writes one row per recipient. Lists are joined with "; ". Cells
// that a spreadsheet would run as a formula are prefixed with a quote, since
// vendor and purpose names come from configuration and request headers.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	rows := [][]string{{"recipient", "purpose", "dry_run", "first", "last", "count",
		"information", "field_paths", "legal_basis", "vendor_answers"}}
	for _, r := range rep.Recipients {
		rows = append(rows, []string{
			r.Display(), r.Purpose, strconv.FormatBool(r.DryRun),
			r.First.UTC().Format(time.RFC3339), r.Last.UTC().Format(time.RFC3339),
			strconv.Itoa(r.Count),
			strings.Join(r.Fields, "; "), strings.Join(r.Paths, "; "),
			strings.Join(r.LegalBases, "; "), outcomeText(r.Outcomes),
		})
	}
	for _, row := range rows {
		for i, c := range row {
			row[i] = csvSafe(c)
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func outcomeText(counts []OutcomeCount) string {
	parts := make([]string, 0, len(counts))
	for _, o := range counts {
		parts = append(parts, o.Outcome+" ×"+strconv.Itoa(o.Count))
	}
	return strings.Join(parts, "; ")
}

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2 Jan 2006 15:04 UTC")
	},
	"day":      func(t time.Time) string { return t.UTC().Format("2 Jan 2006") },
	"outcomes": outcomeText,
	"join":     strings.Join,
}).Parse(reportHTML))

// WriteHTML writes the report as one self-contained page: inline CSS, no
// scripts, no external assets, readable on screen and on paper. All values
// are escaped by html/template.
func WriteHTML(w io.Writer, rep *Report) error {
	return reportTmpl.Execute(w, rep)
}
