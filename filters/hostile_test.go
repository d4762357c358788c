package filters

import (
	"strconv"
	"strings"
)

// hostileShape is an adversarial body generator with the mask and options
// it attacks: each one aims at a path of the filters that was, or could
// become, super-linear in the size of the input (rescans per nesting level,
// per-member copies of long prefixes, hash or scan costs per key).
type hostileShape struct {
	name    string
	kind    string // "json", "form" or "query"
	fields  []string
	xfs     map[string]string
	allowed []string // query
	cards   CardGuard
	// gen returns a body of about n bytes (within a few hundred).
	gen func(n int) []byte
	// rejected: the body is refused (a *SyntaxError) at every size, which
	// must cost no more than filtering it would.
	rejected bool
	// maxRate, when set, is a tighter bound than stepsPerByte on the steps
	// per byte, for shapes whose cost is linear anyway but whose constant
	// is the point.
	maxRate float64
}

// hostileDepth nests just inside maxDepth (1000), so that the deep shapes
// are accepted and walked all the way down. It is a literal so that the
// same bodies can be measured against older versions of the package.
const hostileDepth = 990

// repeatTo appends unit to b until b holds n-tail bytes.
func repeatTo(b []byte, unit string, n, tail int) []byte {
	for len(b)+len(unit)+tail <= n {
		b = append(b, unit...)
	}
	return b
}

// nested wraps a filler of digits in depth containers opened by open and
// closed by close, under the top-level key key.
func nested(key, open, close, filler string, depth int) func(n int) []byte {
	return func(n int) []byte {
		b := []byte(`{"` + key + `":`)
		b = append(b, strings.Repeat(open, depth)...)
		b = append(b, '"')
		b = repeatTo(b, filler, n, 2+len(close)*depth+1)
		b = append(b, '"')
		b = append(b, strings.Repeat(close, depth)...)
		return append(b, '}')
	}
}

// members writes an object of numbered members made by member(i), the
// whole document being prefix + object + suffix.
func members(prefix, suffix string, member func(i int) string) func(n int) []byte {
	return func(n int) []byte {
		b := []byte(prefix + "{")
		for i := 0; ; i++ {
			m := member(i)
			if len(b)+len(m)+2+len(suffix) > n {
				break
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, m...)
		}
		b = append(b, '}')
		return append(b, suffix...)
	}
}

// pairs writes a form of pairs made by pair(i).
func pairs(pair func(i int) string) func(n int) []byte {
	return func(n int) []byte {
		var b []byte
		for i := 0; ; i++ {
			p := pair(i)
			if len(b)+len(p)+1 > n {
				break
			}
			if i > 0 {
				b = append(b, '&')
			}
			b = append(b, p...)
		}
		return b
	}
}

var hostileShapes = []hostileShape{
	// The case of issue 10: a kept field holding deeply nested arrays
	// around a long digit string, card guard on. It used to be validated
	// once per nesting level.
	{name: "json/deep-kept-digits", kind: "json", fields: []string{"card"},
		gen: nested("card", "[", "]", "7777777777", hostileDepth)},
	// The same at the depth reported in the issue, now beyond maxDepth.
	{name: "json/deep-kept-digits-9000", kind: "json", fields: []string{"card"},
		gen: nested("card", "[", "]", "7777777777", 9000), rejected: true},
	{name: "json/deep-kept-objects", kind: "json", fields: []string{"card"},
		gen: nested("card", `{"a":`, "}", "7777777777", hostileDepth)},
	// Digits at every level of a kept subtree, so that every level of it
	// needs the card scan.
	{name: "json/deep-kept-every-level", kind: "json", fields: []string{"card"}, gen: func(n int) []byte {
		per := max(1, (n-16)/hostileDepth-6)
		s := `"` + strings.Repeat("7", per) + `",`
		b := []byte(`{"card":`)
		for range hostileDepth {
			b = append(b, '[')
			b = append(b, s...)
		}
		b = append(b, '1')
		b = append(b, strings.Repeat("]", hostileDepth)...)
		return append(b, '}')
	}},
	{name: "json/deep-removed", kind: "json", fields: []string{"keep"}, gen: func(n int) []byte {
		b := nested("x", "[", "]", "7777777777", hostileDepth)(n - 9)
		return append(b[:len(b)-1], `,"keep":1}`...)
	}},
	{name: "json/deep-removed-error", kind: "json", fields: []string{"keep"}, rejected: true, gen: func(n int) []byte {
		b := []byte(`{"a":` + strings.Repeat("[", hostileDepth))
		b = repeatTo(b, "          ", n, 1)
		return append(b, 'x')
	}},
	// A transform above deep nesting: every leaf is transformed.
	{name: "json/deep-transform", kind: "json", xfs: map[string]string{"card": "last4"}, gen: func(n int) []byte {
		per := max(1, (n-16)/hostileDepth-6)
		s := `"` + strings.Repeat("x", per) + `",`
		b := []byte(`{"card":`)
		for range hostileDepth {
			b = append(b, '[')
			b = append(b, s...)
		}
		b = append(b, '1')
		b = append(b, strings.Repeat("]", hostileDepth)...)
		return append(b, '}')
	}},
	// "*" over an object with a long key, holding many members: each
	// reported path repeats the long key.
	{name: "json/long-key-report", kind: "json", fields: []string{"events/*/type"}, gen: func(n int) []byte {
		key := strings.Repeat("k", n/2)
		return members(`{"events":{"`+key+`":`, "}}", func(i int) string {
			return `"a` + strconv.Itoa(i) + `":1`
		})(n)
	}},
	{name: "json/long-keys", kind: "json", fields: []string{"*"}, cards: CardsRedact, gen: func(n int) []byte {
		key := strings.Repeat("k1", n/8)
		return members("", "", func(i int) string {
			return `"` + strconv.Itoa(i) + key + `":1`
		})(n)
	}},
	{name: "json/many-keys-removed", kind: "json", fields: []string{"zz"},
		gen: members("", "", func(i int) string { return `"k` + strconv.Itoa(i) + `":1` })},
	{name: "json/many-keys-skipped", kind: "json", fields: []string{"keep"},
		gen: members(`{"keep":1,"x":`, "}", func(i int) string { return `"k` + strconv.Itoa(i) + `":1` })},
	{name: "json/many-keys-kept-cards", kind: "json", fields: []string{"x"},
		gen: members(`{"x":`, "}", func(i int) string { return `"k` + strconv.Itoa(i) + `":"1234567890"` })},
	// Objects of keys of one length and the same first and last byte,
	// differing only in the middle: the cheap duplicate filter lets them
	// all through to a byte comparison, with up to dupMaxCompares others
	// (with all 30 others: 15.5 steps/B).
	{name: "json/colliding-keys", kind: "json", fields: []string{"zz"}, maxRate: 4, gen: func(n int) []byte {
		b := []byte{'['}
		pad := strings.Repeat("m", 120)
		for len(b) < n-4200 {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, '{')
			for k := range dupMapMin - 1 {
				if k > 0 {
					b = append(b, ',')
				}
				b = append(b, `"a`+pad+strconv.Itoa(100+k)+`a":1`...)
			}
			b = append(b, '}')
		}
		return append(b, ']')
	}},
	// Records of more than dupMapMin keys, the same keys in each: every
	// record's keys go to the duplicate table, where they must not pile up
	// on one another.
	{name: "json/big-records", kind: "json", fields: []string{"*/k1"}, gen: func(n int) []byte {
		rec := members("", "", func(i int) string { return `"k` + strconv.Itoa(i) + `":1` })(300)
		b := []byte{'['}
		for len(b)+len(rec)+2 <= n {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, rec...)
		}
		return append(b, ']')
	}},
	// Single digits between spaces hold card-shaped, Luhn-valid windows
	// (a card number typed digit by digit): the guard redacts them, and
	// that work is what this shape measures.
	{name: "json/long-string-digits", kind: "json", fields: []string{"notes"}, cards: CardsRedact, gen: func(n int) []byte {
		b := repeatTo([]byte(`{"notes":"`), "1 2 3 4 5 ", n, 2)
		return append(b, `"}`...)
	}},
	{name: "json/many-escapes", kind: "json", fields: []string{"notes"}, cards: CardsRedact, gen: func(n int) []byte {
		b := repeatTo([]byte(`{"notes":"`), `\u00e9\n\"\\4\ud83d\ude00`, n, 2)
		return append(b, `"}`...)
	}},
	{name: "json/many-escapes-hmac", kind: "json", xfs: map[string]string{"notes": "hmac"}, gen: func(n int) []byte {
		b := repeatTo([]byte(`{"notes":"`), `\u00e9\n\"\\4\ud83d\ude00`, n, 2)
		return append(b, `"}`...)
	}},
	// hmac over a container of one-digit numbers: each 2-byte element
	// becomes a 66-byte string. Linear, but the output is 33 times the
	// input (see maxAmplification).
	{name: "json/hmac-every-leaf", kind: "json", xfs: map[string]string{"a": "hmac"}, gen: func(n int) []byte {
		b := repeatTo([]byte(`{"a":[0`), ",1", n, 2)
		return append(b, "]}"...)
	}},
	{name: "json/escaped-keys", kind: "json", fields: []string{"keep"},
		gen: members(`{"keep":1,"x":`, "}", func(i int) string { return `"\u006b\n` + strconv.Itoa(i) + `":1` })},
	{name: "json/many-numbers", kind: "json", fields: []string{"items"}, cards: CardsRedact, gen: func(n int) []byte {
		b := []byte(`{"items":[`)
		for i := 0; len(b) < n-20; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			if i%2 == 0 {
				b = append(b, "4242424242424242"...)
			} else {
				b = strconv.AppendInt(b, 1000000000000+int64(i), 10)
			}
		}
		return append(b, "]}"...)
	}},
	// Members reached only through "*" are written, then taken back.
	{name: "json/wildcard-speculation", kind: "json", fields: []string{"*/*/x"}, gen: func(n int) []byte {
		b := []byte{'['}
		for len(b) < n-40 {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, `{"a":{"b":1,"c":[2]},"d":{}}`...)
		}
		return append(b, ']')
	}},
	{name: "json/deep-wildcards", kind: "json", fields: []string{strings.TrimSuffix(strings.Repeat("*/", 12), "/")}, cards: CardsRedact,
		gen: nested("a", `{"a":`, "}", "7777777777", hostileDepth)},
	// Control: a large, ordinary array of records.
	{name: "json/records", kind: "json", fields: []string{"*/email", "*/first_name", "*/consents/marketing"},
		xfs: map[string]string{"*/registered_at": "year"}, gen: func(n int) []byte {
			one := `{"email":"ada@example.org","first_name":"Ada","last_name":"Lovelace","phone":"+44 20 7946 0958",` +
				`"registered_at":"2026-10-01T10:00:00Z","consents":{"marketing":true,"analytics":false}}`
			b := []byte{'['}
			for len(b)+len(one)+2 <= n {
				if len(b) > 1 {
					b = append(b, ',')
				}
				b = append(b, one...)
			}
			return append(b, ']')
		}},

	{name: "form/many-pairs", kind: "form", fields: []string{"k1"},
		gen: pairs(func(i int) string { return "k" + strconv.Itoa(i) + "=1" })},
	// Names as deep as allowed (maxDepth segments), and one name deeper.
	{name: "form/deep-brackets-kept", kind: "form", fields: []string{"a"},
		gen: pairs(func(int) string { return "a" + strings.Repeat("[b]", hostileDepth) + "=1" })},
	{name: "form/deep-brackets-removed", kind: "form", fields: []string{"x"},
		gen: pairs(func(int) string { return "a" + strings.Repeat("[b]", hostileDepth) + "=1" })},
	{name: "form/deep-brackets-one-name", kind: "form", fields: []string{"a"}, rejected: true, gen: func(n int) []byte {
		return append(repeatTo([]byte("a"), "[b]", n, 2), "=1"...)
	}},
	// "[]" is numbered per prefix: every prefix of these names is new, so
	// each needs a counter of its own.
	{name: "form/empty-brackets", kind: "form", fields: []string{"a"},
		gen: pairs(func(i int) string { return "x" + strconv.Itoa(i) + strings.Repeat("[]", hostileDepth) + "=1" })},
	{name: "form/empty-brackets-one-name", kind: "form", fields: []string{"a"}, rejected: true, gen: func(n int) []byte {
		return append(repeatTo([]byte("a"), "[]", n, 2), "=1"...)
	}},
	{name: "form/empty-brackets-repeated", kind: "form", fields: []string{"a"},
		gen: pairs(func(int) string { return "a" + strings.Repeat("[]", 64) + "=1" })},
	{name: "form/long-name", kind: "form", fields: []string{"b"}, gen: func(n int) []byte {
		return append(repeatTo([]byte("a"), "aaaaaaaaaa", n, 2), "=1"...)
	}},
	{name: "form/escapes-hmac", kind: "form", xfs: map[string]string{"notes": "hmac"}, gen: func(n int) []byte {
		return repeatTo([]byte("notes="), "%41%C3%A9+", n, 0)
	}},
	{name: "form/escapes-cards", kind: "form", fields: []string{"notes"}, cards: CardsRedact, gen: func(n int) []byte {
		return repeatTo([]byte("notes="), "1+2%203-4+", n, 0)
	}},
	{name: "form/hmac-every-pair", kind: "form", xfs: map[string]string{"a": "hmac"},
		gen: pairs(func(int) string { return "a=" })},
	{name: "form/many-expand", kind: "form", fields: []string{"expand"},
		gen: pairs(func(i int) string { return "expand[]=x" + strconv.Itoa(i) })},
	{name: "query/many", kind: "query", allowed: []string{"expand"},
		gen: pairs(func(i int) string { return "expand[]=a&limit=" + strconv.Itoa(i) })},
	{name: "query/empty-brackets", kind: "query", allowed: []string{"expand"},
		gen: pairs(func(int) string { return "expand" + strings.Repeat("[]", hostileDepth) + "=1" })},
}

// hostileRun filters body as shape s says, returning the steps counted.
func (s *hostileShape) run(m *Mask, dst, body []byte) ([]byte, *Report, int, error) {
	opt := &Options{Cards: s.cards, HMACKey: []byte("hostile")}
	switch s.kind {
	case "json":
		return m.jsonCounted(dst, body, opt)
	case "form":
		return m.formCounted(dst, body, opt)
	default:
		out, rep, steps, err := queryCounted(string(body), s.allowed, opt)
		return append(dst, out...), rep, steps, err
	}
}

func (s *hostileShape) mask() (*Mask, error) {
	if s.kind == "query" {
		return nil, nil
	}
	return Compile(s.fields, s.xfs)
}
