package filters

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name   string
		fields []string
		xfs    map[string]string
		want   string
	}{
		{"empty path", []string{""}, nil, "empty path"},
		{"only slashes", []string{"//"}, nil, "empty path"},
		{"empty segment", []string{"a//b"}, nil, "empty segment"},
		{"trailing slash", []string{"a/"}, nil, "empty segment"},
		{"bad escape", []string{"a~2"}, nil, "bad escape"},
		{"dangling tilde", []string{"a~"}, nil, "bad escape"},
		{"unknown transform", nil, map[string]string{"a": "hash"}, "unknown transform"},
		{"truncate zero", nil, map[string]string{"a": "truncate:0"}, "bad length"},
		{"truncate sign", nil, map[string]string{"a": "truncate:+3"}, "bad length"},
		{"truncate empty", nil, map[string]string{"a": "truncate:"}, "bad length"},
		{"transform bad path", nil, map[string]string{"": "redact"}, "empty path"},
		{"conflict same node", nil, map[string]string{"a": "redact", "/a": "hmac"}, "conflicting transforms"},
		{"conflict via wildcard", nil, map[string]string{"*/b": "redact", "a/b": "hmac"}, "conflicting transforms"},
		{"all reported", []string{"", "a//b"}, map[string]string{"x": "nope"}, "empty segment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.fields, c.xfs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	if _, err := Compile([]string{"a", "/b/c", "d~0e~1f", "*", "*/x"}, map[string]string{"a/*": "redact", "b/c": "truncate:10"}); err != nil {
		t.Fatal(err)
	}
}

func TestParseCardGuard(t *testing.T) {
	for s, want := range map[string]CardGuard{"": CardsBlock, "block": CardsBlock, "redact": CardsRedact, "allow": CardsAllow} {
		if g, err := ParseCardGuard(s); err != nil || g != want {
			t.Errorf("ParseCardGuard(%q) = %v, %v", s, g, err)
		}
	}
	if _, err := ParseCardGuard("Allow"); err == nil {
		t.Error("want an error for Allow")
	}
}

func filterJSON(t *testing.T, doc string, fields []string, xfs map[string]string, opt *Options) (string, *Report, error) {
	t.Helper()
	m, err := Compile(fields, xfs)
	if err != nil {
		t.Fatal(err)
	}
	out, rep, err := m.JSON(nil, []byte(doc), opt)
	return string(out), rep, err
}

func TestTransforms(t *testing.T) {
	key := []byte("vendor-key")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("a\"b@x.org"))
	wantHMAC := hex.EncodeToString(mac.Sum(nil))
	cases := []struct {
		name, doc, xf, want string
	}{
		{"hmac unescaped content", `{"v":"a\"b@x.org"}`, "hmac", `{"v":"` + wantHMAC + `"}`},
		{"last4", `{"v":"4000 0012 3456 7899"}`, "last4", `{"v":"***************7899"}`},
		{"last4 runes", `{"v":"żółćęśą"}`, "last4", `{"v":"***ćęśą"}`},
		{"last4 too short", `{"v":"314"}`, "last4", `{"v":"[REDACTED]"}`},
		{"last4 number", `{"v":123456}`, "last4", `{"v":"**3456"}`},
		{"redact", `{"v":{"a":[1,"x",true,null]}}`, "redact", `{"v":{"a":["[REDACTED]","[REDACTED]","[REDACTED]",null]}}`},
		{"year date", `{"v":"1986-04-17"}`, "year", `{"v":"1986"}`},
		{"year timestamp", `{"v":"2026-11-20T14:03:11.512Z"}`, "year", `{"v":"2026"}`},
		{"year offset", `{"v":"2026-11-20T14:03:11+02:00"}`, "year", `{"v":"2026"}`},
		{"year bad", `{"v":"n/a"}`, "year", `{"v":"[REDACTED]"}`},
		{"year number", `{"v":1986}`, "year", `{"v":"1986"}`},
		{"year bool", `{"v":true}`, "year", `{"v":"[REDACTED]"}`},
		{"truncate runes", `{"v":"Marszałkowska"}`, "truncate:6", `{"v":"Marsza"}`},
		{"truncate multibyte cut", `{"v":"ułica"}`, "truncate:2", `{"v":"uł"}`},
		{"truncate short", `{"v":"ab"}`, "truncate:5", `{"v":"ab"}`},
		{"truncate escapes", `{"v":"a\nb\"c"}`, "truncate:4", `{"v":"a\nb\""}`},
		{"null stays null", `{"v":null}`, "hmac", `{"v":null}`},
		{"number literal text", `{"v":196.00}`, "truncate:5", `{"v":"196.0"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, rep, err := filterJSON(t, c.doc, nil, map[string]string{"v": c.xf}, &Options{HMACKey: key})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			if !reflect.DeepEqual(rep.Transformed, []string{"v"}) || !reflect.DeepEqual(rep.Kept, []string{"v"}) {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// TestHMACKeyPerCall: pooled walkers keep their MAC between calls; a call
// with another key (another vendor) must never hash with the previous one.
func TestHMACKeyPerCall(t *testing.T) {
	m, err := Compile(nil, map[string]string{"e": "hmac"})
	if err != nil {
		t.Fatal(err)
	}
	want := func(key string) string {
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte("m@x.org"))
		return `{"e":"` + hex.EncodeToString(mac.Sum(nil)) + `"}`
	}
	for i := range 20 {
		key := []string{"vendor-a key", "vendor-b key", "vendor-a key!"}[i%3]
		for _, form := range []bool{false, true} {
			var got string
			if form {
				out, _, err := m.Form(nil, []byte("e=m%40x.org"), &Options{HMACKey: []byte(key)})
				if err != nil {
					t.Fatal(err)
				}
				got = string(out)
				mac := hmac.New(sha256.New, []byte(key))
				mac.Write([]byte("m@x.org"))
				if w := "e=" + hex.EncodeToString(mac.Sum(nil)); got != w {
					t.Fatalf("form, key %q: got %s, want %s", key, got, w)
				}
				continue
			}
			out, _, err := m.JSON(nil, []byte(`{"e":"m@x.org"}`), &Options{HMACKey: []byte(key)})
			if err != nil {
				t.Fatal(err)
			}
			if got = string(out); got != want(key) {
				t.Fatalf("json, key %q: got %s, want %s", key, got, want(key))
			}
		}
	}
}

func TestTransformSemantics(t *testing.T) {
	opt := &Options{HMACKey: []byte("k"), Cards: CardsAllow}
	// The deepest transform wins; fields do not cancel a transform.
	got, rep, err := filterJSON(t, `{"c":{"email":"m@x","name":"Maria","dob":"1986-04-17"},"x":1}`,
		[]string{"c", "c/name"}, map[string]string{"c": "redact", "c/dob": "year"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"c":{"email":"[REDACTED]","name":"[REDACTED]","dob":"1986"}}`; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if !reflect.DeepEqual(rep.Transformed, []string{"c", "c/dob"}) || !reflect.DeepEqual(rep.Removed, []string{"x"}) {
		t.Fatalf("report %+v", rep)
	}
	// A scalar where the mask expected an object, with a transform below:
	// json.filter would keep it, we cannot apply the transform, so redact.
	got, rep, err = filterJSON(t, `{"customer":"m@x.org"}`, nil, map[string]string{"customer/email": "hmac"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	if got != `{"customer":"[REDACTED]"}` || !reflect.DeepEqual(rep.Transformed, []string{"customer"}) {
		t.Fatalf("got %s %+v", got, rep)
	}
	// hmac without a key fails rather than hashing unkeyed.
	if _, _, err := filterJSON(t, `{"a":"x"}`, nil, map[string]string{"a": "hmac"}, nil); !errors.Is(err, ErrNoHMACKey) {
		t.Fatalf("got %v", err)
	}
}

func TestCardScanner(t *testing.T) {
	cases := []struct {
		in   string
		want bool
	}{
		{"4242424242424242", true},
		{"4242 4242 4242 4242", true},
		{"4242-4242-4242-4242", true},
		{"4242 4242-4242 4242", true},
		{"card: 4000056655665556 exp 12/29", true},
		{"378282246310005", true},   // Amex, 15 digits
		{"6011111111111117", true},  // Discover
		{"4222222222222", true},     // 13 digits
		{"4242424242424241", false}, // Luhn fails
		{"424242424242", false},     // 12 digits
		// Issue 9 changed these two: a card number with more digits glued
		// after it (here a 20-digit run) and one written with two spaces
		// between groups are card numbers.
		{"42424242424242424242", true},
		{"4242  4242 4242 4242", true},
		{"14242424242424242", false}, // a digit glued before it: windows start at group starts only
		{"card ending 4242 was charged", false},
		{"+48 601 234 567", false},
		{"PL5261040828", false},
		{"b7d1e3a0-5a7e-4a53-9c62-6f1f6b2d2a11", false},
		{"2026-11-20T14:03:11.512Z", false},
		{"4242424242424242.00", true},
		{"", false},
	}
	for _, c := range cases {
		if got := hasCard([]byte(c.in)); got != c.want {
			t.Errorf("hasCard(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := string(redactCards(nil, []byte("a 4242 4242 4242 4242, b 4000056655665556."))); got != "a [CARD REDACTED], b [CARD REDACTED]." {
		t.Errorf("redactCards: %q", got)
	}
}

func TestCardGuardJSON(t *testing.T) {
	doc := `{"n":"paid with 4242 4242 4242 4242 ok","num":4242424242424242,"esc":"\u0034242424242424242","k":{"4242424242424242":1,"ok":2},"last":"card ending 4242"}`
	fields := []string{"n", "num", "esc", "k", "last"}

	_, _, err := filterJSON(t, doc, fields, nil, &Options{Cards: CardsBlock})
	if !errors.Is(err, ErrCardNumber) || !strings.Contains(err.Error(), "at n") || strings.Contains(err.Error(), "4242") {
		t.Fatalf("block: %v", err)
	}

	got, rep, err := filterJSON(t, doc, fields, nil, &Options{Cards: CardsRedact})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"n":"paid with [CARD REDACTED] ok","num":"[CARD REDACTED]","esc":"[CARD REDACTED]","k":{"ok":2},"last":"card ending 4242"}`
	if got != want {
		t.Fatalf("redact:\n got %s\nwant %s", got, want)
	}
	if !reflect.DeepEqual(rep.Cards, []string{"n", "num", "esc", "k/4242424242424242"}) {
		t.Fatalf("cards report %q", rep.Cards)
	}

	got, _, err = filterJSON(t, doc, fields, nil, &Options{Cards: CardsAllow})
	if err != nil || !strings.Contains(got, "4242 4242 4242 4242") {
		t.Fatalf("allow: %s %v", got, err)
	}

	// Transformed values are not scanned: last4 is how a card leaves.
	got, _, err = filterJSON(t, `{"card":{"number":"4242424242424242"}}`, nil, map[string]string{"card/number": "last4"}, nil)
	if err != nil || got != `{"card":{"number":"************4242"}}` {
		t.Fatalf("last4: %s %v", got, err)
	}

	// Removed values are not scanned either.
	if _, _, err := filterJSON(t, `{"a":1,"card":"4242424242424242"}`, []string{"a"}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTicketFreeText(t *testing.T) {
	doc, err := os.ReadFile("testdata/ticket.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Compile([]string{"ticket"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, rep, err := m.JSON(nil, doc, nil); err != nil || len(rep.Cards) != 0 {
		t.Fatalf("ticket.json must pass the card guard: %v %+v", err, rep)
	}
}

func TestJSONSyntax(t *testing.T) {
	deep := strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1)
	okDeep := strings.Repeat(`[`, maxDepth) + strings.Repeat("]", maxDepth)
	cases := []struct {
		name, doc, want string
	}{
		{"empty", "", "empty body"},
		{"spaces", "  \n", "empty body"},
		{"duplicate", `{"a":1,"b":2,"a":3}`, "duplicate key at a"},
		{"duplicate escaped", `{"a":1,"\u0061":2}`, "duplicate key at a"},
		{"duplicate removed subtree", `{"keep":1,"x":{"y":[{"k":1,"k":2}]}}`, "duplicate key at x/y/0/k"},
		{"duplicate big object", `{` + manyKeys(100) + `,"k5":0}`, "duplicate key at k5"},
		{"trailing data", `{"a":1} {}`, "data after"},
		{"trailing comma", `{"a":1,}`, "expected a string key"},
		{"array trailing comma", `{"a":[1,]}`, "invalid character"},
		{"bad number", `{"a":01}`, "expected ','"},
		{"bad number 2", `{"a":-}`, "invalid number"},
		{"bad number 3", `{"a":1.}`, "invalid number"},
		{"bad number 4", `{"a":1e}`, "invalid number"},
		{"bad literal", `{"a":tru}`, "invalid literal"},
		{"control char", "{\"a\":\"x\ny\"}", "control character"},
		{"bad escape", `{"a":"\x"}`, "invalid escape"},
		{"bad unicode escape", `{"a":"\u12g4"}`, "invalid \\u escape"},
		{"invalid utf8", "{\"a\":\"\xff\"}", "invalid UTF-8"},
		{"invalid utf8 removed", "{\"b\":1,\"a\":\"\xc3\x28\"}", "invalid UTF-8"},
		{"surrogate utf8", "{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},
		{"unterminated", `{"a":"x`, "unterminated string"},
		{"unterminated object", `{"a":1`, "unterminated object"},
		{"missing colon", `{"a" 1}`, "expected ':'"},
		{"too deep", deep, "nesting too deep"},
		{"bom", "\xef\xbb\xbf{}", "invalid character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, _ := Compile([]string{"keep", "a"}, nil)
			dst := []byte("prefix")
			out, rep, err := m.JSON(dst, []byte(c.doc), nil)
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.Contains(se.Msg, c.want) {
				t.Fatalf("got %v, want a SyntaxError containing %q", err, c.want)
			}
			if string(out) != "prefix" || rep != nil {
				t.Fatalf("partial output on error: %q", out)
			}
		})
	}
	m, _ := Compile([]string{"a"}, nil)
	if _, _, err := m.JSON(nil, []byte(okDeep), nil); err != nil {
		t.Fatalf("nesting at the limit: %v", err)
	}
	for _, s := range []string{`"x"`, `12`, `null`, `true`} {
		if _, _, err := m.JSON(nil, []byte(s), nil); !errors.Is(err, ErrNotContainer) {
			t.Errorf("%s: got %v", s, err)
		}
	}
	var nilMask *Mask
	if _, _, err := nilMask.JSON(nil, []byte(`{}`), nil); err == nil {
		t.Error("nil mask must fail")
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + itoa(i) + `":1`)
	}
	return b.String()
}

func TestJSONFormatting(t *testing.T) {
	// Compact output, raw strings and numbers, key order kept, escaped keys
	// matched by their content and copied as written.
	doc := "{ \"z\" : 1.50e+3 ,\n \"a\\u002fb\": \"\\u00e9\\n\" , \"é\": [ 1 , 2 ], \"x\": {\"y\": -0}}"
	got, rep, err := filterJSON(t, doc, []string{"z", "a~1b", "é/1", "x/y"}, nil, &Options{Cards: CardsAllow})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":1.50e+3,"a\u002fb":"\u00e9\n","é":[2],"x":{"y":-0}}`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !reflect.DeepEqual(rep.Kept, []string{"z", "a~1b", "é/*", "x/y"}) || !reflect.DeepEqual(rep.Removed, []string{"é/*"}) || rep.RemovedCount != 1 {
		t.Fatalf("report %+v", rep)
	}
	// dst is appended to.
	m, _ := Compile([]string{"a"}, nil)
	out, _, err := m.JSON([]byte("x="), []byte(`{"a":1,"b":2}`), nil)
	if err != nil || string(out) != `x={"a":1}` {
		t.Fatalf("append: %q %v", out, err)
	}
}

func TestReportCounts(t *testing.T) {
	_, rep, err := filterJSON(t, `[{"a":1,"b":2},{"a":3,"b":4},{"a":5,"c":{"d":1}}]`, []string{"*/a"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Report{Kept: []string{"*/a"}, Removed: []string{"*/b", "*/c"}, RemovedCount: 3}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("got %+v", rep)
	}
	// Many distinct paths switch dedup to a map; order stays.
	_, rep, err = filterJSON(t, `{`+manyKeys(50)+`}`, []string{"k49"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 49 || rep.Removed[0] != "k0" || rep.Removed[48] != "k48" || rep.RemovedCount != 49 {
		t.Fatalf("got %d removed: %v", len(rep.Removed), rep.Removed)
	}
}

func TestForm(t *testing.T) {
	opt := &Options{Cards: CardsAllow, HMACKey: []byte("k")}
	cases := []struct {
		name, body string
		fields     []string
		xfs        map[string]string
		want       string
		kept       []string
	}{
		{"brackets", "card%5Bnumber%5D=4242&card[cvc]=1&amount=5", []string{"card/number", "amount"}, nil, "card%5Bnumber%5D=4242&amount=5", []string{"card/number", "amount"}},
		{"append indices", "expand[]=a&expand[]=b&expand[]=c", []string{"expand/1"}, nil, "expand[]=b", []string{"expand/*"}},
		{"numeric indices kept", "items[0][sku]=A&items[1][sku]=B&items[1][n]=x", []string{"items/1"}, nil, "items[1][sku]=B&items[1][n]=x", []string{"items/*"}},
		{"wildcard", "items[0][sku]=A&items[1][sku]=B&items[1][n]=x", []string{"items/*/sku"}, nil, "items[0][sku]=A&items[1][sku]=B", []string{"items/*/sku"}},
		{"no value", "flag&x=1", []string{"flag"}, nil, "flag", []string{"flag"}},
		{"empty pairs", "&&a=1&&", []string{"a"}, nil, "a=1", []string{"a"}},
		{"plus and percent", "q=a+b%2Bc&r=1", []string{"q"}, nil, "q=a+b%2Bc", []string{"q"}},
		{"transform reencodes", "c[email]=M%40x.org&c[dob]=1986-04-17&c[note]=za%C5%BC%C3%B3%C5%82%C4%87", nil, map[string]string{"c/dob": "year", "c/note": "truncate:3"}, "c[dob]=1986&c[note]=za%C5%BC", []string{"c/dob", "c/note"}},
		{"scalar above path", "card=x&card[number]=1", []string{"card/number"}, nil, "card=x&card[number]=1", []string{"card", "card/number"}},
		{"scalar above transform", "customer=m%40x", nil, map[string]string{"customer/email": "hmac"}, "customer=%5BREDACTED%5D", []string{"customer"}},
		{"wildcard over nothing", "items=1", []string{"items/*/sku"}, nil, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Compile(c.fields, c.xfs)
			if err != nil {
				t.Fatal(err)
			}
			out, rep, err := m.Form(nil, []byte(c.body), opt)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != c.want || !reflect.DeepEqual(rep.Kept, c.kept) {
				t.Fatalf("got %q %q, want %q %q", out, rep.Kept, c.want, c.kept)
			}
		})
	}
}

func TestFormErrors(t *testing.T) {
	m, _ := Compile([]string{"a"}, nil)
	for _, body := range []string{"a=%zz", "a=%4", "a%=1", "[x]=1", "=1", "a]=1", "a[b=1", "a[b]c=1", "a[b[c]]=1", "a=1;b=2"} {
		dst := []byte("p")
		out, _, err := m.Form(dst, []byte(body), nil)
		var se *SyntaxError
		if !errors.As(err, &se) || string(out) != "p" {
			t.Errorf("%q: got %q, %v", body, out, err)
		}
	}
	_, _, err := m.Form(nil, []byte("a=4242+4242+4242+4242"), nil)
	if !errors.Is(err, ErrCardNumber) {
		t.Fatalf("got %v", err)
	}
	out, rep, err := m.Form(nil, []byte("a=x+4242-4242-4242-4242+y"), &Options{Cards: CardsRedact})
	if err != nil || string(out) != "a=x+%5BCARD+REDACTED%5D+y" || !reflect.DeepEqual(rep.Cards, []string{"a"}) {
		t.Fatalf("redact: %q %+v %v", out, rep, err)
	}
}

func TestQuery(t *testing.T) {
	out, rep, err := Query("expand[]=customer&Limit=10&email=a%40b.c&expand[]=card", []string{"expand", "limit"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out != "expand[]=customer&Limit=10&expand[]=card" {
		t.Fatalf("got %q", out)
	}
	if !reflect.DeepEqual(rep.Kept, []string{"expand", "Limit"}) || !reflect.DeepEqual(rep.Removed, []string{"email"}) || rep.RemovedCount != 1 {
		t.Fatalf("report %+v", rep)
	}
	if _, _, err := Query("card=4242424242424242", []string{"card"}, nil); !errors.Is(err, ErrCardNumber) {
		t.Fatalf("got %v", err)
	}
	if out, _, err := Query("card=4242424242424242", []string{"card"}, &Options{Cards: CardsAllow}); err != nil || out != "card=4242424242424242" {
		t.Fatalf("allow: %q %v", out, err)
	}
	if _, _, err := Query("a=%", []string{"a"}, nil); err == nil {
		t.Fatal("want a syntax error")
	}
	if out, _, err := Query("", nil, nil); err != nil || out != "" {
		t.Fatalf("empty: %q %v", out, err)
	}
}

func TestHeaders(t *testing.T) {
	h := http.Header{}
	for _, n := range []string{"Authorization", "Idempotency-Key", "Content-Type", "Accept", "Cookie",
		"X-Data-Purpose", "X-Legal-Basis", "X-Pare-Trace", "X-Data-Subject", "Stripe-Version"} {
		h.Set(n, "v")
	}
	rep := Headers(h, []string{"authorization", "IDEMPOTENCY-KEY", "x-data-subject", "x-pare-trace"})
	var left []string
	for n := range h {
		left = append(left, strings.ToLower(n))
	}
	// content-type and accept leave only when listed (issue 9: a
	// content-type parameter can carry any text).
	want := []string{"authorization", "idempotency-key"}
	if !reflect.DeepEqual(sortedUnique(left), want) || !reflect.DeepEqual(rep.Kept, want) {
		t.Fatalf("kept %v, report %v", left, rep.Kept)
	}
	wantRemoved := []string{"accept", "content-type", "cookie", "stripe-version", "x-data-purpose", "x-data-subject", "x-legal-basis", "x-pare-trace"}
	if !reflect.DeepEqual(rep.Removed, wantRemoved) || rep.RemovedCount != 8 {
		t.Fatalf("removed %v", rep.Removed)
	}
}

func TestConcurrentUse(t *testing.T) {
	m, err := Compile([]string{"a", "b/*"}, map[string]string{"c": "hmac"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 8)
	for i := range 8 {
		go func() {
			key := []byte{byte(i)}
			var last string
			for range 200 {
				out, _, err := m.JSON(nil, []byte(`{"a":1,"b":{"x":2},"c":"v","d":3}`), &Options{HMACKey: key})
				if err != nil {
					done <- err.Error()
					return
				}
				if last != "" && string(out) != last {
					done <- "output changed between calls"
					return
				}
				last = string(out)
			}
			done <- ""
		}()
	}
	for range 8 {
		if msg := <-done; msg != "" {
			t.Fatal(msg)
		}
	}
}

func TestYear(t *testing.T) {
	for in, want := range map[string]string{
		"1986": "1986", "1986-04": "1986", "2024-02-29": "2024", "2026-11-20T14:03:11.512Z": "2026",
		"2026-11-20 14:03": "2026", "2026-11-20T14:03:11+02:00": "2026", "2026-11-20t14:03:11z": "2026",
		"2023-02-29": "", "2026-13-01": "", "2026-11-31": "", "2026-11-20T24:00": "", "2026-11-20T14": "",
		"2026-11-20X": "", "n/a": "", "86": "", "1986-4-17": "", "2026-11-20T14:03:11.": "", "2026-11-20T14:03+0200": "",
	} {
		y, ok := parseYear([]byte(in))
		if got := string(y[:]); (want == "" && ok) || (want != "" && (!ok || got != want)) {
			t.Errorf("parseYear(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestUnknownCardGuardBlocks(t *testing.T) {
	_, _, err := filterJSON(t, `{"a":"4242424242424242"}`, []string{"a"}, nil, &Options{Cards: CardGuard(9)})
	if !errors.Is(err, ErrCardNumber) {
		t.Fatalf("got %v", err)
	}
	m, _ := Compile([]string{"a"}, nil)
	if _, _, err := m.Form(nil, []byte("a=4242424242424242"), &Options{Cards: CardGuard(9)}); !errors.Is(err, ErrCardNumber) {
		t.Fatalf("form: got %v", err)
	}
}

func TestLowerHeader(t *testing.T) {
	for canon, lower := range commonHeaders {
		if got := LowerHeader(canon); got != lower || got != strings.ToLower(canon) {
			t.Errorf("LowerHeader(%q) = %q", canon, got)
		}
		if canon != http.CanonicalHeaderKey(canon) {
			t.Errorf("%q is not in canonical form: the server never hands it over like that", canon)
		}
	}
	for in, want := range map[string]string{"X-Custom-Thing": "x-custom-thing", "already-lower": "already-lower", "WEIRD": "weird"} {
		if got := LowerHeader(in); got != want {
			t.Errorf("LowerHeader(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = LowerHeader("Content-Type") }); n != 0 {
		t.Errorf("LowerHeader of a common header allocates %v times", n)
	}
}
