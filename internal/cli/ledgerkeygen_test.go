package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLedgerKeygen: the key made for a Secret is the key serve signs with
// (pubkey prints what keygen printed), private to its owner, and never
// replaced by a second keygen — that would orphan every checkpoint it
// signed.
func TestLedgerKeygen(t *testing.T) {
	key := filepath.Join(t.TempDir(), "ledger.key")
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(append([]string{"ledger"}, args...), nil, &stdout, &stderr)
		return code, strings.TrimSpace(stdout.String()), stderr.String()
	}
	code, vkey, errOut := run("keygen", "--ledger-key", key)
	if code != exitOK || !strings.HasPrefix(vkey, "pare-ledger+") {
		t.Fatalf("keygen: exit %d, public key %q: %s", code, vkey, errOut)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(key)
	if code, pub, errOut := run("pubkey", "--ledger-key", key); code != exitOK || pub != vkey {
		t.Errorf("pubkey: exit %d, %q; keygen printed %q: %s", code, pub, vkey, errOut)
	}

	code, out, errOut := run("keygen", "--ledger-key", key)
	if code != exitUsage || out != "" || !strings.Contains(errOut, "refusing to replace") {
		t.Errorf("second keygen: exit %d, stdout %q, stderr %q: want a refusal", code, out, errOut)
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("a second keygen replaced the key")
	}
	if code, _, errOut := run("keygen"); code != exitUsage || !strings.Contains(errOut, "--ledger-key") {
		t.Errorf("keygen without --ledger-key: exit %d: %s", code, errOut)
	}
}
