package cli

import (
	"bytes"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestHelp: `-h` works for every command and subcommand: exit 0 and a usage
// text, never "unknown subcommand".
func TestHelp(t *testing.T) {
	var cases [][]string
	for _, c := range commands() {
		cases = append(cases, []string{c.name, "-h"}, []string{c.name, "--help"})
	}
	for _, sub := range []string{"verify", "query", "report", "keygen"} {
		cases = append(cases, []string{"ledger", sub, "-h"})
	}
	cases = append(cases, []string{"-h"}, []string{"help"})
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(args, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != exitOK {
				t.Errorf("exit %d, want 0:\n%s", code, out)
			}
			if !strings.Contains(strings.ToLower(out), "usage") {
				t.Errorf("no usage text:\n%s", out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"version"}, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !regexp.MustCompile(`^pare \S+ \(revision \S+.*, go1\.\d+`).MatchString(stdout.String()) {
		t.Errorf("version line %q", stdout.String())
	}
	if code := Main([]string{"version", "extra"}, nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("version with an argument: exit %d, want %d", code, exitUsage)
	}
}

// configKeys are the YAML keys of Config, in declaration order.
func configKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	rt := reflect.TypeOf(Config{})
	for i := range rt.NumField() {
		if !rt.Field(i).IsExported() {
			continue // set by the subcommand, not configurable
		}
		tag := rt.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			t.Fatalf("Config.%s has no yaml key", rt.Field(i).Name)
		}
		keys = append(keys, strings.Split(tag, ",")[0])
	}
	return keys
}

// TestConfigKeysAreFlags: every config key is also a serve flag of the same
// name (with - for _), so the file and the command line say the same things.
func TestConfigKeysAreFlags(t *testing.T) {
	var configPath string
	c := defaultConfig()
	fs := newServeFlagSet(&c, &configPath)
	for _, k := range configKeys(t) {
		if fs.Lookup(strings.ReplaceAll(k, "_", "-")) == nil {
			t.Errorf("config key %s has no flag --%s", k, strings.ReplaceAll(k, "_", "-"))
		}
	}
}

// TestConfigKeysDocumented: the README's configuration table names every key
// and no key that does not exist.
func TestConfigKeysDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "<!-- config keys -->")
	if !ok {
		t.Fatal("README.md has no <!-- config keys --> table")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(table, -1) {
		documented[m[1]] = true
	}
	for _, k := range configKeys(t) {
		if !documented[k] {
			t.Errorf("config key %s is not in README.md's table", k)
		}
		delete(documented, k)
	}
	for k := range documented {
		t.Errorf("README.md documents %s, which is not a config key", k)
	}
}
