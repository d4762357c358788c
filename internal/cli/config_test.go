package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"10MiB", 10 << 20, false}, {"512KiB", 512 << 10, false}, {"1GiB", 1 << 30, false},
		{"1000", 1000, false}, {"2 MB", 2e6, false}, {"-1", 0, true}, {"ten", 0, true}, {"1.5MiB", 0, true},
	}
	for _, tt := range tests {
		got, err := parseByteSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestConfigFile(t *testing.T) {
	tests := []struct {
		name, yaml string
		err        string // substring of the load or validate error; "" = valid
		check      func(t *testing.T, c Config)
	}{
		{name: "full", yaml: "listen: 127.0.0.1:9001\nmax_body: 1MiB\nconsent_ttl: 5s\nresolve: [a.example:443:127.0.0.1:8443]\n",
			check: func(t *testing.T, c Config) {
				if c.Listen != "127.0.0.1:9001" || c.MaxBody != 1<<20 || c.ConsentTTL != 5*time.Second || len(c.Resolve) != 1 {
					t.Errorf("config = %+v", c)
				}
				if c.Admin != "127.0.0.1:15000" {
					t.Errorf("admin %q: defaults must survive a file that does not set them", c.Admin)
				}
			}},
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.GCPercent != defaultGCPercent {
				t.Errorf("gc_percent = %d, want the default %d", c.GCPercent, defaultGCPercent)
			}
		}},
		{name: "unknown key", yaml: "listne: x\n", err: "field listne not found"},
		{name: "bad size", yaml: "max_body: lots\n", err: "line 1"},
		{name: "admin on the egress port", yaml: "listen: 127.0.0.1:9\nadmin: 127.0.0.1:9\n", err: "admin must not share"},
		{name: "no ledger", yaml: "ledger: \"\"\n", err: "every disclosure must be recorded"},
		{name: "two consent sources", yaml: "consents: c.yaml\nconsent_url: http://c\n", err: "exclusive"},
		{name: "consent url and dsn", yaml: "consent_url: http://c\nconsents_dsn: postgres://c/db\n", err: "exclusive"},
		{name: "bad log format", yaml: "log_format: xml\n", err: "log_format"},
		{name: "bundle", yaml: "bundle: https://b.example/pare.tar.gz\nbundle_key: [k1.pem, k2.pem]\nbundle_long_poll: 60s\n", check: func(t *testing.T, c Config) {
			if c.Bundle == "" || len(c.BundleKeys) != 2 || c.BundleLongPoll != time.Minute || c.BundleDir != "pare-bundle" {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "ledger sink", yaml: "ledger_sink: postgres://pare@db.example/ledger\nledger_retain: 10m\n", check: func(t *testing.T, c Config) {
			if c.LedgerSink == "" || c.LedgerRetain != 10*time.Minute {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "ledger sink not a DSN", yaml: "ledger_sink: \"postgres://pare:s3cret@db:notaport/x\"\n", err: "ledger_sink: not a PostgreSQL connection string"},
		{name: "unsigned bundle", yaml: "bundle: https://b.example/pare.tar.gz\n", err: "bundle needs bundle_key"},
		{name: "bundle and policies", yaml: "bundle: https://b/x\nbundle_key: [k]\npolicies: p\n", err: "exclusive"},
		{name: "bundle without a dir", yaml: "bundle: https://b/x\nbundle_key: [k]\nbundle_dir: \"\"\n", err: "bundle_dir"},
		{name: "bundle key without bundle", yaml: "bundle_key: [k]\n", err: "bundle is not"},
		{name: "negative gc_percent", yaml: "gc_percent: -1\n", err: "gc_percent"},
		{name: "company", yaml: "company_name: Webinar Co\nprivacy_contact: privacy@webinar-co.example\n", check: func(t *testing.T, c Config) {
			if c.CompanyName != "Webinar Co" || c.PrivacyContact != "privacy@webinar-co.example" {
				t.Errorf("company %q contact %q", c.CompanyName, c.PrivacyContact)
			}
		}},
		{name: "company on two lines", yaml: "company_name: \"Webinar\\nCo\"\n", err: "one line each"},
		{name: "ledger checkpoints", yaml: "state_dir: /var/lib/pare/state\nledger_checkpoint: /witness/cp\ncheckpoint_every: 100\ncheckpoint_interval: 2s\n",
			check: func(t *testing.T, c Config) {
				if c.ledgerKeyPath() != "/var/lib/pare/state/ledger.key" || c.LedgerCheckpoint != "/witness/cp" ||
					c.CheckpointEvery != 100 || c.CheckpointInterval != 2*time.Second {
					t.Errorf("config = %+v", c)
				}
			}},
		{name: "no state dir and no key", yaml: "state_dir: \"\"\n", err: "signing key"},
		{name: "checkpoint_every 0", yaml: "checkpoint_every: 0\n", err: "checkpoint_every"},
		{name: "checkpoint_interval 0", yaml: "checkpoint_interval: 0s\n", err: "checkpoint_interval"},
		{name: "witness is the ledger", yaml: "ledger: l.jsonl\nledger_checkpoint: l.jsonl\n", err: "must not be the ledger"},
		{name: "gc_percent", yaml: "gc_percent: 150\n", check: func(t *testing.T, c Config) {
			if c.GCPercent != 150 {
				t.Errorf("gc_percent = %d", c.GCPercent)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "config.yaml")
			os.WriteFile(f, []byte(tt.yaml), 0o600)
			c := defaultConfig()
			err := loadConfigFile(f, &c)
			if err == nil {
				err = c.validate()
			}
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// FuzzConfigFile: whatever the file holds, loading it returns a config or
// an error, never a panic.
func FuzzConfigFile(f *testing.F) {
	f.Add("listen: 127.0.0.1:1\nmax_body: 10MiB\n")
	f.Add("resolve: [a, b]\nconsent_ttl: 3s\n")
	f.Add("max_body: [1]\n")
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Skip()
		}
		c := defaultConfig()
		if err := loadConfigFile(p, &c); err == nil {
			_ = c.validate()
		}
	})
}
