package xds

import (
	"fmt"
	"net"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dfpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	dfpcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/dynamic_forward_proxy/v3"
	dfpfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_forward_proxy/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Extension names Envoy looks the typed configs up by.
const (
	extProcFilter         = "envoy.filters.http.ext_proc"
	dfpFilter             = "envoy.filters.http.dynamic_forward_proxy"
	dfpClusterType        = "envoy.clusters.dynamic_forward_proxy"
	tlsTransportSocket    = "envoy.transport_sockets.tls"
	httpProtocolOptionsID = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	dnsCacheName          = "pare_vendors"
)

// ExtProcMode is the processing mode the ext_proc filter runs with, and
// the only one: the filter does not accept mode_override. Request headers
// and, when the request has one, the whole request body (BUFFERED) go to
// proxy extproc before anything leaves; response headers go to it so the
// ledger gets the vendor's status. A mode_override could only make Envoy
// send Pare less (a body it never sees would leave unfiltered), so none is
// allowed. A bodiless request (end_of_stream on its headers) gets no body
// message in BUFFERED mode either.
func ExtProcMode() *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{
		RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocv3.ProcessingMode_SEND,
		RequestBodyMode:     extprocv3.ProcessingMode_BUFFERED,
		ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
	}
}

func (b *builder) extProc() *extprocv3.ExternalProcessor {
	return &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: ExtProcCluster,
				// A reply holds at most the filtered body plus headers.
				MaxReceiveMessageLength: wrapperspb.UInt32(uint32(b.opt.MaxBody) + maxGRPCOverhead),
			}},
		},
		// Fail closed: an unreachable, slow or confused ext_proc server
		// means a local 503, never a request that skipped Pare.
		FailureModeAllow:  false,
		StatusOnError:     &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		ProcessingMode:    ExtProcMode(),
		AllowModeOverride: false,
		MessageTimeout:    durationpb.New(b.opt.MessageTimeout),
		MaxMessageTimeout: durationpb.New(b.opt.MaxMessageTimeout),
		// Envoy already refuses mutations of host, :authority, :scheme,
		// :method and x-envoy-*; with this, an attempt is an error (the
		// request fails) instead of being ignored.
		MutationRules: &mutationv3.HeaderMutationRules{DisallowIsError: wrapperspb.Bool(true)},
		// The vendor cluster is chosen from the host the policy decided on;
		// nothing ext_proc answers can re-route the request.
		RouteCacheAction: extprocv3.ExternalProcessor_RETAIN,
		StatPrefix:       "pare",
	}
}

func (b *builder) listener() (*listenerv3.Listener, error) {
	ip, port, err := splitIPPort(b.opt.Egress)
	if err != nil {
		return nil, fmt.Errorf("egress %q: %w", b.opt.Egress, err)
	}
	filters := []*hcmv3.HttpFilter{{
		Name:       extProcFilter,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: b.any(b.extProc())},
	}}
	if b.wildcards {
		// Resolves the Host of requests routed to a wildcard vendor's
		// cluster; a no-op for every other route.
		filters = append(filters, &hcmv3.HttpFilter{
			Name: dfpFilter,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: b.any(&dfpfilterv3.FilterConfig{
				ImplementationSpecifier: &dfpfilterv3.FilterConfig_DnsCacheConfig{DnsCacheConfig: dnsCache()},
			})},
		})
	}
	filters = append(filters, &hcmv3.HttpFilter{
		Name: wellknown.Router,
		// No x-envoy-* headers to vendors: they describe our network.
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: b.any(&routerv3.Router{SuppressEnvoyHeaders: true})},
	})
	hcm := &hcmv3.HttpConnectionManager{
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		StatPrefix: ListenerName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: RouteName,
		}},
		HttpFilters: filters,
		// Nothing Envoy would add on its own may leave: no request id, no
		// X-Forwarded-For with the pod's address.
		GenerateRequestId: wrapperspb.Bool(false),
		UseRemoteAddress:  wrapperspb.Bool(false),
		SkipXffAppend:     true,
		// ext_proc and the vendor see one spelling of the path: the policy's
		// globs are matched against what is sent. An escaped slash could
		// mean a different path to the vendor than to the policy: refused.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		// The policy lower-cases the host and drops a trailing dot; so does
		// routing, or "api.stripe.com." would miss its vendor's route.
		StripTrailingHostDot: true,
		MaxRequestHeadersKb:  wrapperspb.UInt32(64), // proxy serve's limit (431 above it)
		RequestTimeout:       durationpb.New(b.opt.RequestTimeout),
		HttpProtocolOptions: &corev3.Http1ProtocolOptions{
			// The app uses the sidecar as HTTP_PROXY: absolute-form requests.
			AllowAbsoluteUrl: wrapperspb.Bool(true),
		},
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			// "x_data_purpose" is not "x-data-purpose" to Pare, but may be
			// to a vendor's server: such headers are dropped, not forwarded.
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_DROP_HEADER,
		},
		LocalReplyConfig: localReplies(),
	}
	return &listenerv3.Listener{
		Name:    ListenerName,
		Address: socketAddress(ip, port),
		// ext_proc's BUFFERED mode answers 413 past the decoder buffer
		// limit. Envoys before 1.37 take it from the connection only (the
		// virtual hosts' request_body_buffer_limit is not applied while
		// ext_proc holds the headers): both say max body.
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(uint32(b.opt.MaxBody)),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: b.any(hcm)},
			}},
		}},
	}, nil
}

// localReplies give Envoy's own vendor errors the status and JSON shape
// proxy serve answers with. They match on response flags, which only
// Envoy's upstream failures set: ext_proc's refusals (immediate responses)
// keep their own body and decision id.
func localReplies() *hcmv3.LocalReplyConfig {
	mapper := func(status uint32, code, reason string, flags ...string) *hcmv3.ResponseMapper {
		return &hcmv3.ResponseMapper{
			Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
				ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: flags},
			}},
			StatusCode: wrapperspb.UInt32(status),
			BodyFormatOverride: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: map[string]*structpb.Value{
					"error":       structpb.NewStringValue(code),
					"reason":      structpb.NewStringValue(reason),
					"decision_id": structpb.NewStringValue(""),
				}}},
				ContentType: "application/json",
			},
		}
	}
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{
		mapper(504, "vendor_timeout", "the vendor did not answer in time", "UT"),
		mapper(502, "vendor_unreachable", "the vendor could not be reached", "UF", "UH", "URX", "UC", "DF", "UMSDR"),
	}}
}

func (b *builder) vendorRoute(cluster, hostRewrite, authorityRegex string) *routev3.Route {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout:          durationpb.New(b.opt.UpstreamTimeout),
	}
	if hostRewrite != "" {
		// The vendor gets its host as the contract names it, whatever
		// spelling (case, :80) the app used.
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: hostRewrite}
	}
	r := &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	}
	if authorityRegex != "" {
		r.Match.Headers = []*routev3.HeaderMatcher{{
			Name: ":authority",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: authorityRegex}},
			}},
		}}
	}
	return r
}

func directRoute(r refusal) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: r.status,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: r.body()}},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
}

// vendorCluster reaches one exact vendor host at the contract's port,
// originating TLS unless the contract is plaintext.
func (b *builder) vendorCluster(name, host string, port uint32, tls bool) (*clusterv3.Cluster, error) {
	dialHost, dialPort := host, port
	if to, ok := b.opt.Resolve[net.JoinHostPort(host, fmt.Sprint(port))]; ok {
		h, p, err := splitHostPort(to)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", to, err)
		}
		dialHost, dialPort = h, p
	}
	cl := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(b.opt.ConnectTimeout),
		// LOGICAL_DNS: one address at a time, re-resolved as the vendor's
		// DNS changes — Envoy's advice for large web services.
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: discoveryType(dialHost, clusterv3.Cluster_LOGICAL_DNS)},
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment:       loadAssignment(name, dialHost, dialPort, host),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			httpProtocolOptionsID: b.any(b.http1Upstream(nil)),
		},
	}
	if tls {
		cl.TransportSocket = b.upstreamTLS(host)
	}
	return cl, nil
}

// dynamicCluster reaches the hosts of a wildcard contract: the dynamic
// forward proxy resolves the request's Host (routing has checked it is one
// label under the wildcard), and TLS takes SNI and the name checked in the
// certificate from it.
func (b *builder) dynamicCluster(name string, tls bool) *clusterv3.Cluster {
	cl := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(b.opt.ConnectTimeout),
		LbPolicy:       clusterv3.Cluster_CLUSTER_PROVIDED,
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name: dfpClusterType,
			TypedConfig: b.any(&dfpclusterv3.ClusterConfig{
				ClusterImplementationSpecifier: &dfpclusterv3.ClusterConfig_DnsCacheConfig{DnsCacheConfig: dnsCache()},
			}),
		}},
	}
	var upstream *corev3.UpstreamHttpProtocolOptions
	if tls {
		upstream = &corev3.UpstreamHttpProtocolOptions{AutoSni: true, AutoSanValidation: true}
		cl.TransportSocket = b.upstreamTLS("")
	}
	cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsID: b.any(b.http1Upstream(upstream))}
	return cl
}

func dnsCache() *dfpcommonv3.DnsCacheConfig {
	return &dfpcommonv3.DnsCacheConfig{Name: dnsCacheName, DnsLookupFamily: clusterv3.Cluster_V4_PREFERRED}
}

// http1Upstream speaks HTTP/1.1 to vendors: Envoy's HTTP/1 codec drops
// request trailers (enable_trailers is off), which ext_proc does not see
// (trailer mode SKIP) and which must therefore not leave.
func (b *builder) http1Upstream(up *corev3.UpstreamHttpProtocolOptions) *upstreamhttpv3.HttpProtocolOptions {
	return &upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions:   &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(90 * time.Second)},
		UpstreamHttpProtocolOptions: up,
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}},
	}
}

// upstreamTLS originates TLS 1.2+ to host, validated against the CA file
// and (for an exact host) the host's DNS name. An empty host leaves SNI and
// name checks to auto_sni / auto_san_validation.
func (b *builder) upstreamTLS(host string) *corev3.TransportSocket {
	vc := &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: b.opt.CAFile}},
	}
	if host != "" {
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
		}}
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: host,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:             &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			AlpnProtocols:         []string{"http/1.1"},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
		},
	}
	return &corev3.TransportSocket{
		Name:       tlsTransportSocket,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: b.any(ctx)},
	}
}

func (b *builder) extProcCluster() (*clusterv3.Cluster, error) {
	host, port, err := splitHostPort(b.opt.ExtProc)
	if err != nil {
		return nil, fmt.Errorf("extproc %q: %w", b.opt.ExtProc, err)
	}
	return grpcCluster(&b.packer, ExtProcCluster, host, port, b.opt.ConnectTimeout), nil
}

// grpcCluster is a plaintext HTTP/2 cluster: proxy extproc, and proxy xds
// in the bootstrap. Both are meant to be on loopback or in the pod.
func grpcCluster(b *packer, name, host string, port uint32, connect time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connect),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: discoveryType(host, clusterv3.Cluster_STRICT_DNS)},
		LoadAssignment:       loadAssignment(name, host, port, ""),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			httpProtocolOptionsID: b.any(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			}),
		},
	}
}

// discoveryType is STATIC for an IP address, dns otherwise.
func discoveryType(host string, dns clusterv3.Cluster_DiscoveryType) clusterv3.Cluster_DiscoveryType {
	if net.ParseIP(host) != nil {
		return clusterv3.Cluster_STATIC
	}
	return dns
}

func loadAssignment(cluster, host string, port uint32, hostname string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address:  socketAddress(host, port),
					Hostname: hostname,
				}},
			}},
		}},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func uint64Value(v uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(v) }

// packer packs typed configs into Any deterministically, so equal configs
// hash equally. Packing fails only on a string that is not UTF-8; the
// first failure is kept and reported once the config is built, which
// keeps the builders free of error plumbing.
type packer struct{ err error }

func (p *packer) any(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil && p.err == nil {
		p.err = fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a
}
