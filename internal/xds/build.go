package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/pare-dev/pare/internal/contract"
)

// Config is one complete egress configuration for Envoy: what a snapshot
// holds. Build makes it; it is immutable afterwards.
type Config struct {
	// Version is derived from the content (a hash of every resource), so the
	// same contracts and options give the same version across restarts, and
	// any change — a contract, a flag — gives a new one.
	Version   string
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// Resources lists every resource, listeners first, in a stable order.
func (c *Config) Resources() []proto.Message {
	var out []proto.Message
	for _, l := range c.Listeners {
		out = append(out, l)
	}
	for _, r := range c.Routes {
		out = append(out, r)
	}
	for _, cl := range c.Clusters {
		out = append(out, cl)
	}
	return out
}

// Snapshot packs the config for go-control-plane's cache and checks that
// every route the listener names is there.
func (c *Config) Snapshot() (*cache.Snapshot, error) {
	res := map[resource.Type][]types.Resource{}
	for _, l := range c.Listeners {
		res[resource.ListenerType] = append(res[resource.ListenerType], l)
	}
	for _, r := range c.Routes {
		res[resource.RouteType] = append(res[resource.RouteType], r)
	}
	for _, cl := range c.Clusters {
		res[resource.ClusterType] = append(res[resource.ClusterType], cl)
	}
	s, err := cache.NewSnapshot(c.Version, res)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", c.Version, err)
	}
	if err := s.Consistent(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", c.Version, err)
	}
	return s, nil
}

// Build turns contracts (vendor id → contract, as engine.Policy.Contracts
// holds them) into Envoy's egress config. The result has passed Validate:
// a config Envoy's own validation would reject is an error here, so the
// server never publishes one.
func Build(contracts map[string]*contract.Contract, opt Options) (*Config, error) {
	opt = opt.withDefaults()
	if err := opt.validate(); err != nil {
		return nil, fmt.Errorf("xds options: %w", err)
	}
	ids := make([]string, 0, len(contracts))
	for id := range contracts {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	b := &builder{opt: opt}
	for _, id := range ids {
		c := contracts[id]
		if c == nil {
			return nil, fmt.Errorf("contract %s: nil", id)
		}
		// Contracts from engine.Load are valid already; one built in code
		// is checked here, so every host below is a DNS name.
		if err := c.Validate(); err != nil {
			return nil, err
		}
		hosts := append([]string(nil), c.Hosts...)
		sort.Strings(hosts)
		for _, h := range hosts {
			if err := b.vendorHost(id, c, h); err != nil {
				return nil, fmt.Errorf("contract %s: %w", where(c, id), err)
			}
		}
	}
	return b.finish(refusal{status: 403, code: "unknown_vendor", reason: "no contract covers this host"})
}

// NoPolicy is the config served while no valid policy is loaded: the
// listener and the ext_proc cluster, and every request answered 503
// no_policy, as proxy serve answers before its first good load.
func NoPolicy(opt Options) (*Config, error) {
	opt = opt.withDefaults()
	if err := opt.validate(); err != nil {
		return nil, fmt.Errorf("xds options: %w", err)
	}
	b := &builder{opt: opt}
	return b.finish(refusal{status: 503, code: "no_policy", reason: "no valid policy is loaded"})
}

func where(c *contract.Contract, id string) string {
	if c.File != "" {
		return c.File
	}
	return id
}

// refusal is a direct answer Envoy gives itself, with the JSON body shape
// of proxy serve's refusals.
type refusal struct {
	status       uint32
	code, reason string
}

func (r refusal) body() string {
	b, _ := json.Marshal(struct {
		Error      string `json:"error"`
		Reason     string `json:"reason"`
		DecisionID string `json:"decision_id"`
	}{r.code, r.reason, ""})
	return string(b)
}

type builder struct {
	packer
	opt       Options
	vhosts    []*routev3.VirtualHost
	clusters  []*clusterv3.Cluster
	wildcards bool            // some contract has a wildcard host: the dynamic forward proxy is needed
	domains   map[string]bool // every Envoy domain so far: a route configuration rejects duplicates
}

// vendorHost adds the virtual host and cluster of one contract host.
func (b *builder) vendorHost(id string, c *contract.Contract, host string) error {
	tls := !c.Plaintext
	port := uint32(c.Port)
	if port == 0 {
		port = 443
		if !tls {
			port = 80
		}
	}
	if port > 65535 {
		return fmt.Errorf("port %d out of range", port)
	}
	wildcard := strings.HasPrefix(host, "*.")
	defaultPort := (tls && port == 443) || (!tls && port == 80)
	if wildcard && !defaultPort {
		// The dynamic forward proxy dials the port of the Host header, or
		// the scheme's default: it cannot be told the contract's port.
		return fmt.Errorf("wildcard host %s with port %d: Envoy can reach a wildcard vendor on port %d only; list the exact hosts", host, port, map[bool]uint32{true: 443, false: 80}[tls])
	}
	name := fmt.Sprintf("vendor|%s|%s|%d", id, host, port)

	// The app names the vendor as proxy serve accepts it: no port, the
	// default port of plain HTTP (it speaks http:// to the sidecar), or the
	// contract's port. Envoy matches domains case-insensitively.
	domains := []string{host}
	if !wildcard {
		for _, p := range []uint32{80, port} {
			d := net.JoinHostPort(host, strconv.FormatUint(uint64(p), 10))
			if !containsString(domains, d) {
				domains = append(domains, d)
			}
		}
	}
	if b.domains == nil {
		b.domains = map[string]bool{}
	}
	for _, d := range domains {
		if b.domains[d] {
			return fmt.Errorf("host %s is claimed twice", d)
		}
		b.domains[d] = true
	}

	canonical := host
	if !defaultPort {
		canonical = net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	}
	vh := &routev3.VirtualHost{
		Name:                   id + "|" + host,
		Domains:                domains,
		RequestBodyBufferLimit: uint64Value(uint64(b.opt.MaxBody)),
	}
	if wildcard {
		// Envoy's "*.example.com" matches any number of labels; a contract
		// wildcard matches exactly one. Requests with more fall through to
		// the refusal below (ext_proc refuses them first).
		suffix := regexp.QuoteMeta(strings.TrimPrefix(host, "*"))
		vh.Routes = []*routev3.Route{
			b.vendorRoute(name, "", `(?i)^[^.:]+`+suffix+`$`),
			directRoute(refusal{status: 403, code: "unknown_vendor", reason: "no contract covers this host"}),
		}
		b.wildcards = true
		b.clusters = append(b.clusters, b.dynamicCluster(name, tls))
	} else {
		vh.Routes = []*routev3.Route{b.vendorRoute(name, canonical, "")}
		cl, err := b.vendorCluster(name, host, port, tls)
		if err != nil {
			return err
		}
		b.clusters = append(b.clusters, cl)
	}
	b.vhosts = append(b.vhosts, vh)
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// finish adds the catch-all virtual host, the listener and the ext_proc
// cluster, validates everything and computes the version.
func (b *builder) finish(otherwise refusal) (*Config, error) {
	catchAll := &routev3.VirtualHost{
		Name:                   "unknown_vendor",
		Domains:                []string{"*"},
		Routes:                 []*routev3.Route{directRoute(otherwise)},
		RequestBodyBufferLimit: uint64Value(uint64(b.opt.MaxBody)),
	}
	routes := &routev3.RouteConfiguration{
		Name:         RouteName,
		VirtualHosts: append(b.vhosts, catchAll),
		// Applied by the router after ext_proc: a second line behind
		// ext_proc's removal, for the control headers Pare defines and for
		// those Envoy itself would add. No prefix match exists here, so
		// ext_proc stays the one that removes every header a contract does
		// not allow.
		RequestHeadersToRemove: controlHeaders,
	}
	lis, err := b.listener()
	if err != nil {
		return nil, err
	}
	ep, err := b.extProcCluster()
	if err != nil {
		return nil, err
	}
	if b.err != nil {
		return nil, b.err
	}
	cfg := &Config{
		Listeners: []*listenerv3.Listener{lis},
		Routes:    []*routev3.RouteConfiguration{routes},
		Clusters:  append(b.clusters, ep),
	}
	h := sha256.New()
	det := proto.MarshalOptions{Deterministic: true}
	for _, m := range cfg.Resources() {
		if err := Validate(m); err != nil {
			return nil, err
		}
		raw, err := det.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", resourceName(m), err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", m.ProtoReflect().Descriptor().FullName(), len(raw))
		h.Write(raw)
	}
	cfg.Version = hex.EncodeToString(h.Sum(nil))[:16]
	return cfg, nil
}

// controlHeaders never reach a vendor: Pare's request headers (README,
// "How an app uses the sidecar") and what a proxy in front could add.
var controlHeaders = []string{
	"x-data-purpose", "x-data-subject", "x-data-gpc", "x-data-requester",
	"x-legal-basis", "x-legal-approver",
	"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
}

func resourceName(m proto.Message) string {
	type named interface{ GetName() string }
	if n, ok := m.(named); ok {
		return fmt.Sprintf("%s %q", m.ProtoReflect().Descriptor().Name(), n.GetName())
	}
	return string(m.ProtoReflect().Descriptor().Name())
}
