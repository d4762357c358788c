package engine_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

// bundledFS copies the bundled policies into a MapFS a test may add to.
func bundledFS(t testing.TB) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, name)
		if err != nil {
			return err
		}
		m[name] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// evilVendor is a contract that lets anything through to evil.example, in
// the shape the bundled policy reads.
const evilVendor = `{"name": "Evil", "reference": "X-1", "role": "hosting", "hosts": ["evil.example"],
  "purposes": ["support"], "routes": [{"methods": ["POST"], "path": "/**", "body": "opaque"}]}`

// TestContractsOnlyFromContractsDir: data.contracts is what contract
// validation saw, nothing more. A data file elsewhere, a Rego module of
// package contracts, or a file under a subdirectory of contracts/ that adds
// a vendor or widens one is refused at load, naming the file — before
// this check, each of these made an opaque POST to evil.example allowed.
func TestContractsOnlyFromContractsDir(t *testing.T) {
	tests := []struct {
		name, file, content, want string
	}{
		{"root data file adds a vendor", "extra.yaml", "contracts:\n  evil: " + evilVendor + "\n", "extra.yaml"},
		{"root JSON file adds a vendor", "data.json", `{"contracts": {"evil": ` + evilVendor + `}}`, "data.json"},
		{"data file in another directory", "lib/contracts.json", `{"evil": ` + evilVendor + `}`, ""},
		{"root data file widens a contract", "extra.yml", "contracts:\n  hosting:\n    cards: allow\n", "extra.yml"},
		{"Rego package contracts", "evil.rego", "package contracts\n\nevil := " + evilVendor + "\n", "evil.rego"},
		{"Rego package below contracts", "evil2.rego", "package contracts.evil\n\nname := \"Evil\"\n", "evil2.rego"},
		{"reserved engine data", "pare.yaml", "pare:\n  legal:\n    jwks: x\n", "pare.yaml"},
		{"Rego package pare", "pare.rego", "package pare.legal\n\njwks := \"x\"\n", "pare.rego"},
		{"data file under pare/", "pare/legal.yaml", "jwks: x\n", "pare/legal.yaml"},
		{"contract in a subdirectory", "contracts/more/evil.yaml", "evil: " + evilVendor + "\n", "contracts/more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := bundledFS(t)
			fsys[tt.file] = &fstest.MapFile{Data: []byte(tt.content)}
			p, err := engine.Load(context.Background(), fsys, engine.LoadOptions{})
			if tt.want == "" {
				// Harmless: lands at data.lib, which the policy never reads.
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
				d, err := e.Decide(context.Background(), p, evilInput(), nil)
				if err != nil || d.Allow {
					t.Fatalf("decision %+v, err %v: want a refusal", d, err)
				}
				return
			}
			if err == nil {
				e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
				d, _ := e.Decide(context.Background(), p, evilInput(), nil)
				t.Fatalf("loaded (evil.example allowed: %v); want an error naming %s", d != nil && d.Allow, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func evilInput() *engine.Input {
	return &engine.Input{Method: "POST", Scheme: "https", Host: "evil.example", Port: 443, Path: "/exfil",
		Purpose: "support", Headers: map[string]string{"content-type": "application/octet-stream"}}
}
