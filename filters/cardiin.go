package filters

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// cardSchemes is the card guard's table of issuer identification number
// (IIN) ranges and card lengths: a Luhn-valid run of digits is a card
// number only when its first digits fall in a range that issues cards of
// its length. This is what keeps a Luhn-valid IMEI, a 16-digit microsecond
// timestamp or an IBAN's digits from being taken for a card.
//
// Source: the IIN table of Wikipedia's "Payment card number" article (as
// of 2024), which collects the ranges the networks publish (Visa,
// Mastercard's 2-series announcement of 2016, Discover's IIN tables for
// Discover/Diners/JCB/UnionPay acceptance, JCB, UnionPay's 81 range, NSPK
// for Mir, NPCI for RuPay, BKM for Troy, Interswitch for Verve),
// cross-checked against the ranges of braintree/credit-card-type. Where
// the two disagree the wider range and the union of lengths is taken: a
// missed card breaks the promise, a false alarm costs one request.
//
// Deliberately left out, because they collide with common non-card
// numbers: UATP (prefix 1, 15 digits: microsecond and nanosecond Unix
// timestamps start with 1), GPN's 1946 (likewise), JCB's obsolete 15-digit
// 1800 and 2131, and 12-digit Maestro (too short to tell from phone
// numbers). Lengths are 13 to 19 digits, the range ISO/IEC 7812 allows
// beyond 12.
var cardSchemes = []struct {
	name    string
	prefix  string // comma-separated prefixes or prefix ranges "lo-hi" (equal lengths)
	lengths string // comma-separated lengths or length ranges
}{
	{"Visa", "4", "13,16,19"},
	{"Mastercard", "51-55,2221-2720", "16"},
	{"American Express", "34,37", "15"},
	{"Discover", "6011,644-649,65,622126-622925", "16-19"},
	{"JCB", "3528-3589", "16-19"},
	{"Diners Club International", "36", "14-19"},
	{"Diners Club (Discover network)", "300-305,3095,38-39", "14-19"},
	{"UnionPay", "62,81", "16-19"},
	{"China T-Union", "31", "19"},
	{"Maestro", "5018,5020,5038,5893,6304,6759,6761-6763", "13-19"},
	{"Maestro UK", "676770,676774", "13-19"},
	{"Dankort", "5019", "16"},
	{"Mir", "2200-2204", "16-19"},
	{"BORICA", "2205", "16"},
	{"RuPay", "60,65,81,82,508,353,356", "16"},
	{"Troy", "65,9792", "16"},
	{"Verve", "506099-506198,507865-507964,650002-650027", "16,18,19"},
	{"InterPayment", "636", "16-19"},
	{"InstaPayment", "637-639", "16"},
	{"UzCard", "8600,5614", "16"},
	{"Humo", "9860", "16"},
	{"LankaPay", "357111", "16"},
	{"GPN", "50,56,58,60-63", "16,18,19"},
	{"Elo", "509,5066-5067,4011,4389,4514,4576,6277,6362-6363,650,6516,6550", "16"},
}

// iinSpan is a range of 6-digit prefixes [lo, hi] and the lengths issued
// in it, as a bit mask (bit L-13 for length L).
type iinSpan struct {
	lo, hi  int32
	lengths uint8
}

// iinSpans is cardSchemes flattened into sorted, disjoint spans (the
// lengths of overlapping schemes are merged), for a binary search.
var iinSpans = mustIINSpans()

func mustIINSpans() []iinSpan {
	spans, err := buildIINSpans()
	if err != nil {
		panic(err) // the table above is a constant; TestIINTable covers it
	}
	return spans
}

func buildIINSpans() ([]iinSpan, error) {
	var raw []iinSpan
	for _, s := range cardSchemes {
		var mask uint8
		for _, l := range strings.Split(s.lengths, ",") {
			lo, hi, err := parseRange(l)
			if err != nil || lo < 13 || hi > 19 {
				return nil, fmt.Errorf("card scheme %s: bad lengths %q", s.name, s.lengths)
			}
			for n := lo; n <= hi; n++ {
				mask |= 1 << (n - 13)
			}
		}
		for _, p := range strings.Split(s.prefix, ",") {
			a, b, _ := strings.Cut(p, "-")
			if b == "" {
				b = a
			}
			if len(a) != len(b) || len(a) > 6 {
				return nil, fmt.Errorf("card scheme %s: bad prefix %q", s.name, p)
			}
			lo, hi, err := parseRange(p)
			if err != nil {
				return nil, fmt.Errorf("card scheme %s: bad prefix %q", s.name, p)
			}
			// Widen to six digits: 4 is 400000-499999.
			for range 6 - len(a) {
				lo, hi = lo*10, hi*10+9
			}
			raw = append(raw, iinSpan{int32(lo), int32(hi), mask})
		}
	}
	// Sweep the boundaries: between two consecutive ones the set of
	// covering spans is constant.
	var cuts []int32
	for _, r := range raw {
		cuts = append(cuts, r.lo, r.hi+1)
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	var out []iinSpan
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := cuts[i], cuts[i+1]-1
		if lo > hi {
			continue
		}
		var mask uint8
		for _, r := range raw {
			if r.lo <= lo && hi <= r.hi {
				mask |= r.lengths
			}
		}
		if mask == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].hi+1 == lo && out[n-1].lengths == mask {
			out[n-1].hi = hi
			continue
		}
		out = append(out, iinSpan{lo, hi, mask})
	}
	return out, nil
}

func parseRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if lo, err = strconv.Atoi(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if ok {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, err
		}
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("empty range %q", s)
	}
	return lo, hi, nil
}

// iinLengths returns the card lengths issued under the 6-digit prefix p,
// as a mask (bit L-13 for length L), or 0.
func iinLengths(p int32) uint8 {
	lo, hi := 0, len(iinSpans)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if iinSpans[m].hi < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(iinSpans) && iinSpans[lo].lo <= p {
		return iinSpans[lo].lengths
	}
	return 0
}
