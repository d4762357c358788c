package xds

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func bundled(t testing.TB) map[string]*contract.Contract {
	t.Helper()
	p, err := engine.Load(context.Background(), policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Contracts
}

func edge(t testing.TB) map[string]*contract.Contract {
	t.Helper()
	cs, err := contract.LoadDir("testdata/edge/contracts")
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// edgeOptions change every default a flag can change.
var edgeOptions = Options{
	Egress:          "127.0.0.2:25001",
	ExtProc:         "extproc.pare.svc:25002",
	CAFile:          "/etc/pare/vendor-ca.pem",
	Resolve:         map[string]string{"a.partner.example:8443": "10.0.0.7:9443", "wiki.group.internal:80": "wiki.lan:8080"},
	MaxBody:         1 << 20,
	MessageTimeout:  2 * time.Second,
	UpstreamTimeout: 10 * time.Second,
}

// configYAML renders every resource as a YAML document, in Resources order.
func configYAML(t *testing.T, c *Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range c.Resources() {
		y, err := YAML(m)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(y)
	}
	return buf.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/xds/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated config (go test ./internal/xds/ -update rewrites it; review the diff):\n%s", path, firstDiff(want, got))
	}
}

func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(same lines)"
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestGolden pins the whole generated config, resource by resource, for the
// bundled contracts with default options and for edge cases (wildcard,
// plaintext, non-default port, several hosts, --resolve) with every option
// changed. It also checks what every served config must satisfy.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name      string
		contracts func(testing.TB) map[string]*contract.Contract
		opt       Options
	}{
		{"bundled", bundled, Options{}},
		{"edge", edge, edgeOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Build(tc.contracts(t), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			checkServable(t, cfg)
			golden(t, tc.name+".golden.yaml", configYAML(t, cfg))
		})
	}
	t.Run("no_policy", func(t *testing.T) {
		cfg, err := NoPolicy(Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkServable(t, cfg)
		if len(cfg.Clusters) != 1 || cfg.Clusters[0].GetName() != ExtProcCluster {
			t.Errorf("no-policy config has clusters %v, want only %s", clusterNames(cfg), ExtProcCluster)
		}
		golden(t, "no_policy.golden.yaml", configYAML(t, cfg))
	})
}

// checkServable: a consistent snapshot, every resource and every Any
// inside valid, the ext_proc filter first and the router last, and a
// catch-all refusal as the last virtual host.
func checkServable(t *testing.T, cfg *Config) {
	t.Helper()
	snap, err := cfg.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatal(err)
	}
	anys := 0
	for _, m := range cfg.Resources() {
		if err := Validate(m); err != nil {
			t.Error(err)
		}
		anys += countAnys(t, m)
	}
	// Listener → HCM → ext_proc + router; a protocol options Any per
	// cluster; a TLS context per TLS cluster.
	if min := 3 + len(cfg.Clusters); anys < min {
		t.Errorf("found %d Any messages, want at least %d: the walker does not reach them", anys, min)
	}
	hcm := listenerHCM(t, cfg.Listeners[0])
	filters := hcm.GetHttpFilters()
	if len(filters) < 2 || filters[0].GetName() != extProcFilter || filters[len(filters)-1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("http filters %v: want ext_proc first and the router last", filterNames(filters))
	}
	ep := &extprocv3.ExternalProcessor{}
	if err := filters[0].GetTypedConfig().UnmarshalTo(ep); err != nil {
		t.Fatal(err)
	}
	if ep.GetFailureModeAllow() || ep.GetAllowModeOverride() || ep.GetObservabilityMode() ||
		!proto.Equal(ep.GetProcessingMode(), ExtProcMode()) || ep.GetGrpcService().GetEnvoyGrpc().GetClusterName() != ExtProcCluster {
		t.Errorf("ext_proc filter does not fail closed with Pare's processing mode: %v", ep)
	}
	vhs := cfg.Routes[0].GetVirtualHosts()
	last := vhs[len(vhs)-1]
	if len(last.GetDomains()) != 1 || last.GetDomains()[0] != "*" {
		t.Fatalf("last virtual host %q has domains %v, want the catch-all *", last.GetName(), last.GetDomains())
	}
	dr := last.GetRoutes()[0].GetDirectResponse()
	var body struct{ Error, Reason string }
	if err := json.Unmarshal([]byte(dr.GetBody().GetInlineString()), &body); err != nil || body.Error == "" || dr.GetStatus() < 403 {
		t.Errorf("catch-all answers %d %q: want a refusal with proxy serve's JSON body", dr.GetStatus(), dr.GetBody().GetInlineString())
	}
	// Every route goes to a cluster of the snapshot or answers directly.
	names := map[string]bool{}
	for _, c := range cfg.Clusters {
		names[c.GetName()] = true
	}
	for _, vh := range vhs {
		for _, r := range vh.GetRoutes() {
			if c := r.GetRoute().GetCluster(); c != "" && !names[c] {
				t.Errorf("virtual host %s routes to %q, which is not in the snapshot", vh.GetName(), c)
			}
		}
	}
}

func countAnys(t *testing.T, m proto.Message) int {
	t.Helper()
	n := 0
	var walk func(m proto.Message)
	walk = func(m proto.Message) {
		err := forEachAny(m.ProtoReflect(), "", func(a *anypb.Any, _ string) error {
			n++
			inner, err := a.UnmarshalNew()
			if err != nil {
				return err
			}
			walk(inner)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	walk(m)
	return n
}

func listenerHCM(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

func filterNames(fs []*hcmv3.HttpFilter) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetName())
	}
	return out
}

func clusterNames(c *Config) []string {
	var out []string
	for _, cl := range c.Clusters {
		out = append(out, cl.GetName())
	}
	return out
}

// TestValidateLooksInsideAny breaks a message nested one, two and three
// Anys deep. The resource's own ValidateAll passes every time — the
// generated validators stop at an Any — and Validate must not.
func TestValidateLooksInsideAny(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, c *Config) proto.Message
	}{
		{"hcm inside listener", func(t *testing.T, c *Config) proto.Message {
			l := c.Listeners[0]
			hcm := listenerHCM(t, l)
			hcm.StatPrefix = "" // required
			repack(t, l.FilterChains[0].Filters[0].GetTypedConfig(), hcm)
			return l
		}},
		{"ext_proc inside hcm inside listener", func(t *testing.T, c *Config) proto.Message {
			l := c.Listeners[0]
			hcm := listenerHCM(t, l)
			ep := &extprocv3.ExternalProcessor{}
			if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(ep); err != nil {
				t.Fatal(err)
			}
			ep.MessageTimeout = durationpb.New(-time.Second) // must be >= 0
			repack(t, hcm.HttpFilters[0].GetTypedConfig(), ep)
			repack(t, l.FilterChains[0].Filters[0].GetTypedConfig(), hcm)
			return l
		}},
		{"tls context inside cluster", func(t *testing.T, c *Config) proto.Message {
			cl := vendorClusterOf(t, c)
			tc := &tlsv3.UpstreamTlsContext{}
			if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(tc); err != nil {
				t.Fatal(err)
			}
			tc.Sni = strings.Repeat("a", 256) // at most 255 bytes
			repack(t, cl.GetTransportSocket().GetTypedConfig(), tc)
			return cl
		}},
		{"protocol options in a map", func(t *testing.T, c *Config) proto.Message {
			cl := vendorClusterOf(t, c)
			cl.TypedExtensionProtocolOptions[httpProtocolOptionsID] = &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", Value: []byte{0xff}}
			return cl
		}},
		{"unknown type", func(t *testing.T, c *Config) proto.Message {
			cl := vendorClusterOf(t, c)
			cl.TransportSocket.GetTypedConfig().TypeUrl = "type.googleapis.com/envoy.extensions.transport_sockets.nope.v3.Nope"
			return cl
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Build(bundled(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			m := tc.break_(t, cfg)
			if err := m.(allValidator).ValidateAll(); err != nil && tc.name != "unknown type" {
				t.Fatalf("the resource's own ValidateAll caught it (%v): this case does not test the walker", err)
			}
			if err := Validate(m); err == nil {
				t.Fatal("Validate passed a config with an invalid message inside an Any")
			} else {
				t.Log(err)
			}
		})
	}
}

func repack(t *testing.T, a *anypb.Any, m proto.Message) {
	t.Helper()
	if err := a.MarshalFrom(m); err != nil {
		t.Fatal(err)
	}
}

func vendorClusterOf(t *testing.T, c *Config) *clusterv3.Cluster {
	t.Helper()
	for _, cl := range c.Clusters {
		if cl.GetTransportSocket() != nil {
			return cl
		}
	}
	t.Fatal("no TLS cluster")
	return nil
}

// TestVendorRouting checks what the golden files show, as properties: each
// contract host reaches its own cluster, over TLS with SNI and SAN equal to
// the host, at the contract's port; and no cluster exists for anything else.
func TestVendorRouting(t *testing.T) {
	cs := edge(t)
	for id, c := range bundled(t) {
		cs[id] = c
	}
	cfg, err := Build(cs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, cl := range cfg.Clusters {
		clusters[cl.GetName()] = cl
	}
	domains := map[string]*routev3.VirtualHost{}
	for _, vh := range cfg.Routes[0].GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if domains[d] != nil {
				t.Errorf("domain %s in two virtual hosts", d)
			}
			domains[d] = vh
		}
	}
	hosts := 0
	for id, c := range cs {
		for _, h := range c.Hosts {
			hosts++
			vh := domains[h]
			if vh == nil {
				t.Errorf("%s: host %s has no virtual host", id, h)
				continue
			}
			cl := clusters[vh.GetRoutes()[0].GetRoute().GetCluster()]
			if cl == nil {
				t.Errorf("%s: host %s routes to no cluster", id, h)
				continue
			}
			if !strings.Contains(cl.GetName(), "|"+id+"|"+h+"|") {
				t.Errorf("%s: host %s routes to cluster %s", id, h, cl.GetName())
			}
			if c.Plaintext {
				if cl.GetTransportSocket() != nil {
					t.Errorf("%s: plaintext contract got TLS", id)
				}
				continue
			}
			tc := &tlsv3.UpstreamTlsContext{}
			if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(tc); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			vc := tc.GetCommonTlsContext().GetValidationContext()
			if vc.GetTrustedCa().GetFilename() == "" || tc.GetCommonTlsContext().GetTlsParams().GetTlsMinimumProtocolVersion() != tlsv3.TlsParameters_TLSv1_2 {
				t.Errorf("%s: TLS without a CA or TLS 1.2 floor: %v", id, tc)
			}
			if strings.HasPrefix(h, "*.") {
				continue // SNI and SAN from the Host: auto_sni, auto_san_validation (golden)
			}
			if tc.GetSni() != h || len(vc.GetMatchTypedSubjectAltNames()) != 1 || vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != h {
				t.Errorf("%s: TLS to %s with SNI %q and SAN matchers %v", id, h, tc.GetSni(), vc.GetMatchTypedSubjectAltNames())
			}
			port := uint32(c.Port)
			if port == 0 {
				port = 443
			}
			if got := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); got != port {
				t.Errorf("%s: %s dialled at port %d, want %d", id, h, got, port)
			}
		}
	}
	if want := hosts + 1; len(cfg.Clusters) != want {
		t.Errorf("%d clusters for %d hosts: want one per host and ext_proc's: %v", len(cfg.Clusters), hosts, clusterNames(cfg))
	}
}

func TestBuildErrors(t *testing.T) {
	wild := func(port int) map[string]*contract.Contract {
		c := *edge(t)["crm"]
		c.Port = port
		return map[string]*contract.Contract{"crm": &c}
	}
	invalid := *edge(t)["partner"]
	invalid.Hosts = []string{"Bad_Host"}
	for _, tc := range []struct {
		name      string
		contracts map[string]*contract.Contract
		opt       Options
		want      string
	}{
		{"wildcard on another port", wild(8443), Options{}, "wildcard host *.api.example-crm.com with port 8443"},
		{"invalid contract", map[string]*contract.Contract{"partner": &invalid}, Options{}, "Bad_Host"},
		{"nil contract", map[string]*contract.Contract{"x": nil}, Options{}, "contract x: nil"},
		{"same host twice", map[string]*contract.Contract{"partner": edge(t)["partner"], "partner2": func() *contract.Contract {
			c := *edge(t)["partner"]
			c.ID = "partner2"
			return &c
		}()}, Options{}, "claimed twice"},
		{"egress not an IP", nil, Options{Egress: "localhost:15001"}, "not an IP address"},
		{"egress without port", nil, Options{Egress: "127.0.0.1"}, "egress"},
		{"extproc port 0", nil, Options{ExtProc: "127.0.0.1:0"}, "port"},
		{"relative CA file", nil, Options{CAFile: "ca.pem"}, "absolute path"},
		{"CA file not UTF-8", nil, Options{CAFile: "/etc/\xff.pem"}, "ca file"},
		{"body over uint32", nil, Options{MaxBody: 1 << 32}, "max body"},
		{"negative timeout", nil, Options{MessageTimeout: -time.Second}, "message timeout"},
		{"bad resolve", nil, Options{Resolve: map[string]string{"api.stripe.com:443": "nowhere"}}, "resolve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.contracts, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestVersion: the version follows the content — equal for equal input
// (so a restarted xds server does not make every Envoy reload), new for a
// changed contract or option.
func TestVersion(t *testing.T) {
	v := func(cs map[string]*contract.Contract, opt Options) string {
		t.Helper()
		c, err := Build(cs, opt)
		if err != nil {
			t.Fatal(err)
		}
		return c.Version
	}
	base := v(bundled(t), Options{})
	if again := v(bundled(t), Options{}); again != base {
		t.Errorf("same input, versions %s and %s", base, again)
	}
	changed := bundled(t)
	s := *changed["stripe"]
	s.Hosts = []string{"api.stripe.com", "files.stripe.com"}
	changed["stripe"] = &s
	if v(changed, Options{}) == base {
		t.Error("a new vendor host did not change the version")
	}
	if v(bundled(t), Options{MessageTimeout: time.Second}) == base {
		t.Error("a new ext_proc timeout did not change the version")
	}
	if v(bundled(t), Options{CAFile: "/etc/pare/ca.pem"}) == base {
		t.Error("a new CA file did not change the version")
	}
}

func readTestdata(name string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata", name)) }
