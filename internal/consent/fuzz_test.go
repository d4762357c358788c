package consent

import (
	"os"
	"reflect"
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

// FuzzJSONScanner holds the JSON scanner to the reader it replaced
// (encoding/json's tokens, checked by the YAML walker): both accept the same
// files, into the same state, and a file one rejects the other rejects.
func FuzzJSONScanner(f *testing.F) {
	data, err := os.ReadFile("testdata/consents.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, s := range []string{
		`{"subjects": {}}`, `{"subjects": null}`, `{}`, `[]`, `"x"`, ``, ` `, `{"subjects": {"u": null, "": []}}`,
		`{"subjects": {"u": [{"purpose": "a", "status": "withdrawn", "time": "2026-10-01T10:00:00Z", "evidence": null}]}}`,
		`{"subjects": {"u": [{"purpose": 1e3, "status": "granted", "time": "2026-10-01T10:00:00+02:00", "evidence": {"action": true, "policy_version": -0.5}}]}}`,
		`{"subjects": {"u": [{"purpose": "a\u00e9\ud83d\ude00\ud800", "status": "withdrawn", "time": "2026-10-01T10:00:00Z"}], "u": []}}`,
		`{"subjects": {"u": [{"purpose": ["a"], "status": {}, "time": 5, "x": 1, "purpose": "b"}]}, "other": 1}`,
		`{"subjects": {"u": [1, null, [], {"evidence": [1]}]}}`,
		`{"subjects": {"u": [{"purpose": "a", "status": "withdrawn", "time": "2026-10-01T10:00:00Z"},]}}`,
		"{\"subjects\": {\"u\t\": [{\"purpose\": \"a\x01\"}]}}", "{\"subjects\": {\"u\x1f\": []}}",
		`{"subjects": {"u": [{"purpose": "\x", "status": 01}]}}`,
		`{"subjects": {}} {}`, `{"subjects": {}}]`, `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"\xef\xbb\xbf{\"subjects\": {}}", `{"subjects": {"u": [{"purpose": "a", "status": "withdrawn", "time": "2026-10-01T10:00:00Z"}]}}` + "\n",
		`{"subjects": {"u": [{"purpose": "a", "status": "withdrawn", "time": "2026-10-01T10:00:00Z", "evidence": {"where": "x", "where": "y"}}]}}`,
		`{"subjects": {"u": [{"purpose": "a", "status": "granted", "time": "2026-10-01T10:00:00Z", "evidence": {"where": "x"}}]}}`,
		`{"subjects": {"u": [{"purpose": -, "status": 1.}]}}`, `{"subjects": tru}`, `{"subjects": nul`, `{"a" 1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := parseJSONFile("f.json", data)
		want, wantErr := parseJSONReference("f.json", data)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("scanner err %v, reference err %v", gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("scanner state %+v, reference %+v", got, want)
		}
	})
}
