package filters

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

const (
	corpusPath = "testdata/cards/corpus.jsonl"
	reportPath = "testdata/cards/report.md"
)

// TestCardCorpusFile keeps the committed corpus equal to what the
// generator makes (-update rewrites it).
func TestCardCorpusFile(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, s := range generateCardCorpus() {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	if *update {
		if err := os.WriteFile(corpusPath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(corpusPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		t.Fatalf("%s is not what the generator makes (run with -update after changing the generator)", corpusPath)
	}
}

func loadCardCorpus(tb testing.TB) []cardSample {
	tb.Helper()
	f, err := os.Open(corpusPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []cardSample
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s cardSample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			tb.Fatalf("%s: %v", corpusPath, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// textView is what a text-based detector is given: the payload as text,
// a form body URL-decoded (the most favourable view for them).
func (s cardSample) textView() string {
	if s.Kind == "form" {
		if d, err := url.QueryUnescape(s.Text); err == nil {
			return d
		}
	}
	return string(s.payload())
}

var everything = func() *Mask {
	m, err := Compile([]string{"*"}, nil)
	if err != nil {
		panic(err)
	}
	return m
}()

// pareDetects runs the card guard the way the proxy would on this kind of
// payload. With CardsRedact it also returns what would leave.
func pareDetects(s cardSample, g CardGuard) (bool, []byte, error) {
	p := s.payload()
	switch s.Kind {
	case "text":
		if g == CardsRedact {
			out, n := AppendRedactCards(nil, p)
			return n > 0, out, nil
		}
		return hasCard(p), nil, nil
	case "json":
		out, rep, err := everything.JSON(nil, p, &Options{Cards: g})
		if errors.Is(err, ErrCardNumber) {
			return true, nil, nil
		}
		if err != nil {
			return false, nil, err
		}
		return len(rep.Cards) > 0, out, nil
	case "form":
		out, rep, err := everything.Form(nil, p, &Options{Cards: g})
		if errors.Is(err, ErrCardNumber) {
			return true, nil, nil
		}
		if err != nil {
			return false, nil, err
		}
		return len(rep.Cards) > 0, out, nil
	case "opaque":
		var out bytes.Buffer
		w := NewCardWriter(&out, g)
		err := writeChunks(w, p, []int{len(p) / 3, len(p) / 2})
		if errors.Is(err, ErrCardNumber) {
			return true, nil, nil
		}
		return w.Cards() > 0, out.Bytes(), err
	}
	return false, nil, fmt.Errorf("unknown kind %q", s.Kind)
}

// leftDigits returns the ASCII digits of every value in what left, each
// value's apart, so that a card number's digits can be looked for.
func leftDigits(kind string, out []byte) []string {
	var values []string
	switch kind {
	case "json":
		d := json.NewDecoder(bytes.NewReader(out))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil {
			return []string{string(out)}
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, e := range x {
					values = append(values, k)
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			case string:
				values = append(values, x)
			case json.Number:
				values = append(values, string(x))
			}
		}
		walk(v)
	case "form":
		q, _ := url.QueryUnescape(string(out))
		values = []string{q}
	default:
		values = []string{string(out)}
	}
	for i, v := range values {
		var b strings.Builder
		for _, r := range v {
			if unicode.Is(unicode.Nd, r) {
				b.WriteByte(byte('0' + refDigitValue(r)))
			}
		}
		values[i] = b.String()
	}
	return values
}

// --- Microsoft Presidio's CreditCardRecognizer ------------------------
//
// presidio-analyzer, predefined_recognizers/generic/credit_card_recognizer.py
// (read at commit 6b15e0c of microsoft/presidio): one pattern,
//
//	\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b
//
// run by PatternRecognizer with the `regex` module's finditer (flags
// DOTALL|MULTILINE; for str patterns \d is any Unicode decimal digit and
// \b a Unicode word boundary), each match validated by the Luhn checksum
// after its replacement_pairs ("-" and " " removed). A match that fails
// validation gets the minimum score and is dropped; context words only
// raise the score of a match that passed, so they change nothing here.
// Word characters are taken as the `regex` module defines them: letters,
// marks, decimal digits, connector punctuation, ZWNJ and ZWJ.

func presidioWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || r == '\u200c' || r == '\u200d'
}

func presidioDigit(r rune) bool { return unicode.Is(unicode.Nd, r) }

func presidioFind(s string) bool {
	rs := []rune(s)
	boundary := func(i int) bool {
		before := i > 0 && presidioWord(rs[i-1])
		after := i < len(rs) && presidioWord(rs[i])
		return before != after
	}
	// The tokens after the first group, tried in the engine's order:
	// an optional separator is taken when present first, a count range
	// is tried longest first.
	type tok struct {
		sep    bool
		lo, hi int
	}
	toks := []tok{{sep: true}, {lo: 3, hi: 4}, {sep: true}, {lo: 3, hi: 4}, {sep: true}, {lo: 3, hi: 5}}
	var match func(i, k int) int
	match = func(i, k int) int {
		if k == len(toks) {
			if boundary(i) {
				return i
			}
			return -1
		}
		t := toks[k]
		if t.sep {
			if i < len(rs) && (rs[i] == '-' || rs[i] == ' ') {
				if e := match(i+1, k+1); e >= 0 {
					return e
				}
			}
			return match(i, k+1)
		}
		n := 0
		for n < t.hi && i+n < len(rs) && presidioDigit(rs[i+n]) {
			n++
		}
		for c := n; c >= t.lo; c-- {
			if e := match(i+c, k+1); e >= 0 {
				return e
			}
		}
		return -1
	}
	first := func(p int) bool {
		if p+4 > len(rs) {
			return false
		}
		c := rs[p]
		ok := c == '4' || c == '6' || c == '1' || c == '3' || (c == '5' && rs[p+1] >= '0' && rs[p+1] <= '5')
		for i := 1; i < 4 && ok; i++ {
			ok = presidioDigit(rs[p+i]) || (i == 1 && c == '5')
		}
		return ok
	}
	for p := 0; p < len(rs); {
		if !boundary(p) || !presidioDigit(rs[p]) || !first(p) {
			p++
			continue
		}
		// (?!1\d{12}(?!\d)): not a 13-digit number starting with 1.
		if rs[p] == '1' && p+13 <= len(rs) {
			all := true
			for i := p + 1; i < p+13; i++ {
				all = all && presidioDigit(rs[i])
			}
			if all && (p+13 == len(rs) || !presidioDigit(rs[p+13])) {
				p++
				continue
			}
		}
		end := match(p+4, 0)
		if end < 0 {
			p++
			continue
		}
		var d []int
		for _, r := range rs[p:end] {
			if r != '-' && r != ' ' {
				d = append(d, refDigitValue(r))
			}
		}
		if refLuhn(d) {
			return true
		}
		p = end // finditer goes on after the match
	}
	return false
}

// --- Google Cloud DLP's CREDIT_CARD_NUMBER ------------------------------
//
// Google documents the infoType only as "A credit card number is 12 to 19
// digits long" and says built-in detectors use patterns, checksums and
// prefixes. Assumed here, each in the detector's favour where unsure:
// ASCII digits (RE2's \d, which DLP's custom regexes use), a token of 12 to
// 19 digits with at most one space or dash between two digits, bounded by
// non-word characters, validated as a whole by the Luhn checksum and by a
// prefix of the major schemes (Visa 4; Mastercard 51-55, 2221-2720; Amex
// 34, 37; Discover 6011, 644-649, 65; JCB 3528-3589; Diners 300-305, 36,
// 38-39; UnionPay 62; Maestro 50, 56-69) at any length. Likelihood and
// context are ignored: any such token counts as found.

var googleToken = regexp.MustCompile(`\b[0-9](?:[ -]?[0-9]){11,18}\b`)

var googlePrefixes = []struct{ lo, hi string }{
	{"4", "4"}, {"51", "55"}, {"2221", "2720"}, {"34", "34"}, {"37", "37"}, {"6011", "6011"},
	{"644", "649"}, {"65", "65"}, {"3528", "3589"}, {"300", "305"}, {"36", "36"}, {"38", "39"},
	{"62", "62"}, {"50", "50"}, {"56", "69"},
}

func googleFind(s string) bool {
	for _, m := range googleToken.FindAllString(s, -1) {
		digits := strings.NewReplacer(" ", "", "-", "").Replace(m)
		prefixOK := false
		for _, p := range googlePrefixes {
			head := digits[:len(p.lo)]
			prefixOK = prefixOK || (head >= p.lo && head <= p.hi)
		}
		if prefixOK && refLuhn(digitsOf(digits)) {
			return true
		}
	}
	return false
}

// --- the comparison -------------------------------------------------------

type corpusCount struct{ n, pare, old, presidio, google int }

type corpusReport struct {
	cats     map[string]*corpusCount
	pos, neg corpusCount
	misses   []string // card samples the guard missed
}

func evaluateCorpus(t *testing.T, samples []cardSample) *corpusReport {
	rep := &corpusReport{cats: map[string]*corpusCount{}}
	for _, s := range samples {
		found, _, err := pareDetects(s, CardsBlock)
		if err != nil {
			t.Fatalf("%s: %v\n%q", s.Cat, err, s.payload())
		}
		view := s.textView()
		c := rep.cats[s.Cat]
		if c == nil {
			c = &corpusCount{}
			rep.cats[s.Cat] = c
		}
		tot := &rep.neg
		if s.Card != "" {
			tot = &rep.pos
		}
		for _, x := range []*corpusCount{c, tot} {
			x.n++
			if found {
				x.pare++
			}
			if oldHasCard([]byte(view)) {
				x.old++
			}
			if presidioFind(view) {
				x.presidio++
			}
			if googleFind(view) {
				x.google++
			}
		}
		if s.Card != "" && !found {
			rep.misses = append(rep.misses, fmt.Sprintf("%s (%s): %q", s.Cat, s.Scheme, s.payload()))
		}
		if s.Card != "" && found {
			// Redaction must leave none of the card number's digits in
			// sequence in any value.
			_, out, err := pareDetects(s, CardsRedact)
			if err != nil {
				t.Fatalf("%s redact: %v", s.Cat, err)
			}
			for _, v := range leftDigits(s.Kind, out) {
				if strings.Contains(v, s.Card) {
					t.Errorf("%s: card number left after redaction: %q", s.Cat, out)
				}
			}
		}
	}
	return rep
}

func pct(a, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(n))
}

func (r *corpusReport) markdown() string {
	var b strings.Builder
	cats := make([]string, 0, len(r.cats))
	for c := range r.cats {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	b.WriteString("<!-- generated by TestCardCorpus (go test ./filters -run TestCardCorpus -update); do not edit -->\n")
	fmt.Fprintf(&b, "| | samples | Pare | Pare before issue 9 | Presidio | Google DLP (assumed) |\n| --- | --- | --- | --- | --- | --- |\n")
	row := func(name string, x *corpusCount) {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", name, x.n, pct(x.pare, x.n), pct(x.old, x.n), pct(x.presidio, x.n), pct(x.google, x.n))
	}
	row("**recall** (card numbers found)", &r.pos)
	row("**false positives** (look-alikes flagged)", &r.neg)
	for _, c := range cats {
		row(c, r.cats[c])
	}
	return b.String()
}

// TestCardCorpus is the guard's recall and false-positive rate over the
// labelled corpus, against Presidio's and (as documented and assumed)
// Google DLP's rules run over the same samples: recall must be 100% and
// false positives no more than the better of the two. The table is kept in
// testdata/cards/report.md (-update rewrites it) and in BENCHMARKS.md.
func TestCardCorpus(t *testing.T) {
	rep := evaluateCorpus(t, loadCardCorpus(t))
	for _, m := range rep.misses {
		t.Errorf("missed: %s", m)
	}
	if bound := min(rep.neg.presidio, rep.neg.google); rep.neg.pare > bound {
		t.Errorf("false positives %d of %d, more than the better reference's %d", rep.neg.pare, rep.neg.n, bound)
	}
	got := rep.markdown()
	t.Log("\n" + got)
	if *update {
		if err := os.WriteFile(reportPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s is out of date (run with -update, and copy it into BENCHMARKS.md):\n%s", reportPath, got)
	}
}

// TestCardWindowRules is the evidence for the detector's window rule
// (cardscan.go): the reference run with each alternative over the corpus's
// text views (JSON numbers read as text), recall and false positives by
// category.
func TestCardWindowRules(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the reference over the corpus five times")
	}
	samples := loadCardCorpus(t)
	rules := []struct {
		name string
		rule windowRule
	}{
		{"whole number", ruleWholeNumber}, {"group-aligned", ruleAligned}, {"group ends, or inside one group (Pare)", ruleGroupEnds},
		{"group starts, any end", ruleGroupStart}, {"every window", ruleAllWindows},
	}
	type count struct{ n, hit [5]int }
	cats := map[string]*count{}
	var pos, neg count
	for _, s := range samples {
		view := s.textView()
		c := cats[s.Cat]
		if c == nil {
			c = &count{}
			cats[s.Cat] = c
		}
		tot := &neg
		if s.Card != "" {
			tot = &pos
		}
		for i, r := range rules {
			found := refScanRule(view, r.rule).found
			for _, x := range []*count{c, tot} {
				x.n[i]++
				if found {
					x.hit[i]++
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("| |")
	for _, r := range rules {
		b.WriteString(" " + r.name + " |")
	}
	b.WriteString("\n|---|---|---|---|---|---|\n| **recall** |")
	for i := range rules {
		b.WriteString(" " + pct(pos.hit[i], pos.n[i]) + " |")
	}
	b.WriteString("\n| **false positives** |")
	for i := range rules {
		b.WriteString(" " + pct(neg.hit[i], neg.n[i]) + " |")
	}
	names := make([]string, 0, len(cats))
	for n := range cats {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString("\n| " + n + " |")
		for i := range rules {
			b.WriteString(" " + pct(cats[n].hit[i], cats[n].n[i]) + " |")
		}
	}
	t.Log("\n" + b.String())
}
