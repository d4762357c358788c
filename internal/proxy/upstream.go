package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// UpstreamOptions configure how Pare reaches vendors.
type UpstreamOptions struct {
	// Resolve maps "host:port" to an address to dial instead, as curl's
	// --resolve does; the TLS name checked stays the vendor's host.
	Resolve map[string]string
	// ExtraCAs are PEM files of certificates trusted beside the system roots.
	ExtraCAs []string
	// MaxConnsPerVendor bounds concurrent connections to one vendor host.
	MaxConnsPerVendor int
	DialTimeout       time.Duration
	// ResponseHeaderTimeout bounds the wait for a vendor's answer (504 after).
	ResponseHeaderTimeout time.Duration
	IdleConnTimeout       time.Duration
}

// ParseResolve parses a curl-style HOST:PORT:ADDR (ADDR may carry its own
// port: HOST:PORT:ADDR:PORT, or an IPv6 [addr]:port).
func ParseResolve(s string) (hostPort, addr string, err error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return "", "", fmt.Errorf("--resolve %q: want HOST:PORT:ADDR[:PORT]", s)
	}
	port, err := strconv.Atoi(parts[1])
	if err != nil || port < 1 || port > 65535 {
		return "", "", fmt.Errorf("--resolve %q: bad port %q", s, parts[1])
	}
	addr = parts[2]
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), parts[1])
	}
	return net.JoinHostPort(strings.ToLower(parts[0]), parts[1]), addr, nil
}

// newTransport builds the one transport all vendors share: keep-alive pools
// are per host:port inside it, which is per vendor.
func newTransport(opt UpstreamOptions) (*http.Transport, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	for _, f := range opt.ExtraCAs {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("upstream CA: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream CA %s: no PEM certificates found", f)
		}
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = 5 * time.Second
	}
	if opt.ResponseHeaderTimeout <= 0 {
		opt.ResponseHeaderTimeout = 30 * time.Second
	}
	if opt.IdleConnTimeout <= 0 {
		opt.IdleConnTimeout = 90 * time.Second
	}
	if opt.MaxConnsPerVendor <= 0 {
		opt.MaxConnsPerVendor = 256
	}
	dialer := &net.Dialer{Timeout: opt.DialTimeout, KeepAlive: 30 * time.Second}
	resolve := opt.Resolve
	return &http.Transport{
		Proxy: nil, // never chain through the environment's proxy: that would be a loop
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := resolve[strings.ToLower(addr)]; ok {
				addr = to
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{
			RootCAs:    roots,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   opt.MaxConnsPerVendor,
		MaxConnsPerHost:       opt.MaxConnsPerVendor,
		IdleConnTimeout:       opt.IdleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: opt.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// The app's Accept-Encoding decides; Pare must not decompress and
		// re-serve a different representation.
		DisableCompression: true,
	}, nil
}
