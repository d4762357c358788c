package ledger

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/contract"
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
	// Audience is who the report is written for: AudienceStaff (the
	// default: field paths, vendor answers, everything recorded) or
	// AudienceSubject (the person: plain words, no technical detail).
	Audience string `json:"audience,omitempty"`
	// Company and Contact name the controller and where to ask: a report
	// for a person must say both.
	Company string    `json:"company,omitempty"`
	Contact string    `json:"privacy_contact,omitempty"`
	Subject string    `json:"subject"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	// Generated is left zero by BuildReport, so the same records always
	// render the same bytes; the caller stamps it.
	Generated   time.Time   `json:"generated,omitzero"`
	Disclosures int         `json:"disclosures"`
	Recipients  []Recipient `json:"recipients"`
}

// Audiences of a report.
const (
	AudienceStaff   = "staff"
	AudienceSubject = "subject"
)

// ReportOptions select and explain what BuildReportWith reports.
type ReportOptions struct {
	// Subject, Since and Until select the disclosures (zero: all).
	Subject      string
	Since, Until time.Time
	// Catalog, when set, explains what was sent in the contracts' words:
	// labels, data categories, lawful basis, country and retention. Without
	// it field names are turned into words as they are.
	Catalog *contract.Catalog
	// Audience, Company and Contact are copied into the report.
	Audience, Company, Contact string
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
	Paths []string `json:"paths,omitempty"`
	// LegalBases are the legal process references recorded with legal
	// disclosures (X-Legal-Basis: the case or order).
	LegalBases []string       `json:"legal_bases,omitempty"`
	Outcomes   []OutcomeCount `json:"outcomes,omitempty"`

	// What the contract says, when the report was built with a Catalog.

	// VendorName and Reference are the recipient's name and contract
	// reference as the contract gives them today.
	VendorName string `json:"vendor_name,omitempty"`
	Reference  string `json:"contract,omitempty"`
	// Items is the personal information sent, in the contract's words with
	// its categories; headers and parameters that carry none are left out.
	Items []Item `json:"items,omitempty"`
	// Categories are the data categories of Items, in words.
	Categories []string `json:"categories,omitempty"`
	// Basis is the lawful basis of the purpose (GDPR Art. 6(1)), in words,
	// and its article; empty when the contract does not say.
	Basis        string `json:"lawful_basis,omitempty"`
	BasisArticle string `json:"lawful_basis_article,omitempty"`
	// Country is where the recipient processes the data; Transfer the
	// safeguard of a transfer outside the EEA, in words; Retention how long
	// the recipient keeps it.
	Country         string `json:"country,omitempty"`
	Transfer        string `json:"transfer,omitempty"`
	TransferArticle string `json:"transfer_article,omitempty"`
	Retention       string `json:"retention,omitempty"`
}

// Item is one kind of personal information sent to a recipient.
type Item struct {
	Words      string   `json:"information"`
	Categories []string `json:"categories,omitempty"` // in words
	// Note says what was done to it, or why it is listed ("pseudonymised",
	// "sent while the policy was being tested").
	Note string `json:"note,omitempty"`
	rank int    // position of its first category, for sorting
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
	return BuildReportWith(records, ReportOptions{Subject: subject, Since: since, Until: until})
}

// BuildReportWith is BuildReport with the contracts' explanations and an
// audience (see ReportOptions).
func BuildReportWith(records []Record, o ReportOptions) *Report {
	if o.Audience == AudienceSubject && o.Catalog == nil {
		// Without contracts nothing is known to be personal but the body
		// fields: a person's report still leaves out headers and parameters.
		o.Catalog, _ = contract.NewCatalog(nil)
	}
	subject, since, until := o.Subject, o.Since, o.Until
	rep := &Report{Subject: subject, Since: since, Until: until, Recipients: []Recipient{},
		Audience: o.Audience, Company: o.Company, Contact: o.Contact}
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
		items    map[string]*Item
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
				items: map[string]*Item{},
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
		if o.Catalog != nil {
			explain(o.Catalog, r, g.items)
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
		if o.Catalog != nil {
			describeRecipient(o.Catalog, &g.rec, g.items)
		}
		if o.Audience == AudienceSubject {
			// The person reads words, not API paths or status codes.
			g.rec.Paths, g.rec.Outcomes = nil, nil
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
	var rows [][]string
	if rep.Audience == AudienceSubject {
		if err := rep.CheckForSubject(); err != nil {
			return err
		}
		rows = subjectRows(rep)
	} else {
		rows = [][]string{{"recipient", "purpose", "dry_run", "first", "last", "count",
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

// subjectRows are the CSV of a report for a person: words and dates.
func subjectRows(rep *Report) [][]string {
	rows := [][]string{{"recipient", "purpose", "first", "last", "times", "information", "categories",
		"legal_basis", "country", "safeguard", "retention", "while_testing"}}
	for _, r := range rep.Recipients {
		info := make([]string, len(r.Items))
		for i, it := range r.Items {
			info[i] = it.Words
			if it.Note != "" {
				info[i] += " (" + it.Note + ")"
			}
		}
		basis := r.Basis
		if len(r.LegalBases) > 0 {
			basis = strings.TrimSpace(basis + " under " + strings.Join(r.LegalBases, "; "))
		}
		rows = append(rows, []string{
			r.Display(), contract.PurposeWords(r.Purpose), r.First.UTC().Format(time.DateOnly), r.Last.UTC().Format(time.DateOnly),
			strconv.Itoa(r.Count), strings.Join(info, "; "), strings.Join(r.Categories, "; "),
			basis, r.Country, r.Transfer, r.Retention, strconv.FormatBool(r.DryRun),
		})
	}
	return rows
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

//go:embed report_subject.html.tmpl
var subjectHTML string

var subjectTmpl = template.Must(template.New("subject").Funcs(template.FuncMap{
	"longdate": longDate,
	// lastday is the last day an exclusive end covers: a period until
	// midnight of 29 October ends on 28 October.
	"lastday": func(t time.Time) string { return longDate(t.Add(-time.Nanosecond)) },
	"plural": func(word string, n int) string {
		if n == 1 {
			return "1 " + word
		}
		return strconv.Itoa(n) + " " + word + "s"
	},
	"purpose": contract.PurposeWords,
	"join":    strings.Join,
}).Parse(subjectHTML))

func longDate(t time.Time) string { return t.UTC().Format("2 January 2006") }

// Explained reports whether the report carries what the contracts say
// (it was built with a Catalog that knew a recipient).
func (rep *Report) Explained() bool {
	for _, r := range rep.Recipients {
		if r.Items != nil || r.Basis != "" || r.Country != "" {
			return true
		}
	}
	return false
}

// AnyDryRun reports whether a recipient's disclosures were recorded in dry
// run.
func (rep *Report) AnyDryRun() bool {
	for _, r := range rep.Recipients {
		if r.DryRun {
			return true
		}
	}
	return false
}

// CheckForSubject says what a report for a person lacks: the controller's
// name and privacy contact, and a period with real dates.
func (rep *Report) CheckForSubject() error {
	var missing []string
	if strings.TrimSpace(rep.Company) == "" {
		missing = append(missing, "the company's name")
	}
	if strings.TrimSpace(rep.Contact) == "" {
		missing = append(missing, "its privacy contact")
	}
	if rep.Since.IsZero() || rep.Until.IsZero() {
		missing = append(missing, "the period's first and last dates")
	}
	if len(missing) > 0 {
		return fmt.Errorf("a report for a person must name %s", strings.Join(missing, " and "))
	}
	return nil
}

// WriteHTML writes the report as one self-contained page: inline CSS, no
// scripts, no external assets, readable on screen and on paper. All values
// are escaped by html/template. A report for a person (AudienceSubject)
// reads as a letter: the contracts' words, categories, legal basis, where
// each recipient is and how long it keeps the data, and no field paths,
// headers or status codes; it needs Company, Contact, Since and Until.
func WriteHTML(w io.Writer, rep *Report) error {
	if rep.Audience == AudienceSubject {
		if err := rep.CheckForSubject(); err != nil {
			return err
		}
		return subjectTmpl.Execute(w, rep)
	}
	return reportTmpl.Execute(w, rep)
}
