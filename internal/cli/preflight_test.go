package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/idptest"
	"github.com/pare-dev/pare/internal/ledger"
)

// TestCheckConfigAgreesWithServe: every config `serve` refuses before it
// listens, `proxy check --config` refuses too, with the same reason; and a
// config check accepts, serve starts with.
func TestCheckConfigAgreesWithServe(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("hmac.key", "0123456789abcdef0123\n")
	short := write("short.key", "0123456789\n")
	consents := write("consents.yaml", "subjects: {}\n")
	badConsents := write("bad-consents.yaml", "subjects: [\n")
	notPEM := write("ca.pem", "not a certificate\n")
	ledgerDir := filepath.Join(dir, "ledger")
	if err := os.Mkdir(ledgerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	notDir := write("file", "")
	// A signing key on a read-only mount, as a Kubernetes Secret gives it:
	// read, never written.
	skey, _, err := ledger.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	roDir := filepath.Join(dir, "secret")
	if err := os.Mkdir(roDir, 0o700); err != nil {
		t.Fatal(err)
	}
	roKey := filepath.Join(roDir, "ledger.key")
	if err := os.WriteFile(roKey, []byte(skey+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(roDir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(roDir, 0o700) })
	idp, err := idptest.New("k1", "https://idp.example", "pare-legal")
	if err != nil {
		t.Fatal(err)
	}
	jwks := write("jwks.json", string(idptest.JWKS(idp)))
	noKeys := write("nokeys.json", `{"keys": []}`)
	legal := "legal_jwt_audience: pare-legal\nlegal_jwt_issuer: https://idp.example\n"
	// Each case's keys replace or join these, which alone are valid.
	base := map[string]string{"listen": "127.0.0.1:0", "admin": "127.0.0.1:0", "ledger": filepath.Join(ledgerDir, "l.jsonl"),
		"state_dir": filepath.Join(dir, "state")}

	tests := []struct {
		name, yaml string
		err        string // "" = valid
	}{
		{"valid", "", ""},
		{"valid with every file", "hmac_key_file: " + key + "\nconsents: " + consents + "\nmetrics_listen: localhost:0\n", ""},
		{"listen port not a number", "listen: 127.0.0.1:http\n", "listen:"},
		{"listen without port", "listen: 127.0.0.1\n", "listen:"},
		{"listen port out of range", "listen: 127.0.0.1:70000\n", "listen:"},
		{"admin host does not resolve", "admin: no-such-host.invalid:0\n", "admin:"},
		{"metrics listener on the admin port", "admin: 127.0.0.1:9\nmetrics_listen: 127.0.0.1:9\n", "metrics_listen must not share"},
		{"unknown log level", "log_level: verbose\n", `log_level "verbose"`},
		{"hmac key file missing", "hmac_key_file: " + filepath.Join(dir, "nope.key") + "\n", "hmac_key_file"},
		{"hmac key too short", "hmac_key_file: " + short + "\n", "at least 16"},
		{"consents file missing", "consents: " + filepath.Join(dir, "nope.yaml") + "\n", "consents:"},
		{"consents file malformed", "consents: " + badConsents + "\n", "consents:"},
		{"consent url without host", "consent_url: http:///x\n", "consent_url:"},
		{"ledger directory missing", "ledger: " + filepath.Join(dir, "nope", "l.jsonl") + "\n", "ledger directory"},
		{"ledger directory is a file", "ledger: " + filepath.Join(notDir, "l.jsonl") + "\n", "ledger directory"},
		{"ledger is a directory", "ledger: " + ledgerDir + "\n", "is a directory"},
		{"policies directory missing", "policies: " + filepath.Join(dir, "nope") + "\n", "policies:"},
		{"upstream CA not PEM", "upstream_ca: [" + notPEM + "]\n", "upstream_ca"},
		{"bad resolve", "resolve: [api.stripe.com]\n", "resolve"},
		{"zero timeout", "read_header_timeout: 0s\n", "read_header_timeout"},
		{"state dir under a file", "state_dir: " + filepath.Join(notDir, "state") + "\n", "state_dir"},
		{"state dir parent missing", "state_dir: " + filepath.Join(dir, "nope", "state") + "\n", "state_dir"},
		{"witness under a missing directory", "ledger_checkpoint: " + filepath.Join(dir, "nope", "cp") + "\n", "ledger_checkpoint"},
		{"ledger key not a key", "ledger_key: " + notPEM + "\n", "ledger_key"},
		{"ledger key read-only", "ledger_key: " + roKey + "\n", ""},
		{"ledger key to create under a missing directory", "ledger_key: " + filepath.Join(dir, "nope", "ledger.key") + "\n", "ledger_key"},
		{"supplied CA not PEM", "ca_cert: " + notPEM + "\nca_key: " + short + "\n", "ca_cert"},
		{"transparent port not a number", "transparent: 127.0.0.1:tls\n", "transparent:"},
		{"consents dsn unparsable", "consents_dsn: \"postgres://a b@:x\"\n", "consents_dsn"},
		{"legal jwks file", "legal_jwks: " + jwks + "\n" + legal, ""},
		{"legal jwks url (down)", "legal_jwks: https://127.0.0.1:1/jwks.json\n" + legal, ""},
		{"legal jwks file missing", "legal_jwks: " + filepath.Join(dir, "nope.json") + "\n" + legal, "legal_jwks"},
		{"legal jwks without keys", "legal_jwks: " + noKeys + "\n" + legal, "no keys"},
		{"legal jwks without audience", "legal_jwks: " + jwks + "\nlegal_jwt_issuer: https://idp.example\n", "audience is required"},
		{"legal jwks over http", "legal_jwks: http://idp.example/jwks\n" + legal, "loopback"},
		{"legal audience without jwks", "legal_jwt_audience: pare-legal\n", "legal_jwks is not"},
		{"legal max age below refresh", "legal_jwks: " + jwks + "\n" + legal + "legal_jwks_refresh: 2h\n", "shorter than the refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "config.yaml")
			keys := maps.Clone(base)
			for _, line := range strings.Split(strings.TrimSpace(tt.yaml), "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok {
					keys[k] = v
				}
			}
			var yaml strings.Builder
			for _, k := range slices.Sorted(maps.Keys(keys)) {
				yaml.WriteString(k + ": " + keys[k] + "\n")
			}
			if err := os.WriteFile(f, []byte(yaml.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := Main([]string{"check", "--config", f}, nil, &stdout, &stderr)
			if tt.err == "" {
				if code != exitOK {
					t.Fatalf("check: exit %d: %s", code, stderr.String())
				}
			} else if code != exitFail || !strings.Contains(stderr.String(), tt.err) {
				t.Fatalf("check: exit %d, %q; want exit 1 naming %q", code, stderr.String(), tt.err)
			}

			// serve, on the same file: it must fail with the same reason
			// before listening, or start.
			c := defaultConfig()
			if err := loadConfigFile(f, &c); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := false
			err := serve(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string, string, string) {
				started = true
				cancel()
			})
			switch {
			case tt.err == "" && (err != nil || !started):
				t.Fatalf("serve did not start: %v", err)
			case tt.err != "" && started:
				t.Fatal("serve listened on a config check refuses")
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("serve: %v, want an error naming %q", err, tt.err)
			}
		})
	}
}

// TestCheckConfigReportsEverything: one run names every problem.
func TestCheckConfigReportsEverything(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "config.yaml")
	yaml := "listen: 127.0.0.1:x\nlog_level: loud\nhmac_key_file: " + filepath.Join(dir, "nope") +
		"\nledger: " + filepath.Join(dir, "nope", "l.jsonl") + "\n"
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"check", "--config", f}, nil, &stdout, &stderr); code != exitFail {
		t.Fatalf("exit %d", code)
	}
	// validate's problems come first; the files are only looked at once
	// the values are sound, so fix-and-rerun converges.
	for _, want := range []string{"listen:", "log_level"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("%q not reported in:\n%s", want, stderr.String())
		}
	}
}
