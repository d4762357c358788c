package filters

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCardIndex(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string // the card number's text as found, "" for none
	}{
		{"plain", "4111111111111111", "4111111111111111"},
		{"in text", "card 4111111111111111.", "4111111111111111"},
		{"spaces", "x 4111 1111 1111 1111 y", "4111 1111 1111 1111"},
		{"cvv after", "4111 1111 1111 1111 123", "4111 1111 1111 1111"},
		{"expiry and cvv after", "4111-1111-1111-1111 12/29 123", "4111-1111-1111-1111"},
		{"glued cvv", "4111111111111111123", "4111111111111111"},
		{"glued expiry", "41111111111111111229", "4111111111111111"},
		{"zero padded", "000004111111111111111", "4111111111111111"},
		{"number before", "order 12345 4111 1111 1111 1111", "4111 1111 1111 1111"},
		{"dots", "4111.1111.1111.1111", "4111.1111.1111.1111"},
		{"slashes", "4111/1111/1111/1111", "4111/1111/1111/1111"},
		{"tabs", "4111\t1111\t1111\t1111", "4111\t1111\t1111\t1111"},
		{"space dash space", "4111 - 1111 - 1111 - 1111", "4111 - 1111 - 1111 - 1111"},
		{"four spaces", "4111    1111    1111    1111", "4111    1111    1111    1111"},
		{"five spaces", "4111     1111     1111     1111", ""},
		{"nbsp", "4111\u00a01111\u00a01111\u00a01111", "4111\u00a01111\u00a01111\u00a01111"},
		{"figure space", "4111\u20071111\u20071111\u20071111", "4111\u20071111\u20071111\u20071111"},
		{"narrow nbsp", "4111\u202f1111\u202f1111\u202f1111", "4111\u202f1111\u202f1111\u202f1111"},
		{"thin space", "4111\u20091111\u20091111\u20091111", "4111\u20091111\u20091111\u20091111"},
		{"ideographic space", "4111\u30001111\u30001111\u30001111", "4111\u30001111\u30001111\u30001111"},
		{"en dash", "4111–1111–1111–1111", "4111–1111–1111–1111"},
		{"minus sign", "4111−1111−1111−1111", "4111−1111−1111−1111"},
		{"fullwidth", "カード：４１１１１１１１１１１１１１１１", "４１１１１１１１１１１１１１１１"},
		{"fullwidth spaced", "４１１１　１１１１　１１１１　１１１１", "４１１１　１１１１　１１１１　１１１１"},
		{"arabic-indic", "٤١١١١١١١١١١١١١١١", "٤١١١١١١١١١١١١١١١"},
		{"persian", "۴۱۱۱ ۱۱۱۱ ۱۱۱۱ ۱۱۱۱", "۴۱۱۱ ۱۱۱۱ ۱۱۱۱ ۱۱۱۱"},
		{"devanagari", "४१११ १११ १ ११११ ११११", "४१११ १११ १ ११११ ११११"},
		{"math bold", "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏", "𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏"},
		{"mixed scripts", "4١११ １111 1111 1111", "4١११ １111 1111 1111"},
		{"zero width space", "4111\u200b1111\u200b1111\u200b1111", "4111\u200b1111\u200b1111\u200b1111"},
		{"soft hyphen", "4111\u00ad1111\u00ad1111\u00ad1111", "4111\u00ad1111\u00ad1111\u00ad1111"},
		{"utf-16le", "4\x001\x001\x001\x00 \x001\x001\x001\x001\x00 \x001\x001\x001\x001\x00 \x001\x001\x001\x001\x00", "4\x001\x001\x001\x00 \x001\x001\x001\x001\x00 \x001\x001\x001\x001\x00 \x001\x001\x001\x001"},
		{"utf-16be", "\x004\x001\x001\x001\x00-\x001\x001\x001\x001\x00-\x001\x001\x001\x001\x00-\x001\x001\x001\x001", "4\x001\x001\x001\x00-\x001\x001\x001\x001\x00-\x001\x001\x001\x001\x00-\x001\x001\x001\x001"},
		{"amex", "3782 822463 10005", "3782 822463 10005"},
		{"diners 14", "3056 930902 5904", "3056 930902 5904"},
		{"mastercard 2-series", "2223 0031 2200 3222", "2223 0031 2200 3222"},
		{"mir", "2200 0000 0000 0004", "2200 0000 0000 0004"},
		{"visa 13", "4222222222222", "4222222222222"},
		{"visa 19", "4000 0000 0000 0000 006", "4000 0000 0000 0000 006"},
		{"unionpay 19", "6222 8345 9845 5514 397", "6222 8345 9845 5514 397"},
		{"shorter prefix ends first", "6200000000000000005", "62000000000000000"},
		{"json exponent text", "4.111111111111111e15", "4.111111111111111"},
		{"second of two", "4111111111111112 4111111111111111", "4111111111111111"},
		{"two glued", "42424242424242424111111111111111", "4242424242424242"},

		{"luhn fails", "4111111111111112", ""},
		{"12 digits", "411111111116", ""},
		{"glued digit before", "14242424242424242", ""},
		{"no scheme (imei)", "35-209900-176148-1", ""},
		{"no scheme prefix 1", "1732101791512000", ""},
		{"amex length 14", "37828224631000", ""},
		{"newline splits", "4111\n1111\n1111\n1111", ""},
		{"comma splits", "4111,1111,1111,1111", ""},
		{"six invisibles", "4111\x00\x00\x00\x00\x00\x001111 1111 1111", ""},
		{"last4", "card ending 4242 was charged", ""},
		{"invalid utf-8 splits", "4111\xff1111 1111 1111", ""},
		{"truncated fullwidth", "４１１１１１１１１１１１１１１\xef\xbc", ""},
		{"empty", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, e := CardIndexString(c.in)
			got := ""
			if s >= 0 {
				got = c.in[s:e]
			}
			if got != c.want {
				t.Fatalf("CardIndexString(%q) = %q, want %q", c.in, got, c.want)
			}
			if bs, be := CardIndex([]byte(c.in)); bs != s || be != e {
				t.Fatalf("CardIndex = %d,%d, CardIndexString = %d,%d", bs, be, s, e)
			}
			ref := refScan(c.in)
			if ref.found != (s >= 0) || (s >= 0 && (ref.first0 != s || ref.first1 != e)) {
				t.Fatalf("reference: %+v, detector %d,%d", ref, s, e)
			}
		})
	}
}

func TestAppendRedactCards(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a 4242 4242 4242 4242, b 4000056655665556.", "a [CARD REDACTED], b [CARD REDACTED]."},
		{"4111 1111 1111 1111 123", "[CARD REDACTED] 123"},
		{"4111111111111111123", "[CARD REDACTED]123"},
		{"42424242424242424111111111111111", "[CARD REDACTED][CARD REDACTED]"},
		{"4242424242424242 4111111111111111", "[CARD REDACTED] [CARD REDACTED]"},
		{"6200000000000000000 x", "[CARD REDACTED] x"}, // 17 and 19 digits, overlapping
		{"pay ４１１１１１１１１１１１１１１１!", "pay [CARD REDACTED]!"},
		{"no card 12345", "no card 12345"},
		{"", ""},
	}
	for _, c := range cases {
		got, n := AppendRedactCards([]byte("prefix:"), []byte(c.in))
		if string(got) != "prefix:"+c.want {
			t.Errorf("AppendRedactCards(%q) = %q, want %q", c.in, got, "prefix:"+c.want)
		}
		if ref := refScan(c.in); ref.redacted != c.want || ref.cards != n {
			t.Errorf("reference %q (%d), detector %d", ref.redacted, ref.cards, n)
		}
	}
}

func TestGuardCardsString(t *testing.T) {
	in := "Bearer x; note=4111 1111 1111 1111"
	if s, n, err := GuardCardsString(in, CardsBlock); !errors.Is(err, ErrCardNumber) || n != 0 || s != in {
		t.Fatalf("block: %q %d %v", s, n, err)
	}
	if s, n, err := GuardCardsString(in, CardGuard(7)); !errors.Is(err, ErrCardNumber) {
		t.Fatalf("unknown guard must block: %q %d %v", s, n, err)
	}
	if s, n, err := GuardCardsString(in, CardsRedact); err != nil || n != 1 || s != "Bearer x; note=[CARD REDACTED]" {
		t.Fatalf("redact: %q %d %v", s, n, err)
	}
	if s, n, err := GuardCardsString(in, CardsAllow); err != nil || n != 0 || s != in {
		t.Fatalf("allow: %q %d %v", s, n, err)
	}
	if s, n, err := GuardCardsString("plain", CardsBlock); err != nil || n != 0 || s != "plain" {
		t.Fatalf("no card: %q %d %v", s, n, err)
	}
}

// TestCardNoAllocs: the guard runs on every value that leaves.
func TestCardNoAllocs(t *testing.T) {
	text := strings.Repeat("Order 2024-11-20 #12345, call +48 601 234 567. ", 20)
	card := text + "4111 1111 1111 1111"
	b := []byte(card)
	for name, f := range map[string]func(){
		"CardIndexString no card": func() { CardIndexString(text) },
		"CardIndexString card":    func() { CardIndexString(card) },
		"CardIndex card":          func() { CardIndex(b) },
		"GuardCardsString":        func() { GuardCardsString(text, CardsRedact) },
		"numberHasCard":           func() { numberHasCard([]byte("411111111111111e1")) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
	dst := make([]byte, 0, 2*len(card))
	if n := testing.AllocsPerRun(100, func() { AppendRedactCards(dst[:0], b) }); n > 1 {
		t.Errorf("AppendRedactCards: %v allocations", n)
	}
}

func TestIINTable(t *testing.T) {
	if _, err := buildIINSpans(); err != nil {
		t.Fatal(err)
	}
	for i, s := range iinSpans {
		if s.lo > s.hi || (i > 0 && iinSpans[i-1].hi >= s.lo) || s.lengths == 0 {
			t.Fatalf("spans not sorted and disjoint at %d: %+v", i, iinSpans)
		}
	}
	cases := []struct {
		prefix int32
		want   []int
	}{
		{411111, []int{13, 16, 19}},
		{222100, []int{16}},
		{222099, nil},
		{272099, []int{16}},
		{272100, nil},
		{340000, []int{15}},
		{350000, nil},
		{353000, []int{16, 17, 18, 19}}, // RuPay's 353 is inside JCB's range
		{352800, []int{16, 17, 18, 19}},
		{358999, []int{16, 17, 18, 19}},
		{359000, nil},
		{360000, []int{14, 15, 16, 17, 18, 19}},
		{622126, []int{16, 17, 18, 19}},
		{650002, []int{16, 17, 18, 19}},
		{100000, nil},
		{700000, nil},
		{979200, []int{16}},
		{999999, nil},
		{0, nil},
	}
	for _, c := range cases {
		var got []int
		m := iinLengths(c.prefix)
		for l := minCardLen; l <= maxCardLen; l++ {
			if m&(1<<(l-minCardLen)) != 0 {
				got = append(got, l)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("iinLengths(%06d) = %v, want %v", c.prefix, got, c.want)
		}
	}
	// Every 6-digit prefix agrees with the table read as written.
	for p := int32(0); p < 1000000; p += 7 {
		d := make([]int, 19)
		for i, q := 5, p; i >= 0; i, q = i-1, q/10 {
			d[i] = int(q % 10)
		}
		m := iinLengths(p)
		for l := minCardLen; l <= maxCardLen; l++ {
			if got, want := m&(1<<(l-minCardLen)) != 0, refIIN(d[:l]); got != want {
				t.Fatalf("prefix %06d length %d: %v, table says %v", p, l, got, want)
			}
		}
	}
}

func TestRuneClasses(t *testing.T) {
	if len(runePage) > 255 {
		t.Fatalf("%d pages", len(runePage))
	}
	for _, t16 := range unicode.Nd.R16 {
		if t16.Stride != 1 || (int(t16.Hi)-int(t16.Lo)+1)%10 != 0 {
			t.Fatalf("Nd range %+v is not whole blocks of ten", t16)
		}
	}
	for _, t32 := range unicode.Nd.R32 {
		if t32.Stride != 1 || (int(t32.Hi)-int(t32.Lo)+1)%10 != 0 {
			t.Fatalf("Nd range %+v is not whole blocks of ten", t32)
		}
	}
	spacers := map[rune]bool{'\t': true, '.': true, '/': true}
	for _, r := range spacerRunes {
		spacers[r] = true
	}
	invisible := map[rune]bool{}
	for _, r := range invisibleRunes {
		invisible[r] = true
	}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		want := uint8(classOther)
		switch {
		case unicode.Is(unicode.Nd, r):
			want = classDigit | uint8(refDigitValue(r))
		case invisible[r]:
			want = classInvisible
		case spacers[r] || unicode.Is(unicode.Zs, r) || unicode.Is(unicode.Pd, r):
			want = classSpacer
		}
		if got := runeClass(r); got != want {
			t.Fatalf("runeClass(%U) = %#x, want %#x", r, got, want)
		}
		if r < utf8.RuneSelf && asciiClass[r] != want {
			t.Fatalf("asciiClass(%U) = %#x, want %#x", r, asciiClass[r], want)
		}
		var b [4]byte
		utf8.EncodeRune(b[:], r)
		switch {
		case want&classMask == classDigit && !digitLead[b[0]]:
			t.Fatalf("digitLead misses %U", r)
		case r >= utf8.RuneSelf && want != classOther && want&classMask != classDigit && !joinLead[b[0]]:
			t.Fatalf("joinLead misses %U", r)
		}
	}
	for _, c := range []struct {
		r rune
		v uint8
	}{{'٣', 3}, {'७', 7}, {'９', 9}, {'𝟎', 0}, {'𝟗', 9}, {'𝟘', 0}, {'၅', 5}} {
		if got := runeClass(c.r); got != classDigit|c.v {
			t.Errorf("%c: %#x, want digit %d", c.r, got, c.v)
		}
	}
}

func TestDecodeRune(t *testing.T) {
	check := func(b []byte) {
		wr, wn := utf8.DecodeRune(b)
		if r, n := decodeRune(b, 0); r != wr || n != wn {
			t.Fatalf("decodeRune(% x) = %U,%d, want %U,%d", b, r, n, wr, wn)
		}
		if r, n := decodeRune(string(b), 0); r != wr || n != wn {
			t.Fatalf("decodeRune(string % x) = %U,%d, want %U,%d", b, r, n, wr, wn)
		}
	}
	for a := range 256 {
		check([]byte{byte(a)})
		for b := range 256 {
			check([]byte{byte(a), byte(b)})
			if a >= 0xE0 && a < 0xF0 {
				for c := range 256 {
					check([]byte{byte(a), byte(b), byte(c)})
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 1 << 20 {
		b := []byte{byte(0xF0 + r.IntN(8)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
		if r.IntN(4) == 0 {
			b[1] = 0x80 + byte(r.IntN(64))
			b[2] = 0x80 + byte(r.IntN(64))
			b[3] = 0x80 + byte(r.IntN(64))
		}
		check(b)
		check(b[:3])
	}
}

// randomCardText builds adversarial inputs for the differential tests:
// real card numbers cut into groups with every kind of separator and
// script, extra digits around them, long runs, invisible characters,
// invalid and truncated UTF-8.
func randomCardText(r *rand.Rand) string {
	var b strings.Builder
	digitSets := []rune{'0', '０', '٠', '۰', '०', '০', '๐', '𝟎', '𝟘', '᠐'}
	seps := []string{" ", " ", "-", ".", "/", "\t", "  ", " - ", "\u00a0", "\u2007", "\u202f", "\u2009", "\u3000", "–", "−", "．", "     "}
	invis := []string{"\x00", "\u200b", "\u00ad", "\ufeff", "\u2060"}
	others := []string{"a", "x", "é", "\n", ",", ":", "\xff", "\x80", "\xef\xbc", "€", "漢", "_", "+", "e", "E"}
	writeDigit := func(v int, set rune) {
		if set == '0' {
			b.WriteByte(byte('0' + v))
		} else {
			b.WriteRune(set + rune(v))
		}
	}
	for range 1 + r.IntN(6) {
		switch r.IntN(5) {
		case 0, 1: // a card number, maybe with more around it
			card := randomCard(r)
			set := digitSets[0]
			if r.IntN(3) == 0 {
				set = digitSets[r.IntN(len(digitSets))]
			}
			if r.IntN(4) == 0 {
				for range r.IntN(4) {
					writeDigit(r.IntN(10), set)
				}
				if r.IntN(2) == 0 {
					b.WriteString(seps[r.IntN(len(seps))])
				}
			}
			group := 3 + r.IntN(4)
			sep := seps[r.IntN(len(seps))]
			for i, c := range card {
				if i > 0 && i%group == 0 && r.IntN(3) > 0 {
					b.WriteString(sep)
				}
				if r.IntN(12) == 0 {
					b.WriteString(invis[r.IntN(len(invis))])
				}
				writeDigit(int(c-'0'), set)
			}
			if r.IntN(3) == 0 {
				if r.IntN(2) == 0 {
					b.WriteString(seps[r.IntN(len(seps))])
				}
				for range r.IntN(6) {
					writeDigit(r.IntN(10), set)
				}
			}
		case 2: // a random run of digits and separators
			for range r.IntN(40) {
				switch r.IntN(6) {
				case 0:
					b.WriteString(seps[r.IntN(len(seps))])
				case 1:
					if r.IntN(4) == 0 {
						b.WriteString(invis[r.IntN(len(invis))])
						continue
					}
					fallthrough
				default:
					writeDigit(r.IntN(10), digitSets[r.IntN(2)*r.IntN(len(digitSets))])
				}
			}
		case 3: // single digits with spaces: every digit starts a group
			for range r.IntN(50) {
				writeDigit(r.IntN(10), '0')
				b.WriteByte(' ')
			}
		default:
			for range 1 + r.IntN(5) {
				b.WriteString(others[r.IntN(len(others))])
			}
		}
	}
	return b.String()
}

// randomCard returns a valid card number of a random scheme and length.
func randomCard(r *rand.Rand) string {
	s := cardSchemes[r.IntN(len(cardSchemes))]
	prefixes := strings.Split(s.prefix, ",")
	p := prefixes[r.IntN(len(prefixes))]
	a, b, ok := strings.Cut(p, "-")
	if !ok {
		b = a
	}
	lo, hi, _ := parseRange(a + "-" + b)
	prefix := fmt.Sprintf("%0*d", len(a), lo+r.IntN(hi-lo+1))
	var lengths []int
	for _, l := range strings.Split(s.lengths, ",") {
		x, y, _ := parseRange(l)
		for n := x; n <= y; n++ {
			lengths = append(lengths, n)
		}
	}
	return completeCard(r, prefix, lengths[r.IntN(len(lengths))])
}

// completeCard fills prefix with random digits to n-1 digits and adds the
// Luhn check digit.
func completeCard(r *rand.Rand, prefix string, n int) string {
	d := []byte(prefix)
	for len(d) < n-1 {
		d = append(d, byte('0'+r.IntN(10)))
	}
	for c := byte('0'); c <= '9'; c++ {
		v := make([]int, n)
		for i, x := range append(d[:n-1:n-1], c) {
			v[i] = int(x - '0')
		}
		if refLuhn(v) {
			return string(append(d, c))
		}
	}
	panic("no check digit")
}

func TestCardDetectorMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	n := 3000
	if testing.Short() {
		n = 300
	}
	found := 0
	for range n {
		s := randomCardText(r)
		checkAgainstReference(t, s)
		if refScan(s).found {
			found++
		}
	}
	// The generator must exercise both outcomes.
	if found < n/10 || found > n*9/10 {
		t.Fatalf("%d of %d inputs hold a card number", found, n)
	}
}

func checkAgainstReference(t *testing.T, s string) {
	t.Helper()
	ref := refScan(s)
	start, end := CardIndexString(s)
	if ref.found != (start >= 0) || (start >= 0 && (start != ref.first0 || end != ref.first1)) {
		t.Fatalf("CardIndexString(%q) = %d,%d; reference %v %d,%d", s, start, end, ref.found, ref.first0, ref.first1)
	}
	got, n := AppendRedactCards(nil, []byte(s))
	if string(got) != ref.redacted || n != ref.cards {
		t.Fatalf("AppendRedactCards(%q) = %q (%d), reference %q (%d)", s, got, n, ref.redacted, ref.cards)
	}
	g, gn, err := GuardCardsString(s, CardsRedact)
	if err != nil || g != ref.redacted || gn != ref.cards {
		t.Fatalf("GuardCardsString(%q) = %q (%d) %v", s, g, gn, err)
	}
	// What is sent after redaction passes the guard: redacting must not
	// turn the digits around a card number into a new one.
	if start, _ := CardIndex(got); start >= 0 {
		t.Fatalf("redacted text still holds a card number: %q", got)
	}
}

// writeChunks writes s to a CardWriter in pieces cut at the given points.
func writeChunks(w *CardWriter, s []byte, cuts []int) error {
	prev := 0
	for _, c := range cuts {
		if _, err := w.Write(s[prev:c]); err != nil {
			return err
		}
		prev = c
	}
	if _, err := w.Write(s[prev:]); err != nil {
		return err
	}
	return w.Close()
}

func randomCuts(r *rand.Rand, n int) []int {
	var cuts []int
	for i := 0; i < n; {
		i += 1 + r.IntN(1+r.IntN(12))
		if i < n {
			cuts = append(cuts, i)
		}
	}
	return cuts
}

func checkWriter(t *testing.T, s []byte, cuts []int) {
	t.Helper()
	want, wantN := AppendRedactCards(nil, s)
	var out bytes.Buffer
	w := NewCardWriter(&out, CardsRedact)
	if err := writeChunks(w, s, cuts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) || w.Cards() != wantN {
		t.Fatalf("redact %q cut at %v:\n got %q (%d)\nwant %q (%d)", s, cuts, out.Bytes(), w.Cards(), want, wantN)
	}

	start, _ := CardIndex(s)
	out.Reset()
	w = NewCardWriter(&out, CardsBlock)
	err := writeChunks(w, s, cuts)
	if (start >= 0) != errors.Is(err, ErrCardNumber) || (err != nil && !errors.Is(err, ErrCardNumber)) {
		t.Fatalf("block %q cut at %v: %v, card at %d", s, cuts, err, start)
	}
	if start >= 0 {
		// Nothing from the card number on reached the writer.
		if out.Len() > start || !bytes.Equal(out.Bytes(), s[:out.Len()]) {
			t.Fatalf("block %q cut at %v: passed on %q, card starts at %d", s, cuts, out.Bytes(), start)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("at byte %d", start)) {
			t.Fatalf("error %v, card at %d", err, start)
		}
	} else if !bytes.Equal(out.Bytes(), s) {
		t.Fatalf("block %q cut at %v: passed on %q", s, cuts, out.Bytes())
	}

	w = NewCardWriter(nil, CardsBlock)
	err = writeChunks(w, s, cuts)
	if w.Found() != (start >= 0) || (err != nil) != (start >= 0) {
		t.Fatalf("scan only %q: found %v, %v", s, w.Found(), err)
	}
}

func TestCardWriterMatchesOneShot(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 5000
	if testing.Short() {
		n = 500
	}
	for range n {
		s := []byte(randomCardText(r))
		checkWriter(t, s, randomCuts(r, len(s)))
	}
	// Every single cut of some inputs with multi-byte digits and
	// separators, so that each falls inside a UTF-8 sequence.
	for _, s := range []string{
		"４１１１　１１１１　１１１１　１１１１ and 𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏!",
		"4111\u00a01111\u202f1111\u30001111\u200b123 ٤١١١١١١١١١١١١١١١",
		"x４１１１１１１１１１１１１１１\xef\xbc",
	} {
		for i := range len(s) + 1 {
			checkWriter(t, []byte(s), []int{i})
			for j := i; j <= len(s); j += 3 {
				checkWriter(t, []byte(s), []int{i, j})
			}
		}
	}
}

// TestCardWriterHoldsLittle: what is held back between Writes stays
// bounded by a number's worth of bytes, whatever the stream.
func TestCardWriterHoldsLittle(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	maxHeld := 0
	for _, g := range []CardGuard{CardsBlock, CardsRedact} {
		var sink bytes.Buffer
		w := NewCardWriter(&sink, g)
		for range 5000 {
			s := randomCardText(r)
			sink.Reset()
			if _, err := w.Write([]byte(s)); err != nil {
				if g == CardsBlock && errors.Is(err, ErrCardNumber) {
					// A card number formed across Writes.
					w = NewCardWriter(&sink, g)
					continue
				}
				t.Fatal(err)
			}
			maxHeld = max(maxHeld, len(w.hold))
		}
		// Worst case: the digits kept unsettled, each of 4 bytes and
		// followed by a gap of 4 three-byte spacers and 5 three-byte
		// invisibles, and an unfinished UTF-8 sequence.
		lag := maxCardLen
		if g == CardsRedact {
			lag = redactLag
		}
		if bound := lag*(4+4*3+5*3) + 3; maxHeld > bound || bound > maxHold {
			t.Fatalf("held %d bytes, bound %d, buffer %d", maxHeld, bound, maxHold)
		}
		// A stream of nothing but "4 2 4 2 ...": every digit starts a
		// group, card numbers overlap without end.
		w = NewCardWriter(&sink, g)
		for range 10000 {
			if _, err := w.Write([]byte("4 2 4 2 4 2 4 2 ")); err != nil {
				if g == CardsBlock && errors.Is(err, ErrCardNumber) {
					break
				}
				t.Fatal(err)
			}
			if lag := max(maxCardLen, redactLag); len(w.hold) > lag*2+8 {
				t.Fatalf("held %d bytes", len(w.hold))
			}
		}
	}
}

func TestCardWriterErrors(t *testing.T) {
	w := NewCardWriter(failWriter{}, CardsRedact)
	if _, err := w.Write([]byte("hello world")); err == nil || err.Error() != "disk full" {
		t.Fatalf("write error not returned: %v", err)
	}
	if _, err := w.Write([]byte("again")); err == nil {
		t.Fatal("error forgotten")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close forgot the error")
	}
	var out bytes.Buffer
	w = NewCardWriter(&out, CardsAllow)
	if _, err := w.Write([]byte("4111111111111111")); err != nil || w.Close() != nil || out.String() != "4111111111111111" {
		t.Fatalf("allow: %q %v", out.String(), err)
	}
	w = NewCardWriter(&out, CardGuard(200))
	if _, err := w.Write([]byte("4111111111111111 ")); !errors.Is(err, ErrCardNumber) {
		t.Fatalf("unknown guard must block: %v", err)
	}
	// Reset forgets the error and the stream.
	out.Reset()
	w.Reset(&out, CardsRedact)
	if _, err := w.Write([]byte("x 4111111111111111 y")); err != nil || w.Close() != nil || out.String() != "x [CARD REDACTED] y" || w.Cards() != 1 {
		t.Fatalf("after Reset: %q %v", out.String(), err)
	}
	// One allocation per body, the CardWriter itself.
	body := []byte(strings.Repeat("note 4 2 4 2 x ", 100))
	if n := testing.AllocsPerRun(20, func() {
		w := NewCardWriter(io.Discard, CardsRedact)
		w.Write(body)
		w.Close()
	}); n > 1 {
		t.Errorf("%v allocations per body", n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestNumberHasCard(t *testing.T) {
	cases := []struct {
		lit  string
		want bool
	}{
		{"4111111111111111", true},
		{"-4111111111111111", true},
		{"4.111111111111111e15", true},
		{"4111111111111111.0", true},
		{"41111111111111110e-1", true},
		{"0.4111111111111111e16", true},
		{"4111111111111.111e3", true},
		{"0.00041111111111111111e19", true},
		{"4111111111111111e-300", true}, // its digits leave, whatever it is worth
		{"411111111111111e1", false},    // 4111111111111110: Luhn fails
		{"453201511283036e1", true},     // 4532015112830360
		{"45320151128303.6e2", true},    // the same
		{"4.53201511283036E+15", true},  // the same
		{"0.00000000453201511283036e24", true},
		{"1.5e300", false},
		{"1e15", false},
		{"4111", false},
		{"0", false},
		{"0.0e10", false},
	}
	for _, c := range cases {
		if got := numberHasCard([]byte(c.lit)); got != c.want {
			t.Errorf("numberHasCard(%s) = %v, want %v", c.lit, got, c.want)
		}
		if got := refNumberHasCard(c.lit); got != c.want {
			t.Errorf("reference(%s) = %v, want %v", c.lit, got, c.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	for range 20000 {
		lit := randomJSONNumber(r)
		if got, want := numberHasCard([]byte(lit)), refNumberHasCard(lit); got != want {
			t.Fatalf("numberHasCard(%s) = %v, reference %v", lit, got, want)
		}
	}
}

// randomJSONNumber writes card numbers (and other digits) as JSON numbers
// in all the ways the grammar allows.
func randomJSONNumber(r *rand.Rand) string {
	digits := randomCard(r)
	if r.IntN(3) == 0 {
		digits = digits[:r.IntN(len(digits)+1)] + strings.Repeat("0", r.IntN(4))
	}
	if digits == "" {
		digits = "0"
	}
	point := r.IntN(len(digits) + 1)
	lead := strings.Repeat("0", r.IntN(3))
	var b strings.Builder
	if r.IntN(4) == 0 {
		b.WriteByte('-')
	}
	intPart := strings.TrimLeft(lead+digits[:point], "0")
	if intPart == "" {
		intPart = "0"
	}
	b.WriteString(intPart)
	exp := len(digits[:point]) - len(intPart)
	if frac := digits[point:]; frac != "" || r.IntN(3) == 0 {
		if frac == "" {
			frac = "0"
		}
		b.WriteString("." + frac)
	}
	if r.IntN(3) > 0 {
		e := r.IntN(41) - 20 + exp
		b.WriteString([]string{"e", "E"}[r.IntN(2)])
		switch {
		case e < 0:
			fmt.Fprintf(&b, "-%d", -e)
		case r.IntN(2) == 0:
			fmt.Fprintf(&b, "+%d", e)
		default:
			fmt.Fprintf(&b, "%d", e)
		}
	}
	return b.String()
}

// TestDigitOrLead: skipToDigit's word test flags every byte that can begin
// a digit (by the tables), wherever it sits in the word.
func TestDigitOrLead(t *testing.T) {
	swarWords(t, func(b []byte) {
		m := digitOrLead(binary.LittleEndian.Uint64(b))
		for i, c := range b {
			if digitLead[c] && m&(0x80<<(8*i)) == 0 {
				// A byte above a flagged one may go unflagged only if
				// a lower one is flagged: the scan looks from there.
				if m&(1<<(8*i)-1) == 0 {
					t.Fatalf("digitOrLead(% x) misses byte %d", b, i)
				}
			}
		}
	})
	for c := range 256 {
		var b [8]byte
		for i := range b {
			b[i] = byte(c)
		}
		m := digitOrLead(binary.LittleEndian.Uint64(b[:]))
		if digitLead[c] && m&0x80 == 0 {
			t.Fatalf("digitOrLead misses %#x", c)
		}
	}
}

// TestMayHoldCard: the word-wise count is exactly the byte-wise one.
func TestMayHoldCard(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	alphabet := []byte("0123456789ax .\xc3\xa9\xff\x80")
	for range 300000 {
		b := make([]byte, r.IntN(48))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		w := 0
		for _, c := range b {
			w += int(cardWeight[c])
		}
		if got := mayHoldCard(b); got != (w >= 2*minCardLen) {
			t.Fatalf("mayHoldCard(%q) = %v, weight %d", b, got, w)
		}
		if mayHoldCard(string(b)) != mayHoldCard(b) {
			t.Fatalf("string and bytes differ on %q", b)
		}
	}
}

func TestJSONMayHoldCard(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want bool
	}{
		{`{"a":"4111 1111 1111 1111"}`, true},
		{`{"a":4111111e9}`, true},
		{`{"a":"\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"}`, true},
		{`{"a":"hello","b":12,"c":"2024-11-20"}`, false},
		{`{"name":"Zoë","e":"eee"}`, false},
		{`[1234567e1]`, true},
		{`[1234567E1]`, true},
		{`{"abcdefg1":"eaaa"}`, false},
		{`{"abcde1e":1}`, true}, // a digit and an 'e' on either side of a word boundary
		{`{"abcde1x":1}`, false},
		{`[1,2e3]`, true},
	} {
		if got := jsonMayHoldCard([]byte(c.raw)); got != c.want {
			t.Errorf("jsonMayHoldCard(%s) = %v", c.raw, got)
		}
	}
	// Never false where the plain byte loop says true.
	r := rand.New(rand.NewPCG(4, 4))
	alphabet := []byte("0123456789eEx\"{}:,. \xc3\xa9")
	for range 200000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		w, pair := 0, false
		for i, c := range b {
			w += int(cardWeight[c])
			pair = pair || (i > 0 && isDigit(b[i-1]) && c|0x20 == 'e')
		}
		if (w >= 2*minCardLen || pair) && !jsonMayHoldCard(b) {
			t.Fatalf("jsonMayHoldCard(%q) = false", b)
		}
	}
}

func TestCardGuardJSONNumbers(t *testing.T) {
	for _, lit := range []string{"4.111111111111111e15", "4111111111111111.0", "41111111111111110e-1", "453201511283036e1"} {
		doc := `{"keep":{"n":` + lit + `,"s":"x"}}`
		// "keep" is sent whole, which takes the fast path for subtrees.
		if _, _, err := filterJSON(t, doc, []string{"keep"}, nil, nil); !errors.Is(err, ErrCardNumber) {
			t.Errorf("%s: %v", lit, err)
		}
		got, _, err := filterJSON(t, doc, []string{"keep"}, nil, &Options{Cards: CardsRedact})
		if err != nil || got != `{"keep":{"n":"[CARD REDACTED]","s":"x"}}` {
			t.Errorf("%s: %s %v", lit, got, err)
		}
	}
}
