package filters

import (
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// refCards is the slow reference of the card guard: the rules of
// cardscan.go said again the plain way, with regular expressions for the
// character classes and numbers, the IIN table read from cardSchemes as
// written (not the merged spans), Luhn over each window's digits, and every
// window of every number tried. The fuzz and random tests hold the real
// detector to it.

var (
	refSpacer    = `\t ./\p{Zs}\p{Pd}\x{2212}\x{FE52}\x{FF0E}\x{FF0F}\x{2215}\x{2044}`
	refInvisible = `\x00\x{AD}\x{200B}-\x{200D}\x{2060}\x{FEFF}`
	// refNumberRe finds digit sequences joined by separators; the gap
	// limits are counted after.
	refNumberRe = regexp.MustCompile(`\p{Nd}(?:[` + refSpacer + refInvisible + `]*\p{Nd})*`)
	refDigitRe  = regexp.MustCompile(`\p{Nd}`)
	refSpacerRe = regexp.MustCompile(`[` + refSpacer + `]`)
)

type refDigit struct {
	val        int
	start, end int // byte offsets
	groupStart bool
}

type refResult struct {
	found          bool
	first0, first1 int // byte range of the first card number
	redacted       string
	cards          int
}

// refDigitValue counts back to the start of the contiguous stretch of
// digits r is in: Unicode lays decimal digits out in whole blocks of ten.
func refDigitValue(r rune) int {
	lo := r
	for unicode.Is(unicode.Nd, lo-1) {
		lo--
	}
	return int(r-lo) % 10
}

// refNumbers splits s into numbers (digit lists), applying the gap limits.
func refNumbers(s string) [][]refDigit {
	var out [][]refDigit
	for _, m := range refNumberRe.FindAllStringIndex(s, -1) {
		text := s[m[0]:m[1]]
		var cur []refDigit
		gapStart := -1
		for _, d := range refDigitRe.FindAllStringIndex(text, -1) {
			r, _ := utf8.DecodeRuneInString(text[d[0]:])
			dig := refDigit{val: refDigitValue(r), start: m[0] + d[0], end: m[0] + d[1], groupStart: true}
			if gapStart >= 0 {
				gap := text[gapStart:d[0]]
				spacers := len(refSpacerRe.FindAllStringIndex(gap, -1))
				invisibles := utf8.RuneCountInString(gap) - spacers
				switch {
				case spacers > maxSpacers || invisibles > maxInvisibles:
					out = append(out, cur)
					cur = nil
				case spacers == 0:
					dig.groupStart = false
				}
			}
			cur = append(cur, dig)
			gapStart = d[1]
		}
		out = append(out, cur)
	}
	return out
}

func refLuhn(d []int) bool {
	sum := 0
	for i := range d {
		v := d[len(d)-1-i]
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// refIIN reports whether a window's digits are in a scheme's range for
// its length, reading cardSchemes as written.
func refIIN(d []int) bool {
	head := 0
	for i := range 6 {
		head = head*10 + d[i]
	}
	for _, s := range refSchemes {
		if !s.lengths[len(d)] {
			continue
		}
		for _, p := range s.prefixes {
			v := head
			for range 6 - p.digits {
				v /= 10
			}
			if v >= p.lo && v <= p.hi {
				return true
			}
		}
	}
	return false
}

type refPrefix struct{ lo, hi, digits int }

// refSchemes is cardSchemes parsed as written, once.
var refSchemes = func() []struct {
	lengths  map[int]bool
	prefixes []refPrefix
} {
	var out []struct {
		lengths  map[int]bool
		prefixes []refPrefix
	}
	for _, s := range cardSchemes {
		var e struct {
			lengths  map[int]bool
			prefixes []refPrefix
		}
		e.lengths = map[int]bool{}
		for _, l := range strings.Split(s.lengths, ",") {
			a, b, ok := strings.Cut(l, "-")
			if !ok {
				b = a
			}
			x, _ := strconv.Atoi(a)
			y, _ := strconv.Atoi(b)
			for n := x; n <= y; n++ {
				e.lengths[n] = true
			}
		}
		for _, p := range strings.Split(s.prefix, ",") {
			a, b, ok := strings.Cut(p, "-")
			if !ok {
				b = a
			}
			lo, _ := strconv.Atoi(a)
			hi, _ := strconv.Atoi(b)
			e.prefixes = append(e.prefixes, refPrefix{lo, hi, len(a)})
		}
		out = append(out, e)
	}
	return out
}()

// windowRule is which windows the reference tries: the detector's rule
// (ruleGroupEnds) and the alternatives the corpus weighs it against
// (TestCardWindowRules).
type windowRule int

const (
	ruleGroupEnds   windowRule = iota // start at a segment start or after zeros; end at a group end, or anywhere inside one group
	ruleGroupStart                    // start as ruleGroupEnds; end anywhere
	ruleAllWindows                    // start and end anywhere
	ruleAligned                       // start as ruleGroupEnds; end at a group end
	ruleWholeNumber                   // the whole number only (after leading zeros)
)

func refScan(s string) refResult { return refScanRule(s, ruleGroupEnds) }

func refScanRule(s string, rule windowRule) refResult {
	res := refResult{first0: -1, first1: -1}
	type span struct{ start, end int }
	var marked []span // byte ranges of maximal runs of marked digits
	for _, num := range refNumbers(s) {
		mark := make([]bool, len(num))
		join := make([]bool, len(num)) // a card number covers i-1 and i
		// segStart[i]: digit i begins a segment (group start, or right
		// after a card number found).
		segStart := make([]bool, len(num))
		for i := range num {
			segStart[i] = num[i].groupStart
		}
		for e := range num {
			// allowed[s]: s is a segment start or preceded by zeros only
			// back to one.
			hit := false
			for l := maxCardLen; l >= minCardLen; l-- {
				st := e - l + 1
				if st < 0 {
					continue
				}
				k := st
				for !segStart[k] && num[k-1].val == 0 {
					k--
				}
				if !segStart[k] && rule != ruleAllWindows {
					continue
				}
				groupEnd := e+1 == len(num) || num[e+1].groupStart
				oneGroup := true
				for i := st + 1; i <= e; i++ {
					oneGroup = oneGroup && !num[i].groupStart
				}
				switch {
				case rule == ruleGroupEnds && !groupEnd && !oneGroup,
					rule == ruleAligned && !groupEnd,
					rule == ruleWholeNumber && (k != 0 || e+1 != len(num)):
					continue
				}
				vals := make([]int, l)
				for i := range vals {
					vals[i] = num[st+i].val
				}
				if !refIIN(vals) || !refLuhn(vals) {
					continue
				}
				if !res.found {
					res.found, res.first0, res.first1 = true, num[st].start, num[e].end
				}
				hit = true
				// Padding zeros glued before it, fewer than 19, go too.
				z := 0
				for z < maxCardLen && st-z > 0 && !num[st-z].groupStart && !mark[st-z-1] && num[st-z-1].val == 0 {
					z++
				}
				if z == maxCardLen {
					z = 0
				}
				for i := st - z; i <= e; i++ {
					mark[i] = true
					join[i] = join[i] || i > st-z
				}
			}
			if hit && e+1 < len(num) {
				segStart[e+1] = true
			}
		}
		for i := 0; i < len(num); i++ {
			if !mark[i] {
				continue
			}
			j := i
			for j+1 < len(num) && mark[j+1] && join[j+1] {
				j++
			}
			marked = append(marked, span{num[i].start, num[j].end})
			i = j
		}
	}
	var b strings.Builder
	last := 0
	for _, m := range marked {
		b.WriteString(s[last:m.start])
		b.WriteString(cardRedacted)
		last = m.end
	}
	b.WriteString(s[last:])
	res.redacted, res.cards = b.String(), len(marked)
	return res
}

// refNumberHasCard is numberHasCard's reference: the literal as text, and
// its exact value written out in decimal with math/big.
func refNumberHasCard(lit string) bool {
	if refScan(lit).found {
		return true
	}
	r, ok := new(big.Rat).SetString(lit)
	if !ok {
		return false
	}
	r.Abs(r)
	// Enough decimals for an exact expansion: the literal's fraction
	// digits plus its negative exponent.
	prec := len(lit)
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		if e, err := strconv.Atoi(lit[i+1:]); err == nil && e < 0 {
			prec += -e
		}
	}
	text := r.FloatString(prec)
	text = strings.TrimRight(text, "0")
	text = strings.TrimSuffix(text, ".")
	return refScan(text).found
}
