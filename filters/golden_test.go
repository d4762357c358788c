package filters

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenCase is one testdata/golden/<name>.case.json: an input from
// testdata/ and a mask; the expected result is <name>.golden beside it.
type goldenCase struct {
	Input      string            `json:"input"`
	Kind       string            `json:"kind"` // json or form
	Fields     []string          `json:"fields"`
	Transforms map[string]string `json:"transforms"`
	Cards      string            `json:"cards"`
	HMACKey    string            `json:"hmac_key"`
}

func loadCase(t *testing.T, file string) (goldenCase, *Mask, *Options, []byte) {
	t.Helper()
	var c goldenCase
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	m, err := Compile(c.Fields, c.Transforms)
	if err != nil {
		t.Fatal(err)
	}
	cards, err := ParseCardGuard(c.Cards)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(filepath.Join("testdata", c.Input))
	if err != nil {
		t.Fatal(err)
	}
	return c, m, &Options{Cards: cards, HMACKey: []byte(c.HMACKey)}, in
}

func run(c goldenCase, m *Mask, opt *Options, in []byte) ([]byte, *Report, error) {
	if c.Kind == "form" {
		return m.Form(nil, in, opt)
	}
	return m.JSON(nil, in, opt)
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.case.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".case.json")
		t.Run(name, func(t *testing.T) {
			c, m, opt, in := loadCase(t, file)
			out, rep, err := run(c, m, opt, in)
			var got bytes.Buffer
			if err != nil {
				got.WriteString("error: " + err.Error() + "\n")
			} else {
				if c.Kind == "json" {
					// Indented so that reviews of the golden file are readable.
					if err := json.Indent(&got, out, "", "  "); err != nil {
						t.Fatalf("invalid output: %v", err)
					}
				} else {
					got.Write(out)
				}
				got.WriteString("\n-- report --\n")
				rj, _ := json.MarshalIndent(rep, "", "  ")
				got.Write(rj)
				got.WriteString("\n")
			}
			golden := strings.TrimSuffix(file, ".case.json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", golden, got.Bytes(), want)
			}
		})
	}
}

// TestFormMatchesJSON: the same checkout as JSON and as a form, under the
// same mask, must disclose the same paths.
func TestFormMatchesJSON(t *testing.T) {
	cj, mj, oj, inj := loadCase(t, "testdata/golden/stripe-checkout-json.case.json")
	cf, mf, of, inf := loadCase(t, "testdata/golden/stripe-checkout-form.case.json")
	_, rj, err := run(cj, mj, oj, inj)
	if err != nil {
		t.Fatal(err)
	}
	_, rf, err := run(cf, mf, of, inf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rj, rf) {
		t.Errorf("reports differ:\njson: %+v\nform: %+v", rj, rf)
	}
}
