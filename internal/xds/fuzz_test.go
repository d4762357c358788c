package xds

import (
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/contract"
)

// FuzzBuild: every contract the contract package accepts gives a config
// Envoy's validation accepts, or one clear error (a wildcard on a
// non-default port); never a panic. Seeds: testdata/fuzz/FuzzBuild and
// the edge contracts.
func FuzzBuild(f *testing.F) {
	for _, c := range []string{"crm", "intranet", "partner"} {
		b, err := readTestdata("edge/contracts/" + c + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c, b)
	}
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		c, err := contract.Parse("contracts/"+id+".yaml", data)
		if err != nil {
			return
		}
		cfg, err := Build(map[string]*contract.Contract{c.ID: c}, Options{})
		if err != nil {
			if strings.Contains(err.Error(), "wildcard host") {
				return
			}
			t.Fatalf("a valid contract gave no config: %v", err)
		}
		if _, err := cfg.Snapshot(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzBootstrap: any flags give a valid bootstrap that parses back, or an
// error; never a panic.
func FuzzBootstrap(f *testing.F) {
	f.Add("checkout-7d9f", "pare-egress", "127.0.0.1:15010", "127.0.0.1:9901")
	f.Add("n", "", "[::1]:15010", "[::1]:9901")
	f.Fuzz(func(t *testing.T, node, cluster, xds, admin string) {
		bs, err := Bootstrap(BootstrapOptions{Node: node, Cluster: cluster, XDS: xds, Admin: admin})
		if err != nil {
			return
		}
		y, err := YAML(bs)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseBootstrap(t, y)
		if err != nil {
			t.Fatalf("bootstrap does not parse back: %v\n%s", err, y)
		}
		if err := Validate(back); err != nil {
			t.Fatal(err)
		}
	})
}
