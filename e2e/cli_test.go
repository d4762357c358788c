package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExplain runs `proxy explain` through the binary: stdout is exactly the
// body the vendor would receive (the golden, and byte for byte what a
// running proxy sends for the same request), the explanation goes to
// stderr, and the exit code says allowed (0), refused (3) or usage (2).
func TestExplain(t *testing.T) {
	t.Parallel()
	key, _ := filepath.Abs(hmacKeyFile)
	form, _ := filepath.Abs(testdata("payloads/checkout.form"))
	args := []string{"explain", "--url", "http://api.stripe.com/v1/payment_intents", "--purpose", "payment",
		"--service", "billing", "--hmac-key-file", key, "-H", "Content-Type: application/x-www-form-urlencoded",
		"--data", "@" + form}

	t.Run("allowed: stdout is what Stripe would receive", func(t *testing.T) {
		t.Parallel()
		out, errOut, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("explain exit %d, want 0:\n%s", code, errOut)
		}
		golden(t, "explain-stripe-checkout.form.golden", []byte(out))
		if !strings.Contains(errOut, "ALLOWED") || !strings.Contains(errOut, "removed") {
			t.Errorf("explain's stderr does not explain:\n%s", errOut)
		}
		// The running proxy sends the very same bytes.
		p := startProxy(t, proxyConfig{})
		wantOK(t, p.do(t, paymentRequest(t).withBody(readFile(t, form))))
		if got := onlyReceived(t, p.Stub).Body; !bytes.Equal(got, []byte(out)) {
			t.Errorf("explain printed\n%s\nbut the proxy sent\n%s", out, got)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		t.Parallel()
		ticket, _ := filepath.Abs(testdata("payloads/ticket.json"))
		broken := copyPolicies(t)
		if err := os.WriteFile(filepath.Join(broken, "egress.rego"), []byte("package egress\n\ndecision := {\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			args []string
			code int
			want string // in stderr
		}{
			{"allowed ticket", []string{"explain", "--url", "http://webinarco.zendesk.com/api/v2/tickets.json",
				"--purpose", "support", "--data", "@" + ticket}, 0, "ALLOWED"},
			{"unknown vendor", []string{"explain", "--url", "http://api.tracking-pixels.example/collect",
				"--purpose", "analytics", "--data", "@" + ticket}, 3, "unknown_vendor"},
			{"route not allowed", []string{"explain", "--method", "DELETE", "--url", "http://api.stripe.com/v1/customers/cus_1",
				"--purpose", "payment"}, 3, "route_not_allowed"},
			{"purpose missing", []string{"explain", "--url", "http://webinarco.zendesk.com/api/v2/tickets.json",
				"--data", "@" + ticket}, 3, "purpose_required"},
			{"card data from the wrong service", append(append([]string(nil), args...), "--service", "support"), 3, "source_not_allowed"},
			{"no --url", []string{"explain", "--purpose", "support"}, 2, "--url"},
			{"unknown flag", []string{"explain", "--frobnicate"}, 2, ""},
			{"missing data file", []string{"explain", "--url", "http://webinarco.zendesk.com/api/v2/tickets.json",
				"--data", "@/nonexistent/ticket.json"}, 2, ""},
			{"broken policies", []string{"explain", "--policies", broken, "--url", "http://webinarco.zendesk.com/api/v2/tickets.json",
				"--purpose", "support", "--data", "@" + ticket}, 2, "egress.rego"},
		}
		for _, tc := range cases {
			out, errOut, code := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("%s: exit %d, want %d\nstdout %s\nstderr %s", tc.name, code, tc.code, out, errOut)
				continue
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.name, tc.want, errOut)
			}
			if tc.code != 0 && out != "" {
				t.Errorf("%s: a refusal printed a body on stdout: %q", tc.name, out)
			}
		}
	})
}

// TestCheck runs `proxy check`: the bundled policies pass (exit 0); a copy
// with a Rego syntax error, or a contract with an unknown key, fails (exit
// 1) naming file:line.
func TestCheck(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCLI(t, "check", "--policies", filepath.Join(repoRoot, "policies"))
	if code != 0 {
		t.Fatalf("check of the bundled policies: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "0 failed") {
		t.Errorf("check printed %q", out)
	}

	t.Run("rego syntax error", func(t *testing.T) {
		t.Parallel()
		dir := copyPolicies(t)
		f := filepath.Join(dir, "legal.rego")
		b := readFile(t, f)
		line := bytes.Count(b, []byte("\n")) + 2
		if err := os.WriteFile(f, append(b, []byte("\nlegal_request if {\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runCLI(t, "check", "--policies", dir)
		if code != 1 {
			t.Fatalf("check of a broken policy: exit %d, want 1\n%s", code, errOut)
		}
		if !regexp.MustCompile(`legal\.rego:\d+`).MatchString(errOut) {
			t.Errorf("check does not name legal.rego:LINE (the error is near line %d):\n%s", line, errOut)
		}
	})

	t.Run("contract with an unknown key", func(t *testing.T) {
		t.Parallel()
		dir := copyPolicies(t)
		f := filepath.Join(dir, "contracts", "zendesk.yaml")
		b := string(readFile(t, f))
		nb := strings.Replace(b, "  role: support\n", "  role: support\n  feilds: [ticket/subject]\n", 1)
		if nb == b {
			t.Fatal("zendesk.yaml has no 'role: support' line; update this test")
		}
		line := strings.Count(nb[:strings.Index(nb, "  feilds:")], "\n") + 1
		if err := os.WriteFile(f, []byte(nb), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runCLI(t, "check", "--policies", dir)
		if code != 1 {
			t.Fatalf("check of a contract with an unknown key: exit %d, want 1\n%s", code, errOut)
		}
		if !regexp.MustCompile(`zendesk\.yaml:\d+`).MatchString(errOut) || !strings.Contains(errOut, "feilds") {
			t.Errorf("check does not name zendesk.yaml:%d and the key:\n%s", line, errOut)
		}
	})

	t.Run("failing rego test", func(t *testing.T) {
		t.Parallel()
		dir := copyPolicies(t)
		f := filepath.Join(dir, "zz_e2e_test.rego")
		if err := os.WriteFile(f, []byte("package egress_e2e_test\n\ntest_always_fails if {\n\tfalse\n}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runCLI(t, "check", "--policies", dir)
		if code != 1 || !strings.Contains(errOut, "test_always_fails") {
			t.Errorf("check with a failing Rego test: exit %d:\n%s", code, errOut)
		}
	})
}

// TestDemo runs `proxy demo`: it exits 0 and shows each case — the four
// allowed ones forwarded over TLS, the others refused with their codes.
func TestDemo(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCLI(t, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d:\n%s%s", code, out, errOut)
	}
	sections := regexp.MustCompile(`(?m)^\d+\. `).FindAllStringIndex(out, -1)
	if len(sections) < 8 {
		t.Fatalf("demo shows %d cases, want 8:\n%s", len(sections), out)
	}
	want := []struct{ mention, outcome string }{
		{"Stripe", "✓ 200"},
		{"Zendesk", "✓ 200"},
		{"card", "✓ 200"},
		{"marketing", "✓ 200"},
		{"consent", "consent_required"},
		{"Global Privacy Control", "gpc_opt_out"},
		{"no contract", "unknown_vendor"},
		{"malformed", "malformed_body"},
	}
	for i, w := range want {
		end := len(out)
		if i+1 < len(sections) {
			end = sections[i+1][0]
		}
		sec := out[sections[i][0]:end]
		title, _, _ := strings.Cut(sec, "\n")
		if !strings.Contains(strings.ToLower(sec), strings.ToLower(w.mention)) || !strings.Contains(sec, w.outcome) {
			t.Errorf("demo case %d (%s): want it to mention %q and show %q:\n%s", i+1, title, w.mention, w.outcome, sec)
		}
	}
}
