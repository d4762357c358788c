package consent

import (
	"os"
	"testing"
)

// FuzzParseFile checks that the parser never panics, and that whatever it accepts is a valid
// state: checked events, one per purpose.
func FuzzParseFile(f *testing.F) {
	for _, path := range []string{"testdata/consents.yaml", "testdata/consents.json"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, path == "testdata/consents.json")
	}
	f.Add([]byte("subjects: {}"), false)
	f.Add([]byte("subjects:\n  u-1: &a\n    - {purpose: a}\n  u-2: *a\n"), false)
	f.Add([]byte(`{"subjects": {"u": [{"purpose": "\ud83d", "status": "withdrawn", "time": "2026-10-01T10:00:00Z"}]}}`), true)
	f.Add([]byte("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]"), true)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		format := "yaml"
		if isJSON {
			format = "json"
		}
		state, err := parseFile("f."+format, format, data)
		if err != nil {
			return
		}
		for subject, cs := range state {
			if subject == "" || len(cs) == 0 {
				t.Errorf("subject %q with %d consents in an accepted state", subject, len(cs))
			}
			seen := map[string]bool{}
			for _, c := range cs {
				if p := check(c); len(p) > 0 {
					t.Errorf("accepted an invalid event %+v: %v", c, p)
				}
				if seen[c.Purpose] {
					t.Errorf("two states for purpose %q", c.Purpose)
				}
				seen[c.Purpose] = true
			}
		}
	})
}
