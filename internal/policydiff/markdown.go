package policydiff

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/pare-dev/pare/internal/contract"
)

// WriteJSON writes the report as indented JSON. Everything in it is sorted
// (groups as in Report.Groups, map keys by encoding/json), so two runs over
// the same policies and seed write the same bytes.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// DefaultMaxGroups bounds the groups WriteMarkdown shows one by one: a pull
// request comment holds at most 65,536 characters. The rest are counted,
// and all of them are in the JSON.
const DefaultMaxGroups = 60

// Verdict is the report's one-line answer.
func (r *Report) Verdict() string {
	switch {
	case r.Widens && r.Counts[Widens].Groups == 0:
		return "may widen disclosure (not verified)"
	case r.Widens:
		return "widens disclosure"
	case r.Counts[Narrows].Groups > 0:
		return "narrows disclosure"
	case r.Differing > 0:
		return "changes outcomes, not what leaves"
	}
	return "no change"
}

var sectionTitles = map[Effect]string{
	Widens:  "Widens disclosure",
	Narrows: "Narrows disclosure",
	Neutral: "Other outcome, nothing more or less leaves",
	Info:    "Reason text or matched route only",
}

// WriteMarkdown writes the report for a pull request comment: the verdict,
// the counts, then each group (at most maxGroups, <= 0 for
// DefaultMaxGroups; the rest counted) with its changes, conditions, count
// and example case.
func (r *Report) WriteMarkdown(w io.Writer, maxGroups int) error {
	if maxGroups <= 0 {
		maxGroups = DefaultMaxGroups
	}
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Pare policy diff: %s\n\n", r.Verdict())
	p("**OLD** %s → **NEW** %s\n\n", sideText(r.Old), sideText(r.New))
	switch {
	case r.Identical:
		p("The two policies are the same files: every decision is the same.\n")
		return flush(b)
	case r.Sampled || r.Evaluated < r.SpaceCases:
		p("%s of the %s cases of the input space (seed %d) decided under both; %s differ.\n\n",
			num(r.Evaluated), num(r.SpaceCases), r.Seed, num(r.Differing))
	default:
		p("All %s cases of the input space (seed %d) decided under both; %s differ.\n\n", num(r.SpaceCases), r.Seed, num(r.Differing))
	}
	switch {
	case r.Widens && r.Counts[Widens].Groups == 0:
		p("> [!WARNING]\n> This change may let personal data leave in ways no case of the input space shows (see below): a privacy reviewer should read the Rego and approve it.\n\n")
	case r.Widens:
		p("> [!WARNING]\n> This change lets more personal data leave, or lets it leave in more ways: a privacy reviewer should approve it.\n\n")
	}
	if r.Differing > 0 {
		p("| effect | groups | cases |\n| --- | ---: | ---: |\n")
		for _, e := range []Effect{Widens, Narrows, Neutral, Info} {
			if c, ok := r.Counts[e]; ok {
				p("| %s | %s | %s |\n", strings.ToLower(sectionTitles[e]), num(c.Groups), num(c.Cases))
			}
		}
		p("\n")
	}
	if len(r.VendorsAdded) > 0 {
		p("Vendors added: %s.\n\n", codeList(r.VendorsAdded))
	}
	if len(r.VendorsRemoved) > 0 {
		p("Vendors removed: %s.\n\n", codeList(r.VendorsRemoved))
	}
	for _, n := range r.Notes {
		p("- %s\n", mdText(n))
	}
	if len(r.Notes) > 0 {
		p("\n")
	}
	if r.Differing == 0 {
		p("No case differs: both policies decide every evaluated case the same way.\n")
		return flush(b)
	}
	shown := 0
	var section Effect
	hidden := map[Effect]Count{}
	for _, g := range r.Groups {
		if shown >= maxGroups {
			c := hidden[g.Effect]
			c.Groups++
			c.Cases += g.Cases
			hidden[g.Effect] = c
			continue
		}
		if g.Effect != section {
			section = g.Effect
			p("### %s\n\n", sectionTitles[section])
		}
		shown++
		writeGroup(p, g)
	}
	if len(hidden) > 0 {
		p("### Not shown here\n\n")
		for _, e := range []Effect{Widens, Narrows, Neutral, Info} {
			if c, ok := hidden[e]; ok {
				p("- %s more groups, %s cases: %s\n", num(c.Groups), num(c.Cases), strings.ToLower(sectionTitles[e]))
			}
		}
		p("\nEvery group is in `proxy diff --format json`.\n")
	}
	return flush(b)
}

func flush(b *bufio.Writer) error {
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func writeGroup(p func(string, ...any), g Group) {
	who := g.VendorName
	if who == "" {
		who = g.Vendor
	}
	switch {
	case g.Random:
		if who == "" {
			p("#### Random requests to hosts no contract covers\n\n")
		} else {
			p("#### %s — random requests\n\n", mdText(who))
		}
	case g.Vendor == "":
		p("#### A host no contract covers — %s\n\n", code(strings.Join(g.Methods, ", ")))
	default:
		p("#### %s — %s %s — %s\n\n", mdText(who), code(strings.Join(g.Methods, ", ")), code(g.Route), purposesText(g.Purposes))
	}
	for _, line := range changeLines(g) {
		p("- %s\n", line)
	}
	p("\n")
	cases := "1 case"
	if g.Cases != 1 {
		cases = num(g.Cases) + " cases"
	}
	if g.Random {
		p("%s.", cases)
	} else {
		p("%s · %s · %s · %s · %s.", cases, servicesText(g), consentText(g), gpcText(g), legalText(g))
	}
	ex := g.Example
	gpc := "off"
	if ex.GPC {
		gpc = "on"
	}
	p(" Example, case %d: %s, purpose %s, service %s, consent %s, GPC %s, legal headers %s.\n\n",
		ex.Case, code(ex.Request), code(ex.Purpose), code(ex.Service), code(ex.Consent), gpc, code(ex.Legal))
}

func purposesText(ps []string) string {
	var out []string
	for _, p := range ps {
		if p == "" {
			out = append(out, "no purpose")
		} else {
			out = append(out, code(p))
		}
	}
	return "for " + strings.Join(out, ", ")
}

func servicesText(g Group) string {
	if g.AnyService {
		return "from any service"
	}
	var out []string
	for _, s := range g.Services {
		if s == "" {
			out = append(out, "no service")
		} else {
			out = append(out, code(s))
		}
	}
	return "from " + strings.Join(out, ", ")
}

func consentText(g Group) string {
	if g.AnyConsent {
		return "any consent state"
	}
	return "consent " + codeList(g.Consents)
}

func gpcText(g Group) string {
	switch {
	case g.AnyGPC:
		return "GPC on or off"
	case len(g.GPC) == 1 && g.GPC[0]:
		return "GPC on"
	}
	return "GPC off"
}

func legalText(g Group) string {
	if g.AnyLegal {
		return "any legal headers"
	}
	return "legal headers " + codeList(g.Legal)
}

// changeLines says a group's changes in words, one line each, except that
// headers that start or stop leaving and carry no personal data (the API
// key, the content type) share one line.
func changeLines(g Group) []string {
	var out []string
	var plain []string // names of the headers being folded
	flush := func(c Change) {
		if len(plain) == 0 {
			return
		}
		verb := "now sends"
		if c.Kind == KindStops {
			verb = "no longer sends"
		}
		word := "header"
		if len(plain) > 1 {
			word = "headers"
		}
		line := fmt.Sprintf("%s the %s %s (not personal data, the contract says)", verb, word, codeList(plain))
		if c.Effect != g.Effect {
			line += fmt.Sprintf(" *(%s)*", c.Effect)
		}
		out = append(out, line)
		plain = nil
	}
	foldable := func(c Change) bool {
		return (c.Kind == KindStarts || c.Kind == KindStops) && strings.HasPrefix(c.Item, contract.HeaderPrefix) && !c.Personal && c.Label == ""
	}
	for i, c := range g.Changes {
		if foldable(c) {
			plain = append(plain, strings.TrimPrefix(c.Item, contract.HeaderPrefix))
			if i+1 == len(g.Changes) || !foldable(g.Changes[i+1]) || g.Changes[i+1].Kind != c.Kind {
				flush(c)
			}
			continue
		}
		line := changeText(c)
		if c.Effect != g.Effect {
			line += fmt.Sprintf(" *(%s)*", c.Effect)
		}
		out = append(out, line)
	}
	return out
}

// changeText says a change in words, with what the item is when the
// contract says it.
func changeText(c Change) string {
	switch c.Kind {
	case KindStarts:
		return "now sends " + itemText(c, c.New)
	case KindStops:
		return "no longer sends " + itemText(c, c.Old)
	case KindTransform:
		return fmt.Sprintf("sends %s %s instead of %s", itemText(c, ""), howText(c.New), howText(c.Old))
	case KindCategoryStarts:
		return fmt.Sprintf("the data category *%s* now leaves to %s", contract.CategoryWords(c.Item), code(c.Vendor))
	case KindCategoryStops:
		return fmt.Sprintf("the data category *%s* no longer leaves to %s", contract.CategoryWords(c.Item), code(c.Vendor))
	case KindRefusalLifted:
		return fmt.Sprintf("no longer refused (was %s): now goes to %s", code(c.Old), code(c.Vendor))
	case KindRefused:
		return "now refused: " + code(c.New)
	case KindRefusalCode:
		return fmt.Sprintf("refused with %s instead of %s", code(c.New), code(c.Old))
	case KindVendor:
		return fmt.Sprintf("goes to %s instead of %s", code(c.New), code(c.Old))
	case KindBody:
		if c.Old == "" {
			return "the body is forwarded whole, unparsed (`opaque`)"
		}
		return fmt.Sprintf("body %s instead of %s", code(c.New), code(c.Old))
	case KindCards:
		if c.Old == "" {
			return "card guard " + code(c.New)
		}
		return fmt.Sprintf("card guard %s instead of %s", code(c.New), code(c.Old))
	case KindCardsCode:
		return fmt.Sprintf("a card number is refused with %s instead of %s", code(c.New), code(c.Old))
	case KindTLS:
		if c.New == "false" {
			if c.Old == "" {
				return "over plain HTTP"
			}
			return "now over plain HTTP (was TLS)"
		}
		return "now over TLS (was plain HTTP)"
	case KindPort:
		if c.Old == "" {
			return "to port " + c.New
		}
		return fmt.Sprintf("to port %s instead of %s", c.New, c.Old)
	case KindDryRun:
		if c.New == "true" {
			return "dry run: the original payload leaves, unfiltered"
		}
		return "no longer in dry run: the payload is filtered"
	case KindRoute:
		return fmt.Sprintf("matches route %s instead of %s", code(c.New), code(c.Old))
	case KindReason:
		return "only the reason text differs"
	}
	return mdText(fmt.Sprintf("%s %s %s → %s", c.Kind, c.Item, c.Old, c.New))
}

func itemText(c Change, how string) string {
	var s string
	switch {
	case strings.HasPrefix(c.Item, contract.QueryPrefix):
		s = "the query parameter " + code(strings.TrimPrefix(c.Item, contract.QueryPrefix))
	case strings.HasPrefix(c.Item, contract.HeaderPrefix):
		s = "the header " + code(strings.TrimPrefix(c.Item, contract.HeaderPrefix))
	case strings.HasPrefix(c.Item, contract.BodyPrefix):
		s = "the whole body, unparsed (" + code(c.Item) + ")"
	default:
		s = code(c.Item)
	}
	if how != "" {
		s += " " + howText(how)
	}
	var what []string
	if c.Label != "" {
		what = append(what, mdText(c.Label))
	}
	switch {
	case !c.Personal:
		what = append(what, "not personal data, the contract says")
	case len(c.Categories) > 0:
		var ws []string
		for _, cat := range c.Categories {
			ws = append(ws, contract.CategoryWords(cat))
		}
		what = append(what, strings.Join(ws, ", "))
	case !strings.HasPrefix(c.Item, contract.QueryPrefix) && !strings.HasPrefix(c.Item, contract.HeaderPrefix):
		what = append(what, "no data category declared")
	}
	if len(what) > 0 {
		s += " (" + strings.Join(what, "; ") + ")"
	}
	return s
}

func howText(how string) string {
	if how == "" {
		return "as is"
	}
	return "as " + code(how)
}

func sideText(s SideInfo) string {
	t := code(s.Source)
	var meta []string
	if s.Commit != "" {
		meta = append(meta, "commit "+code(shortRev(s.Commit)))
	}
	if s.Kind == KindBundle {
		meta = append(meta, "signed bundle")
	}
	meta = append(meta, "revision "+code(shortRev(s.Revision)))
	return t + " (" + strings.Join(meta, ", ") + ")"
}

// code puts s in a Markdown code span, long enough to hold the backticks s
// holds; an empty s shows as "none".
func code(s string) string {
	if s == "" {
		return "none"
	}
	s = strings.ReplaceAll(s, "\n", " ")
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

func codeList(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = code(s)
	}
	return strings.Join(out, ", ")
}

var mdEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "<", "&lt;", ">", "&gt;", "|", `\|`, "\n", " ")

// mdText escapes free text (labels, reasons, notes) so that Markdown shows
// it as written.
func mdText(s string) string { return mdEscaper.Replace(s) }

// num writes n with thousands separators.
func num(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
