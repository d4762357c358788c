package filters

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestLimits: what the package documentation's "Limits" promises, at and
// just past each limit.
func TestLimits(t *testing.T) {
	name := func(segs int, seg string) string { return "a" + strings.Repeat(seg, segs-1) + "=1" }
	cases := []struct {
		name, kind, body string
		mask             []string
		want             string // part of the *SyntaxError message; "" for success
	}{
		{"json nesting at the limit", "json", `{"a":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`, []string{"a"}, ""},
		{"json nesting past it", "json", `{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, []string{"a"}, "nesting too deep"},
		{"json nesting past it, removed", "json", `{"b":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, []string{"a"}, "nesting too deep"},
		{"form name at the limit", "form", name(maxDepth, "[b]"), []string{"a"}, ""},
		{"form name past it", "form", name(maxDepth+1, "[b]"), []string{"a"}, "nested too deep"},
		{"form [] past it", "form", name(maxDepth+1, "[]"), []string{"zz"}, "nested too deep"},
		{"query past it", "query", name(maxDepth+1, "[]"), []string{"a"}, "nested too deep"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Compile(c.mask, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch c.kind {
			case "json":
				_, _, err = m.JSON(nil, []byte(c.body), nil)
			case "form":
				_, _, err = m.Form(nil, []byte(c.body), nil)
			default:
				_, _, err = Query(c.body, c.mask, nil)
			}
			var se *SyntaxError
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("got %v", err)
			case c.want != "" && (!errors.As(err, &se) || !strings.Contains(se.Msg, c.want)):
				t.Fatalf("got %v, want a *SyntaxError with %q", err, c.want)
			}
		})
	}
}

// TestReportBudget: a report whose paths outgrow twice the body stops
// listing them and says so; the body and RemovedCount are unaffected.
func TestReportBudget(t *testing.T) {
	m, err := Compile([]string{"events/*/type"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("k", 4<<10)
	var b strings.Builder
	b.WriteString(`{"events":{"` + key + `":{"type":1`)
	const members = 1000
	for i := range members {
		b.WriteString(`,"a` + itoa(i) + `":1`)
	}
	b.WriteString(`}}}`)
	doc := b.String()
	out, rep, err := m.JSON(nil, []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"events":{"` + key + `":{"type":1}}}`; string(out) != want {
		t.Fatalf("body changed: %.80q", out)
	}
	if !rep.Truncated || rep.RemovedCount != members {
		t.Fatalf("Truncated %v, RemovedCount %d", rep.Truncated, rep.RemovedCount)
	}
	listed := 0
	for _, l := range [][]string{rep.Kept, rep.Removed, rep.Transformed, rep.Cards} {
		for _, p := range l {
			listed += len(p)
		}
	}
	if listed > reportBudget(len(doc)) || len(rep.Kept) != 1 || len(rep.Removed) == 0 {
		t.Fatalf("%d path bytes listed (budget %d), %d kept, %d removed", listed, reportBudget(len(doc)), len(rep.Kept), len(rep.Removed))
	}
	// The same members under a short key fit: nothing is cut.
	short := strings.Replace(doc, key, "k", 1)
	_, rep, err = m.JSON(nil, []byte(short), nil)
	if err != nil || rep.Truncated || len(rep.Removed) != members {
		t.Fatalf("short key: %v, Truncated %v, %d removed", err, rep.Truncated, len(rep.Removed))
	}
	if !reflect.DeepEqual(rep.Kept, []string{"events/k/type"}) {
		t.Fatalf("kept %q", rep.Kept)
	}
}

// TestFormPrefixCounters: "[]" is numbered per prefix, the prefix being the
// name before it as written (after decoding), earlier "[]" included as
// "[]", not as their numbers. (The same as when counters were keyed by the
// prefix string.)
func TestFormPrefixCounters(t *testing.T) {
	body := "a[][x][]=1&a[][x][]=2&a[][y][]=3&a%5B%5D[x][]=4&a[][]=5&a[][]=6&b[]=7"
	f := &formState{opt: &Options{Cards: CardsAllow}}
	var got []string
	_, err := f.run(nil, []byte(body), func(f *formState, p *pair) (pairAction, error) {
		got = append(got, string(f.appendSegs(nil, len(f.segs), false)))
		return drop, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/0/x/0", "a/1/x/1", "a/2/y/0", "a/3/x/2", "a/4/0", "a/5/1", "b/0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// TestErrorPathCut: an error quotes at most maxErrPath bytes of a path,
// however long the keys, and says how long the path was.
func TestErrorPathCut(t *testing.T) {
	key := strings.Repeat("é", 1<<16)
	m, _ := Compile([]string{"*"}, nil)
	cases := []struct {
		name string
		run  func() error
	}{
		{"duplicate key", func() error {
			_, _, err := m.JSON(nil, []byte(`{"`+key+`":{"a":1,"a":2}}`), nil)
			return err
		}},
		{"card in JSON", func() error {
			_, _, err := m.JSON(nil, []byte(`{"`+key+`":"4242424242424242"}`), nil)
			return err
		}},
		{"card in a form", func() error {
			_, _, err := m.Form(nil, []byte(key+"=4242424242424242"), nil)
			return err
		}},
	}
	for _, c := range cases {
		err := c.run()
		if err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
		msg := err.Error()
		if len(msg) > maxErrPath+100 || !strings.Contains(msg, "bytes)") || !utf8.ValidString(msg) {
			t.Errorf("%s: %d bytes: %.300q", c.name, len(msg), msg)
		}
	}
	if got := errPath([]byte("a/b")); got != "a/b" {
		t.Errorf("short path: %q", got)
	}
}
