package xds

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Names of the resources every snapshot holds. The ext_proc server and the
// bootstrap refer to them; the vendor resources are named per host.
const (
	ListenerName   = "pare_egress"  // the listener the app sends its egress to
	RouteName      = "pare_egress"  // its route configuration (RDS)
	ExtProcCluster = "pare_extproc" // proxy extproc, over HTTP/2
	XDSCluster     = "pare_xds"     // proxy xds itself, in the bootstrap
)

// Defaults, chosen to line up with proxy serve's.
const (
	DefaultListen  = "127.0.0.1:15010"
	DefaultEgress  = "127.0.0.1:15001"
	DefaultExtProc = "127.0.0.1:15002"
	// DefaultCAFile is where Debian, Ubuntu and the envoyproxy/envoy images
	// keep the system's CA bundle. Envoy's system_root_certs is not
	// implemented (v1.40 API), so a file is the only way to say "the system
	// roots".
	DefaultCAFile          = "/etc/ssl/certs/ca-certificates.crt"
	DefaultMaxBody         = 10 << 20
	DefaultMessageTimeout  = 5 * time.Second
	DefaultUpstreamTimeout = 30 * time.Second
)

// Options say where things are and how large they may be. The zero value
// of each field means its default.
type Options struct {
	// Egress is the IP:port Envoy's egress listener binds.
	Egress string
	// ExtProc is the host:port of proxy extproc's gRPC listener.
	ExtProc string
	// CAFile is the PEM bundle Envoy validates vendors' certificates
	// against: a path on Envoy's filesystem, read by Envoy.
	CAFile string
	// Resolve maps a vendor's "host:port" to the "addr:port" Envoy dials
	// instead, as proxy serve's --resolve does (tests, local stand-ins). The
	// SNI and the name checked in the certificate stay the vendor's host.
	Resolve map[string]string
	// MaxBody is the largest request body Envoy buffers for ext_proc; a
	// larger one gets 413 from Envoy. Use proxy extproc's --max-body.
	MaxBody int64
	// MessageTimeout bounds each ext_proc exchange (a buffered 10 MiB body
	// must be parsed, filtered and its ledger record made durable in it).
	MessageTimeout time.Duration
	// MaxMessageTimeout bounds what ext_proc may ask for with
	// override_message_timeout; default six times MessageTimeout.
	MaxMessageTimeout time.Duration
	// UpstreamTimeout bounds a vendor's whole response (the route timeout).
	UpstreamTimeout time.Duration
	// ConnectTimeout bounds a TCP connect to a vendor or to ext_proc.
	ConnectTimeout time.Duration
	// RequestTimeout bounds receiving the app's whole request.
	RequestTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Egress == "" {
		o.Egress = DefaultEgress
	}
	if o.ExtProc == "" {
		o.ExtProc = DefaultExtProc
	}
	if o.CAFile == "" {
		o.CAFile = DefaultCAFile
	}
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MessageTimeout == 0 {
		o.MessageTimeout = DefaultMessageTimeout
	}
	if o.MaxMessageTimeout == 0 {
		o.MaxMessageTimeout = 6 * o.MessageTimeout
	}
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 60 * time.Second
	}
	return o
}

// maxGRPCOverhead is what an ext_proc message carries besides the body:
// the request's headers (at most 64 KiB, max_request_headers_kb) and framing.
const maxGRPCOverhead = 1 << 20

// validate reports every problem at once.
func (o Options) validate() error {
	var errs []error
	if _, _, err := splitIPPort(o.Egress); err != nil {
		errs = append(errs, fmt.Errorf("egress %q: %w (Envoy binds listeners to IP addresses only)", o.Egress, err))
	}
	if _, _, err := splitHostPort(o.ExtProc); err != nil {
		errs = append(errs, fmt.Errorf("extproc %q: %w", o.ExtProc, err))
	}
	if !strings.HasPrefix(o.CAFile, "/") || !utf8.ValidString(o.CAFile) || strings.ContainsRune(o.CAFile, 0) {
		errs = append(errs, fmt.Errorf("ca file %q: want an absolute path on Envoy's filesystem", o.CAFile))
	}
	for from, to := range o.Resolve {
		if _, _, err := splitHostPort(from); err != nil {
			errs = append(errs, fmt.Errorf("resolve %q: %w", from, err))
		}
		if _, _, err := splitHostPort(to); err != nil {
			errs = append(errs, fmt.Errorf("resolve %q to %q: %w", from, to, err))
		}
	}
	// max_receive_message_length is a uint32.
	if o.MaxBody <= 0 || o.MaxBody > 1<<32-1-maxGRPCOverhead {
		errs = append(errs, fmt.Errorf("max body %d: want 1 byte to 4 GiB less 1 MiB", o.MaxBody))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"message timeout", o.MessageTimeout}, {"max message timeout", o.MaxMessageTimeout},
		{"upstream timeout", o.UpstreamTimeout}, {"connect timeout", o.ConnectTimeout}, {"request timeout", o.RequestTimeout}} {
		if d.v < time.Millisecond {
			errs = append(errs, fmt.Errorf("%s %v: want 1ms or more", d.name, d.v))
		}
	}
	if o.MaxMessageTimeout < o.MessageTimeout {
		errs = append(errs, fmt.Errorf("max message timeout %v is below the message timeout %v", o.MaxMessageTimeout, o.MessageTimeout))
	}
	return errors.Join(errs...)
}

var dnsName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

// splitHostPort splits "host:port" with a port in 1..65535 and a non-empty
// host (an IP address or a DNS name).
func splitHostPort(s string) (string, uint32, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	if net.ParseIP(host) == nil && !dnsName.MatchString(host) {
		return "", 0, fmt.Errorf("host %q: want an IP address or a DNS name", host)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("port %q: want 1 to 65535", p)
	}
	return host, uint32(port), nil
}

func splitIPPort(s string) (string, uint32, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("host %q is not an IP address", host)
	}
	return host, port, nil
}
