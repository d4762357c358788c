package filters

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
)

// fuzzMask turns a fuzzed mask spec into fields and transforms: one path a
// line, "path=transform" for a transform.
func fuzzMask(spec string) ([]string, map[string]string) {
	var fields []string
	var xfs map[string]string
	for _, line := range strings.Split(spec, "\n") {
		if p, x, ok := strings.Cut(line, "="); ok {
			if xfs == nil {
				xfs = map[string]string{}
			}
			xfs[p] = x
			continue
		}
		fields = append(fields, line)
	}
	return fields, xfs
}

func maskPaths(t testing.TB, fields []string, xfs map[string]string) [][]string {
	var out [][]string
	for _, f := range fields {
		s, err := parsePath(f)
		if err != nil {
			t.Fatalf("compiled mask has bad path %q", f)
		}
		out = append(out, s)
	}
	for p := range xfs {
		s, _ := parsePath(p)
		out = append(out, s)
	}
	return out
}

// pathAllowed reports whether a path found in the output is compatible with
// some mask path: one is a prefix of the other, segment by segment, with
// "*" matching anything and an output array index ("#", shifted by
// compaction) matching any numeric segment.
func pathAllowed(path []string, mask [][]string) bool {
	for _, m := range mask {
		ok := true
		for i := 0; i < len(path) && i < len(m); i++ {
			if m[i] == "*" || m[i] == path[i] || (path[i] == "#" && allDigits([]byte(m[i]))) {
				continue
			}
			ok = false
			break
		}
		if ok {
			return true
		}
	}
	return false
}

// walkOutput checks every key and element of a decoded output against the
// mask, and (when cards were guarded) that no card number is left.
func walkOutput(t testing.TB, v any, path []string, mask [][]string, noCards bool) {
	if len(path) > 0 && !pathAllowed(path, mask) {
		t.Fatalf("output path %q is outside the mask %q", path, mask)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if noCards && hasCard([]byte(k)) {
				t.Fatalf("card number left in key at %q", path)
			}
			walkOutput(t, e, append(path[:len(path):len(path)], k), mask, noCards)
		}
	case []any:
		for _, e := range x {
			walkOutput(t, e, append(path[:len(path):len(path)], "#"), mask, noCards)
		}
	case string:
		if noCards && hasCard([]byte(x)) {
			t.Fatalf("card number left at %q", path)
		}
	case json.Number:
		if noCards && hasCard([]byte(x)) {
			t.Fatalf("card number left at %q", path)
		}
	}
}

func addSeeds(f *testing.F, files ...string) []byte {
	var first []byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if first == nil {
			first = b
		}
	}
	return first
}

func FuzzJSON(f *testing.F) {
	checkout := addSeeds(f, "testdata/checkout.json")
	ticket := addSeeds(f, "testdata/ticket.json")
	stripe := "amount\ncurrency\ncard\nmetadata/order_id\nitems/*/sku\ncustomer/email=hmac"
	f.Add(checkout, stripe, byte(2))
	f.Add(checkout, "customer\ncustomer/date_of_birth=year\ncard/number=last4", byte(1))
	f.Add(ticket, "ticket/comment/body\nticket/requester/email=hmac\nticket/custom_fields/*/id", byte(0))
	f.Add([]byte(`[{"email":"a@b","n":1},{"email":"c"}]`), "*/email", byte(2))
	f.Add([]byte(`{"a":{"b":[1,{"c":2}],"d":"x"},"e":null}`), "a/b/1\ne", byte(2))
	f.Add([]byte(`{"a":1,"a":2}`), "a", byte(2))
	f.Add([]byte(`{"k\u0041":"\ud83d\ude00 4242 4242 4242 4242"}`), "kA", byte(1))
	f.Add([]byte(`{"a":[]}`), "a/*/b\nx/*", byte(2))
	f.Add([]byte("{\"a\":\"\xff\"}"), "a", byte(2))
	f.Fuzz(func(t *testing.T, doc []byte, spec string, mode byte) {
		fields, xfs := fuzzMask(spec)
		m, err := Compile(fields, xfs)
		if err != nil {
			return
		}
		opt := &Options{Cards: CardGuard(mode % 3), HMACKey: []byte("fuzz")}
		prefix := []byte("prefix")
		out, rep, steps, err := m.jsonCounted(prefix[:len(prefix):len(prefix)], doc, opt)
		checkCostOut(t, "JSON", len(doc), steps, len(out)-len(prefix))
		if err != nil {
			if !bytes.Equal(out, prefix) {
				t.Fatalf("error %v but dst changed to %q", err, out)
			}
			var se *SyntaxError
			switch {
			case errors.As(err, &se):
				if json.Valid(doc) && !strings.Contains(se.Msg, "duplicate key") &&
					!strings.Contains(se.Msg, "UTF-8") && !strings.Contains(se.Msg, "too deep") {
					t.Fatalf("valid JSON rejected: %v", err)
				}
			case errors.Is(err, ErrCardNumber):
				if opt.Cards != CardsBlock {
					t.Fatalf("card error with guard %v", opt.Cards)
				}
			case errors.Is(err, ErrNotContainer):
			default:
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !json.Valid(doc) {
			t.Fatalf("invalid input accepted: %q", doc)
		}
		if rep == nil {
			t.Fatal("nil report")
		}
		out = out[len(prefix):]
		if !json.Valid(out) {
			t.Fatalf("invalid output %q", out)
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(out))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		walkOutput(t, v, nil, maskPaths(t, fields, xfs), opt.Cards != CardsAllow && len(xfs) == 0)
		if len(xfs) == 0 && opt.Cards == CardsAllow {
			checkAgainstOPA(t, doc, fields, out)
		}
	})
}

// formPaths parses a form with the package's own parser and returns the
// path of every pair.
func formPaths(t testing.TB, body []byte) [][]string {
	f := &formState{opt: &Options{Cards: CardsAllow}}
	var paths [][]string
	_, err := f.run(nil, body, func(f *formState, p *pair) (pairAction, error) {
		var segs []string
		for _, s := range f.segs {
			if s.idx >= 0 {
				// "[]" is renumbered by what is left, like a compacted array.
				segs = append(segs, "#")
				continue
			}
			segs = append(segs, string(f.segBytes(s)))
		}
		paths = append(paths, segs)
		return drop, nil
	})
	if err != nil {
		t.Fatalf("output does not re-parse: %v\n%q", err, body)
	}
	return paths
}

func FuzzForm(f *testing.F) {
	checkout := addSeeds(f, "testdata/checkout.form")
	f.Add(checkout, "amount\ncurrency\ncard\nmetadata/order_id\nitems/*/sku\ncustomer/email=hmac", byte(2))
	f.Add(checkout, "customer\ncustomer/date_of_birth=year\ncard/number=last4", byte(1))
	f.Add([]byte("expand[]=a&expand[]=b&x=1"), "expand/1", byte(2))
	f.Add([]byte("a%5Bb%5D=1&a[c]=%zz"), "a", byte(2))
	f.Add([]byte("a[b]c=1;d=2"), "a", byte(0))
	f.Fuzz(func(t *testing.T, body []byte, spec string, mode byte) {
		fields, xfs := fuzzMask(spec)
		m, err := Compile(fields, xfs)
		if err != nil {
			return
		}
		opt := &Options{Cards: CardGuard(mode % 3), HMACKey: []byte("fuzz")}
		out, rep, steps, err := m.formCounted(nil, body, opt)
		checkCostOut(t, "form", len(body), steps, len(out))
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) && !errors.Is(err, ErrCardNumber) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if rep == nil {
			t.Fatal("nil report")
		}
		if _, err := url.ParseQuery(string(out)); err != nil {
			t.Fatalf("output is not a valid query: %v\n%q", err, out)
		}
		mask := maskPaths(t, fields, xfs)
		renumbered := false
		for _, p := range formPaths(t, out) {
			if !pathAllowed(p, mask) {
				t.Fatalf("output pair %q outside the mask %q", p, mask)
			}
			renumbered = renumbered || strings.Contains(strings.Join(p, "/"), "#")
		}
		if len(xfs) == 0 && opt.Cards == CardsAllow && !renumbered {
			again, _, err := m.Form(nil, out, opt)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("filtering is not idempotent: %q then %q (%v)", out, again, err)
			}
		}
	})
}

func FuzzQuery(f *testing.F) {
	f.Add("expand[]=customer&limit=10&email=a%40b.c", "expand,limit", byte(2))
	f.Add("EXPAND=1&card=4242424242424242", "expand,card", byte(1))
	f.Add("a=%zz", "a", byte(0))
	f.Fuzz(func(t *testing.T, raw, allowedCSV string, mode byte) {
		allowed := strings.Split(allowedCSV, ",")
		opt := &Options{Cards: CardGuard(mode % 3)}
		out, rep, steps, err := queryCounted(raw, allowed, opt)
		checkCostOut(t, "query", len(raw), steps, len(out))
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) && !errors.Is(err, ErrCardNumber) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if rep == nil {
			t.Fatal("nil report")
		}
		if _, err := url.ParseQuery(out); err != nil {
			t.Fatalf("output is not a valid query: %v\n%q", err, out)
		}
		for _, p := range formPaths(t, []byte(out)) {
			ok := false
			for _, a := range allowed {
				ok = ok || strings.EqualFold(a, p[0])
			}
			if !ok {
				t.Fatalf("parameter %q not allowed by %q", p[0], allowed)
			}
		}
	})
}
