package consent

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// lines joins its arguments as lines, so that test files show their line numbers plainly.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestParseFileGood(t *testing.T) {
	grant := Evidence{Action: "checked 'Send me product news'", Where: "signup form /register", PolicyVersion: "2026-09"}
	tests := []struct {
		name, format, data string
		want               map[string][]Consent
	}{{
		name:   "latest wins",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-123:",
			"    - purpose: marketing",
			"      status: granted",
			"      time: 2026-10-01T10:00:00Z",
			`      evidence: {action: "checked 'Send me product news'", where: "signup form /register", policy_version: "2026-09"}`,
			"    - purpose: marketing",
			"      status: withdrawn",
			"      time: 2026-11-01T10:00:00Z",
			`      evidence: {action: "clicked unsubscribe", where: "newsletter footer"}`,
		),
		want: map[string][]Consent{"u-123": {{
			Purpose: "marketing", Status: StatusWithdrawn, Time: ts("2026-11-01T10:00:00Z"),
			Evidence: Evidence{Action: "clicked unsubscribe", Where: "newsletter footer"},
		}}},
	}, {
		name:   "history out of order, latest by time not position",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - {purpose: marketing, status: withdrawn, time: 2026-09-01T00:00:00Z}",
			`    - {purpose: marketing, status: granted, time: "2026-10-01T10:00:00Z", evidence: {action: "checked 'Send me product news'", where: "signup form /register", policy_version: "2026-09"}}`,
			"    - {purpose: marketing, status: withdrawn, time: 2026-08-01T00:00:00Z}",
		),
		want: map[string][]Consent{"u-1": {{Purpose: "marketing", Status: StatusGranted, Time: ts("2026-10-01T10:00:00Z"), Evidence: grant}}},
	}, {
		name:   "same time: the withdrawal wins",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - {purpose: marketing, status: withdrawn, time: 2026-10-01T10:00:00Z}",
			"    - {purpose: marketing, status: granted, time: 2026-10-01T10:00:00Z, evidence: {action: x}}",
		),
		want: map[string][]Consent{"u-1": {{Purpose: "marketing", Status: StatusWithdrawn, Time: ts("2026-10-01T10:00:00Z")}}},
	}, {
		name:   "sorted by purpose, zones normalised to UTC, numbers as text",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - {purpose: support, status: granted, time: 2026-10-01T12:00:00+02:00, evidence: {action: a, policy_version: 2026}}",
			"    - {purpose: analytics, status: withdrawn, time: 2026-10-01T10:00:00.5Z}",
			"  u-2: []",
			"  u-3:",
		),
		want: map[string][]Consent{"u-1": {
			{Purpose: "analytics", Status: StatusWithdrawn, Time: ts("2026-10-01T10:00:00.5Z")},
			{Purpose: "support", Status: StatusGranted, Time: ts("2026-10-01T10:00:00Z"), Evidence: Evidence{Action: "a", PolicyVersion: "2026"}},
		}},
	}, {
		name:   "no subjects",
		format: "yaml",
		data:   "subjects: {}\n",
		want:   map[string][]Consent{},
	}, {
		name:   "subjects null",
		format: "yaml",
		data:   "# everything commented out\nsubjects:\n",
		want:   map[string][]Consent{},
	}, {
		name:   "json with surrogate escapes and tabs",
		format: "json",
		data: lines(
			"{",
			"\t\"subjects\": {\"u-1\": [",
			"\t\t{\"purpose\": \"marketing\", \"status\": \"granted\", \"time\": \"2026-10-01T10:00:00Z\",",
			"\t\t \"evidence\": {\"action\": \"clicked \\ud83d\\udce8\", \"where\": null}}",
			"\t]}",
			"}",
		),
		want: map[string][]Consent{"u-1": {{Purpose: "marketing", Status: StatusGranted, Time: ts("2026-10-01T10:00:00Z"), Evidence: Evidence{Action: "clicked 📨"}}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFile("c."+tt.format, tt.format, []byte(tt.data))
			if err != nil {
				t.Fatalf("parseFile: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseFile =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseFileBad(t *testing.T) {
	tests := []struct {
		name, format, data string
		want               []string // substrings of the error, each file:line: message
	}{{
		name:   "unknown key in an event",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - purpose: marketing",
			"      status: withdrawn",
			"      purpse: marketing",
			"      time: 2026-10-01T10:00:00Z",
		),
		want: []string{`c.yaml:5: unknown key "purpse" in a consent event (known: purpose, status, time, evidence)`},
	}, {
		name:   "unknown key in evidence",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - purpose: marketing",
			"      status: granted",
			"      time: 2026-10-01T10:00:00Z",
			"      evidence:",
			"        action: ticked",
			"        ip: 10.0.0.1",
		),
		want: []string{`c.yaml:8: unknown key "ip" in evidence`},
	}, {
		name:   "misspelled top level",
		format: "yaml",
		data:   "subject: {}\n",
		want:   []string{`c.yaml:1: unknown key "subject" in the top level`, `c.yaml:1: missing key "subjects"`},
	}, {
		name:   "every problem at once",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - purpose: marketing",
			"      status: grantd",
			"      time: 2026-10-01T10:00:00Z",
			"    - status: withdrawn", // line 6: no purpose, no time
			"    - purpose: marketing",
			"      status: granted",
			"      time: 2026-10-01",          // line 9: a date, not RFC 3339
			"      evidence: {where: footer}", // line 10: grant without action
			"  u-2:",
			"    - purpose: analytics",
			"      status: [granted]", // line 13
			"      time: 2026-10-01T10:00:00Z",
		),
		want: []string{
			`c.yaml:4: status must be "granted" or "withdrawn", got "grantd"`,
			`c.yaml:6: purpose is required`,
			`c.yaml:6: time is required`,
			`c.yaml:9: time must be an RFC 3339 timestamp such as 2026-10-01T10:00:00Z, got "2026-10-01"`,
			`c.yaml:10: evidence.action is required for a grant (consent must be an explicit action)`,
			`c.yaml:13: status must be a string, got a list`,
		},
	}, {
		name:   "grant without evidence",
		format: "yaml",
		data:   lines("subjects:", "  u-1:", "    - {purpose: marketing, status: granted, time: 2026-10-01T10:00:00Z}"),
		want:   []string{"c.yaml:3: evidence.action is required for a grant"},
	}, {
		name:   "grant with blank action",
		format: "yaml",
		data:   lines("subjects:", "  u-1:", `    - {purpose: marketing, status: granted, time: 2026-10-01T10:00:00Z, evidence: {action: "  "}}`),
		want:   []string{"c.yaml:3: evidence.action is required for a grant"},
	}, {
		name:   "blank purpose and empty status",
		format: "yaml",
		data:   lines("subjects:", "  u-1:", `    - {purpose: " ", status: "", time: 2026-10-01T10:00:00Z}`),
		want:   []string{"c.yaml:3: purpose is required", "c.yaml:3: status is required"},
	}, {
		name:   "syntax error",
		format: "yaml",
		data:   lines("subjects:", "  u-1:", "    - purpose: [marketing", "      status: granted"),
		want:   []string{"c.yaml:"},
	}, {
		name:   "tab indentation",
		format: "yaml",
		data:   "subjects:\n\tu-1: []\n",
		want:   []string{"c.yaml:2: found character that cannot start any token"},
	}, {
		name:   "empty file",
		format: "yaml",
		data:   "",
		want:   []string{`c.yaml: file is empty; write "subjects: {}"`},
	}, {
		name:   "only comments",
		format: "yaml",
		data:   "# nothing\n",
		want:   []string{"c.yaml: file is empty"},
	}, {
		name:   "two documents",
		format: "yaml",
		data:   lines("subjects: {}", "---", "subjects: {}"),
		want:   []string{"c.yaml:2: more than one YAML document"},
	}, {
		name:   "duplicate subject",
		format: "yaml",
		data:   lines("subjects:", "  u-1: []", "  u-2: []", "  u-1: []"),
		want:   []string{`c.yaml:4: duplicate key "u-1" in subjects (first at line 2)`},
	}, {
		name:   "duplicate field",
		format: "yaml",
		data:   lines("subjects:", "  u-1:", "    - {purpose: a, status: withdrawn, time: 2026-10-01T10:00:00Z, status: granted}"),
		want:   []string{`c.yaml:3: duplicate key "status" in a consent event (first at line 3)`},
	}, {
		name:   "alias",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1: &events",
			"    - {purpose: a, status: withdrawn, time: 2026-10-01T10:00:00Z}",
			"  u-2: *events",
		),
		want: []string{"c.yaml:4: YAML aliases are not supported"},
	}, {
		name:   "merge key",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1:",
			"    - &e {purpose: a, status: withdrawn, time: 2026-10-01T10:00:00Z}",
			"    - <<: *e",
			"      purpose: b",
		),
		want: []string{`c.yaml:4: unknown key "<<"`},
	}, {
		name:   "wrong shapes",
		format: "yaml",
		data: lines(
			"subjects:",
			"  u-1: {purpose: a}",
			"  u-2:",
			"    - marketing",
			`  "": []`,
			"  ? [a]",
			"  : []",
		),
		want: []string{
			"c.yaml:2: the consents of a subject must be a list, got a mapping",
			"c.yaml:4: a consent event must be a mapping, got a scalar",
			"c.yaml:5: a subject id must not be empty",
			"c.yaml:6: keys of subjects must be strings, got a list",
		},
	}, {
		name:   "top level is a list",
		format: "yaml",
		data:   "- a\n",
		want:   []string{"c.yaml:1: the top level must be a mapping, got a list"},
	}, {
		name:   "subjects is a scalar",
		format: "yaml",
		data:   "subjects: everyone\n",
		want:   []string{"c.yaml:1: subjects must be a mapping, got a scalar"},
	}, {
		name:   "json unknown key",
		format: "json",
		data: lines(
			`{"subjects": {`,
			`  "u-1": [`,
			`    {"purpose": "marketing", "status": "withdrawn", "time": "2026-10-01T10:00:00Z",`,
			`     "sorce": "crm"}`,
			`  ]`,
			`}}`,
		),
		want: []string{`c.json:4: unknown key "sorce" in a consent event`},
	}, {
		name:   "json invalid status and number time",
		format: "json",
		data: lines(
			`{"subjects": {"u-1": [`,
			`  {"purpose": "marketing", "status": "yes", "time": 1760000000}`,
			`]}}`,
		),
		want: []string{`c.json:2: status must be "granted" or "withdrawn", got "yes"`, `c.json:2: time must be an RFC 3339 timestamp`},
	}, {
		name:   "json syntax error",
		format: "json",
		data:   lines(`{"subjects": {`, `  "u-1": [,]`, `}}`),
		want:   []string{"c.json:2: invalid character ','"},
	}, {
		name:   "json trailing comma",
		format: "json",
		data:   lines(`{"subjects": {`, `  "u-1": [],`, `}}`),
		want:   []string{"c.json:3: invalid character '}'"},
	}, {
		name:   "json truncated",
		format: "json",
		data:   lines(`{"subjects": {`, `  "u-1": [`),
		want:   []string{"c.json:3: unexpected end of JSON"},
	}, {
		name:   "json trailing data",
		format: "json",
		data:   lines(`{"subjects": {}}`, `{"subjects": {}}`),
		want:   []string{"c.json:2: unexpected data after the JSON value"},
	}, {
		name:   "json empty",
		format: "json",
		data:   " \n",
		want:   []string{"c.json: file is empty"},
	}, {
		name:   "json duplicate key",
		format: "json",
		data:   lines(`{"subjects": {}, `, `"subjects": {}}`),
		want:   []string{`c.json:2: duplicate key "subjects" in the top level (first at line 1)`},
	}, {
		name:   "json too deep",
		format: "json",
		data:   strings.Repeat("[", 100) + strings.Repeat("]", 100),
		want:   []string{"c.json:1: JSON nested deeper than 32 levels"},
	}, {
		name:   "json top level not an object",
		format: "json",
		data:   `"subjects"`,
		want:   []string{"c.json:1: the top level must be a mapping, got a scalar"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFile("c."+tt.format, tt.format, []byte(tt.data))
			if err == nil {
				t.Fatal("parseFile succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseFileProblemsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("subjects:\n  u-1:\n")
	for range 200 {
		b.WriteString("    - {purpose: a, status: maybe, time: 2026-10-01T10:00:00Z}\n")
	}
	_, err := parseFile("c.yaml", "yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("want an error")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != maxProblems+1 {
		t.Errorf("error has %d lines, want %d", n, maxProblems+1)
	}
	if !strings.Contains(err.Error(), "c.yaml: and 150 more problems") {
		t.Errorf("error does not count the rest:\n%v", err)
	}
}

func TestParseFileNoPersonalDataInErrors(t *testing.T) {
	// Subject ids and evidence must not reach the error (it is logged at error level).
	data := lines(
		"subjects:",
		"  u-secret-id:",
		`    - {purpose: marketing, status: granted, time: 2026-10-01T10:00:00Z, evidence: {where: "jane@example.com's inbox"}}`,
	)
	_, err := parseFile("c.yaml", "yaml", []byte(data))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, secret := range []string{"u-secret-id", "jane@example.com"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error contains %q: %v", secret, err)
		}
	}
}

func TestFileFormat(t *testing.T) {
	for name, want := range map[string]string{"a.yaml": "yaml", "a.YML": "yaml", "dir.d/a.json": "json", "a.toml": "", "yaml": ""} {
		got, err := fileFormat(name)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("fileFormat(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}
