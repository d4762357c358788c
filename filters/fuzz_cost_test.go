package filters

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// The fuzz targets hold every call to a work budget counted in steps, not
// seconds: a super-linear path fails them deterministically, on a loaded
// machine as on an idle one. The rate is twice the deterministic tests'
// (stepsPerByte) so that legitimate combinations the hostile shapes do not
// cover (escaped path segments, transforms over retried subtrees) have
// room, and a rescan per nesting level still does not fit.
const fuzzStepsPerByte = 2 * stepsPerByte

func checkCost(t *testing.T, what string, n, steps int) {
	t.Helper()
	checkCostOut(t, what, n, steps, 0)
}

// checkCostOut is checkCost that also bounds the output.
func checkCostOut(t *testing.T, what string, n, steps, out int) {
	t.Helper()
	if out > maxAmplification*n+1024 {
		t.Fatalf("%s of %d bytes wrote %d", what, n, out)
	}
	if budget := fuzzStepsPerByte*n + stepsConst; steps > budget {
		t.Fatalf("%s of %d bytes took %d steps, over the budget of %d (%.1f per byte)",
			what, n, steps, budget, float64(steps)/float64(max(n, 1)))
	}
}

// maxExpanded keeps one fuzz input cheap to run.
const maxExpanded = 256 << 10

// expandJSON turns a short fuzz input into a JSON document with the
// structures that are costly to filter (deep nesting, many or long keys,
// long digit runs, escapes), which byte-level mutation of a document
// seldom reaches: ops are (operation, count) pairs, and a count repeats its
// operation up to 255·4 times. The document is always valid JSON with
// unique keys, so the whole filter runs, not only its error path.
func expandJSON(ops []byte) []byte {
	type level struct {
		obj bool
		n   int
	}
	b := []byte{'{'}
	stack := []level{{obj: true}}
	// open writes the separator and key that the next value of the
	// innermost container needs.
	open := func(key string) {
		top := &stack[len(stack)-1]
		if top.n > 0 {
			b = append(b, ',')
		}
		if top.obj {
			b = append(b, `"k`...)
			b = strconv.AppendInt(b, int64(top.n), 10)
			b = append(b, key...)
			b = append(b, `":`...)
		}
		top.n++
	}
	for i := 0; i+1 < len(ops) && len(b) < maxExpanded; i += 2 {
		count := 1 + 4*int(ops[i+1])
		switch ops[i] % 8 {
		case 0: // nested arrays
			for range count {
				if len(stack) >= maxDepth-1 {
					break
				}
				open("")
				b = append(b, '[')
				stack = append(stack, level{})
			}
		case 1: // nested objects
			for range count {
				if len(stack) >= maxDepth-1 {
					break
				}
				open("")
				b = append(b, '{')
				stack = append(stack, level{obj: true})
			}
		case 2: // a digit run
			open("")
			b = append(b, '"')
			b = append(b, strings.Repeat("7", count)...)
			b = append(b, '"')
		case 3: // a number that may be a card
			open("")
			b = append(b, "4242424242424242"[:min(16, count)]...)
		case 4: // close
			for range count {
				if len(stack) == 1 {
					break
				}
				if stack[len(stack)-1].obj {
					b = append(b, '}')
				} else {
					b = append(b, ']')
				}
				stack = stack[:len(stack)-1]
			}
		case 5: // many members
			for range count {
				open("")
				b = append(b, '1')
			}
		case 6: // escapes
			open(`\u006b`)
			b = append(b, '"')
			b = append(b, strings.Repeat(`\n\u00e9\\`, count)...)
			b = append(b, '"')
		case 7: // a long key
			open(strings.Repeat("~/", count))
			b = append(b, "null"...)
		}
	}
	for len(stack) > 0 {
		if stack[len(stack)-1].obj {
			b = append(b, '}')
		} else {
			b = append(b, ']')
		}
		stack = stack[:len(stack)-1]
	}
	return b
}

// FuzzJSONCost filters documents made by expandJSON, under any mask, and
// holds each call to the step budget.
func FuzzJSONCost(f *testing.F) {
	// Issue 10's case: a kept field of deep arrays around a digit run.
	f.Add([]byte{0, 240, 2, 255, 2, 255, 2, 255}, "k0", byte(0))
	f.Add([]byte{1, 240, 2, 255, 4, 10, 2, 200}, "k0", byte(1))
	f.Add([]byte{0, 240, 5, 255, 0, 5, 3, 16}, "zz", byte(0))
	f.Add([]byte{7, 255, 1, 0, 5, 255, 5, 255}, "*/*/x", byte(2))
	f.Add([]byte{6, 255, 6, 255, 1, 3, 6, 255}, "k0\nk1=hmac", byte(1))
	f.Add([]byte{0, 30, 1, 30, 5, 40, 4, 5, 5, 40}, "k0/*/*/k0\nk0/0=last4", byte(0))
	f.Fuzz(func(t *testing.T, ops []byte, spec string, mode byte) {
		fields, xfs := fuzzMask(spec)
		m, err := Compile(fields, xfs)
		if err != nil {
			return
		}
		doc := expandJSON(ops)
		opt := &Options{Cards: CardGuard(mode % 3), HMACKey: []byte("fuzz")}
		out, _, steps, err := m.jsonCounted(nil, doc, opt)
		checkCostOut(t, "JSON", len(doc), steps, len(out))
		if err == nil {
			checkMaxOutput(t, out, len(doc), func(o *Options) ([]byte, error) { b, _, err := m.JSON(nil, doc, o); return b, err }, *opt)
		}
		var se *SyntaxError
		switch {
		case err == nil:
			if !json.Valid(out) {
				t.Fatalf("invalid output %q", out)
			}
		case errors.As(err, &se):
			t.Fatalf("expandJSON made a document the filter rejects: %v", err)
		case !errors.Is(err, ErrCardNumber) && !errors.Is(err, ErrNotContainer):
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// expandForm is expandJSON for forms: ops repeat pairs of costly shapes
// (deep and "[]" names, new prefixes, long names and values, escapes).
func expandForm(ops []byte) []byte {
	var b []byte
	pair := func(p string) {
		if len(b) > 0 {
			b = append(b, '&')
		}
		b = append(b, p...)
	}
	for i := 0; i+1 < len(ops) && len(b) < maxExpanded; i += 2 {
		count := 1 + 4*int(ops[i+1])
		depth := min(count, maxDepth-1)
		switch ops[i] % 6 {
		case 0:
			pair("a" + strings.Repeat("[b]", depth) + "=1")
		case 1:
			pair("a" + strings.Repeat("[]", depth) + "=1")
		case 2:
			for j := range count {
				pair("x" + strconv.Itoa(i) + "_" + strconv.Itoa(j) + "[][]=1")
			}
		case 3:
			pair(strings.Repeat("n", count) + "=" + strings.Repeat("7", count))
		case 4:
			pair("a[c]=" + strings.Repeat("%41+%C3%A9", count))
		case 5:
			for j := range count {
				pair("k" + strconv.Itoa(j) + "=4242424242424242")
			}
		}
	}
	return b
}

// FuzzFormCost is FuzzJSONCost for forms and query strings.
func FuzzFormCost(f *testing.F) {
	f.Add([]byte{1, 240, 1, 240, 2, 255}, "a", byte(0))
	f.Add([]byte{0, 240, 0, 240, 3, 255}, "a/b/b", byte(1))
	f.Add([]byte{5, 255, 4, 100}, "a/c=hmac\nk1", byte(2))
	f.Fuzz(func(t *testing.T, ops []byte, spec string, mode byte) {
		body := expandForm(ops)
		opt := &Options{Cards: CardGuard(mode % 3), HMACKey: []byte("fuzz")}
		_, _, steps, _ := queryCounted(string(body), strings.Split(spec, "\n"), opt)
		checkCost(t, "query", len(body), steps)
		fields, xfs := fuzzMask(spec)
		m, err := Compile(fields, xfs)
		if err != nil {
			return
		}
		out, _, steps, err := m.formCounted(nil, body, opt)
		checkCostOut(t, "form", len(body), steps, len(out))
		if err == nil {
			checkMaxOutput(t, out, len(body), func(o *Options) ([]byte, error) { b, _, err := m.Form(nil, body, o); return b, err }, *opt)
		}
		if err == nil && bytes.IndexByte(out, ';') >= 0 {
			t.Fatalf("';' in output %q", out)
		}
	})
}

// checkMaxOutput: with Options.MaxOutput at the length of out plus the
// input's (what the filter may hold in containers it may still withdraw)
// the filter writes out again; one byte less than out and it fails with
// ErrOutputTooLarge.
func checkMaxOutput(t *testing.T, out []byte, in int, filter func(*Options) ([]byte, error), opt Options) {
	t.Helper()
	opt.MaxOutput = len(out) + in
	if got, err := filter(&opt); err != nil || !bytes.Equal(got, out) {
		t.Fatalf("MaxOutput %d, the output's length and the input's: %q, %v; want %q", opt.MaxOutput, got, err, out)
	}
	if len(out) < 2 {
		return // MaxOutput 0 is no bound
	}
	opt.MaxOutput = len(out) - 1
	if _, err := filter(&opt); !errors.Is(err, ErrOutputTooLarge) {
		t.Fatalf("MaxOutput %d, one less than the output: err %v", opt.MaxOutput, err)
	}
}
