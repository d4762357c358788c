package xds

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// DefaultEnvoyAdmin is where the bootstrap puts Envoy's admin interface:
// loopback, and clear of Pare's own ports (15000-15010).
const DefaultEnvoyAdmin = "127.0.0.1:9901"

// BootstrapOptions describe one Envoy sidecar.
type BootstrapOptions struct {
	Node    string // node id, shown in proxy xds's logs; required
	Cluster string // node cluster (default "pare-egress")
	XDS     string // host:port of proxy xds (default DefaultListen)
	Admin   string // IP:port of Envoy's admin interface (default DefaultEnvoyAdmin)
}

// Bootstrap returns the static config that points an Envoy at proxy xds:
// listeners and clusters come over ADS (gRPC, HTTP/2), and the only static
// resource is the cluster that reaches proxy xds. It has passed Validate.
func Bootstrap(opt BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if opt.Cluster == "" {
		opt.Cluster = "pare-egress"
	}
	if opt.XDS == "" {
		opt.XDS = DefaultListen
	}
	if opt.Admin == "" {
		opt.Admin = DefaultEnvoyAdmin
	}
	var errs []error
	for _, f := range []struct{ name, v string }{{"node", opt.Node}, {"cluster", opt.Cluster}} {
		if f.v == "" || !utf8.ValidString(f.v) || strings.IndexFunc(f.v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			errs = append(errs, fmt.Errorf("%s %q: want a non-empty name without spaces or control characters", f.name, f.v))
		}
	}
	xdsHost, xdsPort, err := splitHostPort(opt.XDS)
	if err != nil {
		errs = append(errs, fmt.Errorf("xds %q: %w", opt.XDS, err))
	}
	adminIP, adminPort, err := splitIPPort(opt.Admin)
	if err != nil {
		errs = append(errs, fmt.Errorf("admin %q: %w", opt.Admin, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}

	var p packer
	ads := adsSource()
	bs := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: opt.Node, Cluster: opt.Cluster},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(adminIP, adminPort),
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			LdsConfig: ads,
			CdsConfig: ads,
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster}},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{grpcCluster(&p, XDSCluster, xdsHost, xdsPort, 5*time.Second)},
		},
	}
	if p.err != nil {
		return nil, fmt.Errorf("bootstrap: %w", p.err)
	}
	if err := Validate(bs); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return bs, nil
}
