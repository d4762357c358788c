package xds

import (
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// parseBootstrap reads YAML as Envoy does: YAML → JSON → proto, unknown
// fields rejected.
func parseBootstrap(t testing.TB, y []byte) (*bootstrapv3.Bootstrap, error) {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, bs); err != nil {
		return nil, err
	}
	return bs, nil
}

// TestBootstrap: the printed YAML parses back into Envoy's Bootstrap proto,
// equal to what was built, and validates down through every Any.
func TestBootstrap(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  BootstrapOptions
	}{
		{"bootstrap", BootstrapOptions{Node: "checkout-7d9f"}},
		{"bootstrap_dns", BootstrapOptions{Node: "checkout-7d9f", Cluster: "checkout", XDS: "pare-xds.pare.svc:15010", Admin: "127.0.0.1:19000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Bootstrap(tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			y, err := YAML(bs)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".golden.yaml", y)
			back, err := parseBootstrap(t, y)
			if err != nil {
				t.Fatalf("the printed bootstrap does not parse back: %v", err)
			}
			if !proto.Equal(back, bs) {
				t.Error("the printed bootstrap parses back to a different config")
			}
			if err := Validate(back); err != nil {
				t.Error(err)
			}
			if n := countAnys(t, back); n < 1 {
				t.Errorf("found %d Any messages in the bootstrap: the xds cluster's protocol options are one", n)
			}
			ads := back.GetDynamicResources().GetAdsConfig()
			if ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != XDSCluster ||
				back.GetDynamicResources().GetLdsConfig().GetAds() == nil || back.GetDynamicResources().GetCdsConfig().GetAds() == nil {
				t.Errorf("listeners and clusters do not come over ADS from %s: %v", XDSCluster, back.GetDynamicResources())
			}
			if ip := back.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); ip != "127.0.0.1" {
				t.Errorf("admin on %s, want loopback", ip)
			}
		})
	}
}

func TestBootstrapErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  BootstrapOptions
		want string
	}{
		{"no node", BootstrapOptions{}, "node"},
		{"node with space", BootstrapOptions{Node: "a b"}, "node"},
		{"node with control char", BootstrapOptions{Node: "a\x00"}, "node"},
		{"xds without port", BootstrapOptions{Node: "n", XDS: "pare-xds"}, "xds"},
		{"admin not an IP", BootstrapOptions{Node: "n", Admin: "localhost:9901"}, "admin"},
		{"node not UTF-8", BootstrapOptions{Node: "\xff"}, "node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Bootstrap(tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Bootstrap: %v, want an error about %s", err, tc.want)
			}
		})
	}
}
