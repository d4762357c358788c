package xds

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

// logBuffer collects a server's log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer serves s on a loopback port until the test ends and returns
// an ADS stream to it, as Envoy opens one (one stream, all types).
func startServer(t *testing.T, s *Server) *adsClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Bounds the whole exchange: a missing response fails the test
	// instead of hanging it.
	sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(scancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	return &adsClient{t: t, stream: stream, node: &corev3.Node{Id: "sidecar-1", Cluster: "pare-egress"}}
}

type adsClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
}

func (c *adsClient) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *adsClient) recv() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	resp, err := c.stream.Recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// subscribe requests typeURL, waits for the answer and ACKs it, as Envoy
// does: the ACK repeats the version and nonce it accepted.
func (c *adsClient) subscribe(typeURL string, names ...string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names})
	resp := c.recv()
	if resp.GetTypeUrl() != typeURL {
		c.t.Fatalf("asked for %s, got %s", typeURL, resp.GetTypeUrl())
	}
	c.ack(resp, names...)
	return resp
}

func (c *adsClient) ack(resp *discoveryv3.DiscoveryResponse, names ...string) {
	c.t.Helper()
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: names,
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
}

func decode[T proto.Message](t *testing.T, resp *discoveryv3.DiscoveryResponse, newT func() T) []T {
	t.Helper()
	var out []T
	for _, a := range resp.GetResources() {
		m := newT()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		if err := Validate(m); err != nil {
			t.Error(err)
		}
		out = append(out, m)
	}
	return out
}

func names[T interface{ GetName() string }](list []T) []string {
	var out []string
	for _, m := range list {
		out = append(out, m.GetName())
	}
	sort.Strings(out)
	return out
}

func domainsOf(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		out = append(out, vh.GetDomains()...)
	}
	return out
}

// TestADS plays Envoy against the real server over a real gRPC connection:
// subscribe to clusters, listeners and routes on one ADS stream, ACK each,
// then receive the new version an Update publishes, and NACK it.
func TestADS(t *testing.T) {
	logs := &logBuffer{}
	s, err := NewServer(Options{}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Update(bundled(t))
	if err != nil {
		t.Fatal(err)
	}
	ads := startServer(t, s)

	cds := ads.subscribe(resource.ClusterType)
	if cds.GetVersionInfo() != cfg.Version {
		t.Fatalf("CDS version %q, want %q", cds.GetVersionInfo(), cfg.Version)
	}
	clusters := decode(t, cds, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	if got, want := names(clusters), names(cfg.Clusters); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("CDS clusters %v, want %v", got, want)
	}
	lds := ads.subscribe(resource.ListenerType)
	listeners := decode(t, lds, func() *listenerv3.Listener { return &listenerv3.Listener{} })
	if len(listeners) != 1 || !proto.Equal(listeners[0], cfg.Listeners[0]) {
		t.Fatalf("LDS sent %v, want the built listener", names(listeners))
	}
	rds := ads.subscribe(resource.RouteType, RouteName)
	routes := decode(t, rds, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	if len(routes) != 1 || !proto.Equal(routes[0], cfg.Routes[0]) {
		t.Fatalf("RDS sent %v, want the built route configuration", names(routes))
	}
	for _, r := range []*discoveryv3.DiscoveryResponse{lds, rds} {
		if r.GetVersionInfo() != cfg.Version {
			t.Errorf("%s version %q, want %q", r.GetTypeUrl(), r.GetVersionInfo(), cfg.Version)
		}
	}

	// A contract change: the new host must reach Envoy as a new version of
	// clusters and routes, without Envoy asking again.
	changed := bundled(t)
	z := *changed["zendesk"]
	z.Hosts = append([]string{"webinarco2.zendesk.com"}, z.Hosts...)
	changed["zendesk"] = &z
	cfg2, err := s.Update(changed)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.Version == cfg.Version {
		t.Fatal("the change made no new version")
	}
	pushed := map[string]*discoveryv3.DiscoveryResponse{}
	for pushed[resource.ClusterType] == nil || pushed[resource.RouteType] == nil {
		r := ads.recv()
		if r.GetVersionInfo() != cfg2.Version {
			t.Fatalf("pushed %s version %q, want %q", r.GetTypeUrl(), r.GetVersionInfo(), cfg2.Version)
		}
		pushed[r.GetTypeUrl()] = r
	}
	newClusters := decode(t, pushed[resource.ClusterType], func() *clusterv3.Cluster { return &clusterv3.Cluster{} })
	if !containsString(names(newClusters), "vendor|zendesk|webinarco2.zendesk.com|443") {
		t.Errorf("pushed clusters %v lack the new host's", names(newClusters))
	}
	newRoutes := decode(t, pushed[resource.RouteType], func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })
	if !containsString(domainsOf(newRoutes[0]), "webinarco2.zendesk.com") {
		t.Errorf("pushed routes lack the new host")
	}

	// Envoy rejects the clusters (a NACK carries error_detail and the
	// version it keeps): the server says so in its log.
	ads.send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType,
		VersionInfo: cfg.Version, ResponseNonce: pushed[resource.ClusterType].GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "cluster rejected for the test"}})
	ads.ack(pushed[resource.RouteType], RouteName)
	waitFor(t, logs, "envoy rejected config", "cluster rejected for the test", "node=sidecar-1")
}

// waitFor polls the log until every part appears; the ADS exchange is
// asynchronous. Bounded, and not a timing assertion: it only waits.
func waitFor(t *testing.T, logs *logBuffer, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := logs.String()
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(s, p)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", parts, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoPolicyThenUpdate: before a policy loads, Envoy gets the refusing
// config (every request 503 no_policy, no vendor cluster); the first
// good Update replaces it.
func TestNoPolicyThenUpdate(t *testing.T) {
	s, err := NewServer(Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ads := startServer(t, s)
	cds := ads.subscribe(resource.ClusterType)
	if got := names(decode(t, cds, func() *clusterv3.Cluster { return &clusterv3.Cluster{} })); len(got) != 1 || got[0] != ExtProcCluster {
		t.Fatalf("before a policy, clusters %v: want only %s", got, ExtProcCluster)
	}
	rds := ads.subscribe(resource.RouteType, RouteName)
	rc := decode(t, rds, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })[0]
	if dr := rc.GetVirtualHosts()[0].GetRoutes()[0].GetDirectResponse(); dr.GetStatus() != 503 || !strings.Contains(dr.GetBody().GetInlineString(), `"no_policy"`) {
		t.Fatalf("before a policy, routes answer %v", dr)
	}
	cfg, err := s.Update(bundled(t))
	if err != nil {
		t.Fatal(err)
	}
	if r := ads.recv(); r.GetVersionInfo() != cfg.Version {
		t.Fatalf("after the first policy, got version %q, want %q", r.GetVersionInfo(), cfg.Version)
	}
}

// TestWatchReloads edits a copy of the bundled policies on disk, as an
// operator would: a broken contract keeps the last good config (and is
// logged), a fixed one reaches Envoy as the next version.
func TestWatchReloads(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, policies.FS); err != nil {
		t.Fatal(err)
	}
	pol, err := engine.LoadDir(context.Background(), dir, engine.LoadOptions{CacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s, err := NewServer(Options{}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Update(pol.Contracts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- s.Watch(ctx, dir, pol) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	ads := startServer(t, s)
	ads.subscribe(resource.ClusterType)
	ads.subscribe(resource.ListenerType)
	ads.subscribe(resource.RouteType, RouteName)

	path := filepath.Join(dir, "contracts", "zendesk.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, fs.FileMode(0o644)); err != nil {
			t.Fatal(err)
		}
	}
	// "hostz" is not a contract key: strict decoding refuses the file.
	write(bytes.Replace(orig, []byte("  hosts: [webinarco.zendesk.com]"), []byte("  hostz: [webinarco.zendesk.com]"), 1))
	waitFor(t, logs, "policy reload failed", "hostz")
	if s.Current().Version != cfg.Version {
		t.Fatal("a broken contract replaced the config")
	}
	write(bytes.Replace(orig, []byte("  hosts: [webinarco.zendesk.com]"), []byte("  hosts: [webinarco.zendesk.com, help.webinar.example]"), 1))
	r := ads.recv()
	if r.GetVersionInfo() == cfg.Version || r.GetVersionInfo() != s.Current().Version {
		t.Fatalf("after the fix, pushed version %q (first %q, current %q)", r.GetVersionInfo(), cfg.Version, s.Current().Version)
	}
	found := false
	for _, vh := range s.Current().Routes[0].GetVirtualHosts() {
		found = found || containsString(vh.GetDomains(), "help.webinar.example")
	}
	if !found {
		t.Error("the reloaded config lacks the new host")
	}
}
