package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestEnvoyBootstrapCommand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // a line the output must hold
		stderr string
	}{
		{"ok", []string{"--node", "checkout-1", "--xds", "pare-xds:15010"}, exitOK, "id: checkout-1", ""},
		{"node required", nil, exitUsage, "", "node"},
		{"bad xds", []string{"--node", "n", "--xds", "nope"}, exitUsage, "", "xds"},
		{"stray argument", []string{"--node", "n", "extra"}, exitUsage, "", "unexpected argument"},
		{"help", []string{"-h"}, exitOK, "", "-node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(append([]string{"envoy-bootstrap"}, tc.args...), nil, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q in stdout, %q in stderr",
					code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// TestXDSCommandBadFlags: a flag Envoy would reject fails at start, with
// every problem named, before anything listens.
func TestXDSCommandBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--egress", "localhost:15001", "--ca-file", "ca.pem"}, []string{"not an IP address", "absolute path"}},
		{[]string{"--resolve", "api.stripe.com"}, []string{"--resolve"}},
		{[]string{"--max-body", "5GiB"}, []string{"max body"}},
		{[]string{"stray"}, []string{"unexpected argument"}},
	} {
		var errb bytes.Buffer
		if code := Main(append([]string{"xds", "--listen", "127.0.0.1:0"}, tc.args...), nil, &bytes.Buffer{}, &errb); code != exitUsage {
			t.Errorf("xds %v: exit %d, want %d; stderr %s", tc.args, code, exitUsage, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("xds %v: stderr %q lacks %q", tc.args, errb.String(), w)
			}
		}
	}
}
