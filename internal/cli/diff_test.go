package cli

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pare-dev/pare/policies"
)

// policyDir writes the bundled policies, with only the contracts named
// (a smaller input space: the tests sample it) and edits applied, into a
// temporary directory.
func policyDir(t *testing.T, contracts []string, edits map[string][2]string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasPrefix(p, "contracts/") {
			keep := false
			for _, c := range contracts {
				keep = keep || p == "contracts/"+c+".yaml"
			}
			if !keep {
				return nil
			}
		}
		b, err := fs.ReadFile(policies.FS, p)
		if err != nil {
			return err
		}
		if e, ok := edits[p]; ok {
			if !strings.Contains(string(b), e[0]) {
				t.Fatalf("edit of %s: %q not found", p, e[0])
			}
			b = []byte(strings.Replace(string(b), e[0], e[1], 1))
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// The phone number of the requester added to Zendesk's tickets, with its
// label and category (validation requires both).
var zendeskPhone = map[string][2]string{"contracts/zendesk.yaml": {
	"        - ticket/requester/email\n",
	"        - ticket/requester/email\n        - ticket/requester/phone\n",
}}

func withPhoneDeclared(t *testing.T, dir string) {
	t.Helper()
	f := filepath.Join(dir, "contracts", "zendesk.yaml")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "    contact: [ticket/requester/email]", "    contact: [ticket/requester/email, ticket/requester/phone]", 1)
	s = strings.Replace(s, "    ticket/requester/email: email address\n", "    ticket/requester/email: email address\n    ticket/requester/phone: phone number\n", 1)
	if s == string(b) {
		t.Fatal("zendesk.yaml: categories not found")
	}
	if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDiffExitCodes(t *testing.T) {
	old := policyDir(t, []string{"zendesk"}, nil)
	same := policyDir(t, []string{"zendesk"}, nil)
	wider := policyDir(t, []string{"zendesk"}, zendeskPhone)
	withPhoneDeclared(t, wider)
	undeclared := policyDir(t, []string{"zendesk"}, zendeskPhone) // phone sent, not said what it is: invalid
	keyless := filepath.Join(t.TempDir(), "bundle.tar.gz")
	os.WriteFile(keyless, []byte("not even a bundle"), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string // in stdout
		err  []string // in stderr
	}{
		{"identical", []string{old, same}, exitOK, []string{"## Pare policy diff: no change", "same files"}, []string{"same files"}},
		{"widens", []string{"--sample", "1500", old, wider}, exitWidens,
			[]string{"widens disclosure", "now sends `ticket/requester/phone` (phone number; contact details)", "Zendesk — `POST` `/api/v2/tickets{,.json}` — for `support`"},
			[]string{"1500 of", "widens disclosure"}},
		{"narrows", []string{wider, old, "--sample", "1500"}, exitOK,
			[]string{"narrows disclosure", "no longer sends `ticket/requester/phone` (phone number; contact details)"}, nil},
		{"no args", nil, exitUsage, nil, []string{"Usage: proxy diff"}},
		{"one arg", []string{old}, exitUsage, nil, []string{"Usage: proxy diff"}},
		{"three args", []string{old, old, old}, exitUsage, nil, []string{"Usage: proxy diff"}},
		{"bad format", []string{"--format", "xml", old, same}, exitUsage, nil, []string{"--format"}},
		{"negative sample", []string{"--sample", "-1", old, same}, exitUsage, nil, []string{"--sample"}},
		{"timeout", []string{"--timeout", "1ms", old, wider}, exitUsage, nil, []string{"did not finish within --timeout 1ms"}},
		{"missing", []string{old, filepath.Join(old, "nope")}, exitUsage, nil, []string{"nope"}},
		{"invalid contract", []string{old, undeclared}, exitUsage, nil, []string{"zendesk.yaml:", "ticket/requester/phone"}},
		{"bundle without key", []string{keyless, old}, exitUsage, nil, []string{"--bundle-key"}},
		{"bad git revision", []string{"git:--output=x", old}, exitUsage, nil, []string{"starts with '-'"}},
		{"help", []string{"-h"}, exitOK, nil, []string{"Exit status: 0 no change"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, append([]string{"diff"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.err {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}

	// JSON for tools: the same verdict, the same exit code.
	out, errOut, code := run(t, "diff", "--format", "json", "--sample", "1500", old, wider)
	var r struct {
		Widens bool `json:"widens"`
		Groups []struct {
			Vendor  string `json:"vendor"`
			Changes []struct {
				Kind, Item string
			} `json:"changes"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != exitWidens || !r.Widens || len(r.Groups) == 0 || r.Groups[0].Vendor != "zendesk" {
		t.Errorf("json: exit %d, %v, %+v\n%s", code, err, r, errOut)
	}
}
