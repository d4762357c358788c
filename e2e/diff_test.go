package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitIn runs git in dir as a policy author would, with no user or system
// config of this machine.
func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Policy Author", "GIT_AUTHOR_EMAIL=author@webinar-co.example",
		"GIT_COMMITTER_NAME=Policy Author", "GIT_COMMITTER_EMAIL=author@webinar-co.example")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestDiff runs `proxy diff` through the binary on a policy pull request in
// a real git repository: Zendesk's contract gains the requester's phone.
// Between the two commits the diff names the field, its words and its data
// category and exits 3 (a privacy reviewer must approve); the other way
// round it narrows and exits 0; a signed bundle built from the new commit is
// the same policy; usage and source errors exit 2.
func TestDiff(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (.ci/run installs it)")
	}
	repo := t.TempDir()
	pol := filepath.Join(repo, "policies")
	if err := os.Rename(policiesWithoutTests(t), pol); err != nil {
		t.Fatal(err)
	}
	// Zendesk alone: a smaller input space, which the test samples.
	others, _ := filepath.Glob(filepath.Join(pol, "contracts", "*.yaml"))
	for _, f := range others {
		if filepath.Base(f) != "zendesk.yaml" {
			os.Remove(f)
		}
	}
	gitIn(t, repo, "init", "-q", "-b", "main")
	gitIn(t, repo, "add", ".")
	gitIn(t, repo, "commit", "-q", "-m", "policies")
	zendesk := filepath.Join(pol, "contracts", "zendesk.yaml")
	editFile(t, zendesk, "        - ticket/requester/email\n", "        - ticket/requester/email\n        - ticket/requester/phone\n")
	editFile(t, zendesk, "    ticket/requester/email: email address\n", "    ticket/requester/email: email address\n    ticket/requester/phone: phone number\n")
	editFile(t, zendesk, "    contact: [ticket/requester/email]", "    contact: [ticket/requester/email, ticket/requester/phone]")
	gitIn(t, repo, "commit", "-q", "-am", "support wants to call back")

	sample := []string{"--repo", repo, "--sample", "1500"}
	out, errOut, code := runCLI(t, append([]string{"diff"}, append(sample, "git:main~1", "git:main")...)...)
	if code != 3 {
		t.Fatalf("diff of a widening commit: exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"## Pare policy diff: widens disclosure",
		"#### Zendesk — `POST` `/api/v2/tickets{,.json}` — for `support`",
		"- now sends `ticket/requester/phone` (phone number; contact details)",
		"from any service",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = runCLI(t, append([]string{"diff", "--format", "json"}, append(sample, "git:main", "git:main~1")...)...)
	var r struct {
		Widens bool `json:"widens"`
		Old    struct{ Commit string }
		Groups []struct {
			Effect  string
			Changes []struct{ Kind, Item string }
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Widens || len(r.Groups) == 0 || r.Groups[0].Effect != "narrows" ||
		r.Groups[0].Changes[0].Item != "ticket/requester/phone" || len(r.Old.Commit) != 40 {
		t.Errorf("diff of the reverse: exit %d, %v, %+v\n%s", code, err, r, errOut)
	}

	// A signed bundle of the new commit is the same policy as the commit.
	priv, pub := writeKeyPair(t, t.TempDir(), "ci")
	bundleFile := filepath.Join(t.TempDir(), "bundle.tar.gz")
	buildBundle(t, pol, priv, bundleFile)
	out, errOut, code = runCLI(t, "diff", "--repo", repo, "--bundle-key", pub, bundleFile, "git:main")
	if code != 0 || !strings.Contains(out, "no change") {
		t.Errorf("bundle of main against main: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", bundleFile, pol}, "--bundle-key"},
		{[]string{"diff", "--repo", repo, "git:no-such-branch", "git:main"}, "not a commit"},
		{[]string{"diff", pol}, "Usage: proxy diff"},
	} {
		if _, errOut, code := runCLI(t, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("proxy %s: exit %d, want 2 and %q:\n%s", strings.Join(tc.args, " "), code, tc.want, errOut)
		}
	}
}
