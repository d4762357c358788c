package filters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
)

// benchFields is a realistic Stripe mask for checkout.json. It has no
// transforms so that all three JSON benchmarks compute the same thing.
var benchFields = []string{
	"amount", "currency", "description", "order_id", "card",
	"billing_address/postal_code", "billing_address/country",
	"items/0/sku", "items/1/sku", "metadata/order_channel", "idempotency_key",
}

func readTestdata(b *testing.B, name string) []byte {
	b.Helper()
	bs, err := os.ReadFile("testdata/" + name)
	if err != nil {
		b.Fatal(err)
	}
	return bs
}

func BenchmarkJSONMask(b *testing.B) {
	doc := readTestdata(b, "checkout.json")
	m, err := Compile(benchFields, nil)
	if err != nil {
		b.Fatal(err)
	}
	opt := &Options{Cards: CardsAllow}
	dst := make([]byte, 0, len(doc))
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if dst, _, err = m.JSON(dst[:0], doc, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONMaskCardGuard is the same with the card scan on, as for any
// vendor but the payment processor.
func BenchmarkJSONMaskCardGuard(b *testing.B) {
	doc := readTestdata(b, "checkout.json")
	m, err := Compile([]string{"amount", "currency", "order_id", "items/*/sku", "customer/notes"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	opt := &Options{Cards: CardsBlock}
	dst := make([]byte, 0, len(doc))
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if dst, _, err = m.JSON(dst[:0], doc, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONFilterOPA is what the engine would do without this package:
// parse the body into an AST, evaluate json.filter with a prepared query,
// serialise the result.
func BenchmarkJSONFilterOPA(b *testing.B) {
	doc := readTestdata(b, "checkout.json")
	ctx := context.Background()
	pq, err := rego.New(rego.Query("x := json.filter(input.doc, input.paths)")).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	paths := make([]*ast.Term, len(benchFields))
	for i, p := range benchFields {
		paths[i] = ast.StringTerm(p)
	}
	pathsTerm := ast.ArrayTerm(paths...)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		var x any
		if err := util.UnmarshalJSON(doc, &x); err != nil {
			b.Fatal(err)
		}
		v, err := ast.InterfaceToValue(x)
		if err != nil {
			b.Fatal(err)
		}
		input := ast.NewObject(ast.Item(ast.StringTerm("doc"), ast.NewTerm(v)), ast.Item(ast.StringTerm("paths"), pathsTerm))
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input))
		if err != nil || len(rs) != 1 {
			b.Fatal(err)
		}
		if _, err := json.Marshal(rs[0].Bindings["x"]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONStdlibRoundTrip filters through encoding/json: unmarshal into
// any, keep the mask's paths, marshal.
func BenchmarkJSONStdlibRoundTrip(b *testing.B) {
	doc := readTestdata(b, "checkout.json")
	var tree [][]string
	for _, p := range benchFields {
		segs, _ := parsePath(p)
		tree = append(tree, segs)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		var x any
		if err := json.Unmarshal(doc, &x); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(stdlibFilter(x, tree)); err != nil {
			b.Fatal(err)
		}
	}
}

// stdlibFilter is a straightforward json.filter over encoding/json values,
// good enough for the benchmark's mask (object keys and array indices).
func stdlibFilter(v any, paths [][]string) any {
	for _, p := range paths {
		if len(p) == 0 {
			return v
		}
	}
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			var sub [][]string
			for _, p := range paths {
				if p[0] == k {
					sub = append(sub, p[1:])
				}
			}
			if sub != nil {
				out[k] = stdlibFilter(e, sub)
			}
		}
		return out
	case []any:
		out := []any{}
		for i, e := range x {
			var sub [][]string
			for _, p := range paths {
				if p[0] == itoa(i) {
					sub = append(sub, p[1:])
				}
			}
			if sub != nil {
				out = append(out, stdlibFilter(e, sub))
			}
		}
		return out
	}
	return v
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func BenchmarkFormMask(b *testing.B) {
	body := readTestdata(b, "checkout.form")
	m, err := Compile([]string{
		"amount", "currency", "description", "order_id", "card",
		"billing_address/postal_code", "billing_address/country",
		"items/*/sku", "metadata/order_channel", "idempotency_key",
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	opt := &Options{Cards: CardsAllow}
	dst := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if dst, _, err = m.Form(dst[:0], body, opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONMaskLarge filters a ~1 MiB array of attendees to what a
// marketing tool may get, with the card guard on.
func BenchmarkJSONMaskLarge(b *testing.B) {
	one := bytes.TrimSpace(readTestdata(b, "attendee.json"))
	doc := []byte{'['}
	for len(doc) < 1<<20 {
		if len(doc) > 1 {
			doc = append(doc, ',')
		}
		doc = append(doc, one...)
	}
	doc = append(doc, ']')
	m, err := Compile([]string{"*/email", "*/first_name", "*/consents/marketing"}, map[string]string{"*/registered_at": "year"})
	if err != nil {
		b.Fatal(err)
	}
	// bounded is as the pipeline runs it, MaxOutput at the buffer charged
	// for the filtered body: the check per member must cost next to
	// nothing (compare the two in one run).
	for _, bb := range []struct {
		name string
		max  int
	}{{"unbounded", 0}, {"bounded", len(doc) + len(doc)/8 + 512}} {
		b.Run(bb.name, func(b *testing.B) {
			opt := &Options{Cards: CardsBlock, MaxOutput: bb.max}
			dst := make([]byte, 0, len(doc))
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if dst, _, err = m.JSON(dst[:0], doc, opt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJSONHMACGrowth is the worst growth a transform makes (hmac over
// one-digit values, 33 times the input), run up to a bound of twice the
// input: what a refused body costs before it is refused, against what the
// whole output would (compare the two in one run).
func BenchmarkJSONHMACGrowth(b *testing.B) {
	doc := hmacLeaves(256 << 10)
	m, err := Compile(nil, map[string]string{"a": "hmac"})
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name string
		max  int
	}{{"whole", 0}, {"refused-at-2x", 2 * len(doc)}} {
		b.Run(bb.name, func(b *testing.B) {
			opt := &Options{HMACKey: []byte("bench-key-16byte"), MaxOutput: bb.max}
			var dst []byte
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _, err = m.JSON(dst[:0], doc, opt)
				if (bb.max > 0) != errors.Is(err, ErrOutputTooLarge) {
					b.Fatal(err)
				}
			}
		})
	}
}
