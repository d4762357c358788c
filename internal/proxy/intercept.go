package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pare-dev/pare/internal/ca"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/pipeline"
)

// Drop-in mode. An app that honours HTTPS_PROXY opens a tunnel with CONNECT
// and speaks TLS inside it; an app whose traffic is redirected to the
// transparent listener (iptables) speaks TLS straight away. Either way Pare
// terminates that TLS with a certificate for the vendor host minted by its
// local CA (package ca), serves the HTTP inside — HTTP/1.1 or HTTP/2, as
// many requests as the app sends — and runs every request through the same
// pipeline as a plain request, then originates its own verified TLS to the
// vendor. Nothing is tunnelled blindly: a host no contract names is refused
// and recorded, except the configured pass-through hosts (internal services
// that carry no personal data), whose tunnels are logged and counted.

// ServerLimits are the limits of the HTTP servers Pare runs; the egress
// listener and the server inside intercepted TLS share them. The README's
// "Limits" table maps each to Envoy's edge proxy best practices.
type ServerLimits struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// HandshakeTimeout bounds an intercepted TLS handshake; 0 means 10s.
	HandshakeTimeout time.Duration
	// MaxConcurrentStreams bounds the HTTP/2 streams of one intercepted
	// connection; 0 means 100 (Envoy's edge recommendation).
	MaxConcurrentStreams int
}

// Server returns an http.Server with these limits serving h.
func (l ServerLimits) Server(h http.Handler, log *slog.Logger) *http.Server {
	streams := l.MaxConcurrentStreams
	if streams <= 0 {
		streams = 100
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Envoy's edge values: 100 streams, 64 KiB per stream and 1 MiB
		// per connection of flow-control window — what one app connection
		// may make Pare buffer before the app must wait.
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          streams,
			MaxReceiveBufferPerStream:     64 << 10,
			MaxReceiveBufferPerConnection: 1 << 20,
			MaxDecoderHeaderTableSize:     4096,
		},
	}
}

// TunnelMetrics count drop-in mode's connections.
type TunnelMetrics struct {
	tunnels    *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	mints      prometheus.Histogram
}

// NewTunnelMetrics creates the collectors and registers them with reg (nil:
// not registered).
func NewTunnelMetrics(reg prometheus.Registerer) *TunnelMetrics {
	m := &TunnelMetrics{
		tunnels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "tunnel", Name: "connections_total",
			Help: "TLS connections from apps by mode (connect, transparent) and result (intercepted, passthrough, refused).",
		}, []string{"mode", "result"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "tunnel", Name: "handshake_failures_total",
			Help: "Intercepted TLS handshakes that failed (the app does not trust Pare's CA, or did not speak TLS); nothing was sent.",
		}, []string{"mode"}),
		mints: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "pare", Subsystem: "tunnel", Name: "certificate_mint_duration_seconds",
			Help:    "Time to mint a vendor certificate from the local CA (first tunnel to a host, and on renewal).",
			Buckets: prometheus.ExponentialBuckets(1e-4, 2, 12),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.tunnels, m.handshakes, m.mints)
	}
	return m
}

// interceptor serves the HTTP inside intercepted TLS connections.
type interceptor struct {
	p   *Proxy
	ca  *ca.CA
	m   *TunnelMetrics
	log *slog.Logger
	ln  *connListener
	srv *http.Server
}

func newInterceptor(p *Proxy) *interceptor {
	it := &interceptor{p: p, ca: p.cfg.CA, m: p.cfg.Tunnels, log: p.pl.Logger(), ln: newConnListener()}
	if it.m == nil {
		it.m = NewTunnelMetrics(nil)
	}
	it.srv = p.cfg.Limits.Server(http.HandlerFunc(it.serveHTTP), it.log)
	// The TLS config is per connection (the certificate depends on the
	// tunnel), so the server gets none: Serve then sets up HTTP/2 for the
	// *tls.Conn that negotiated "h2".
	it.srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := c.(*tls.Conn); ok {
			if ic, ok := tc.NetConn().(*interceptedConn); ok {
				ctx = context.WithValue(ctx, heldKey{}, &heldHeaders{})
				return context.WithValue(ctx, tunnelKey{}, ic.target)
			}
		}
		return ctx
	}
	go func() { _ = it.srv.Serve(it.ln) }()
	return it
}

type tunnelKey struct{}

// Header memory. HTTP/2 lets an app keep up to MaxConcurrentStreams
// requests in flight on one connection, and HPACK lets each carry a
// header list far larger than the bytes sent: one 4 KB dynamic-table
// entry referenced 15 times is 60 KB decoded for 20 bytes on the wire.
// Go's HTTP/2 server bounds each list (MaxHeaderBytes) and the table
// (MaxDecoderHeaderTableSize), not their sum over a connection, so 100
// stalled streams held ~6 MB each connection (review finding 6). A
// connection's requests in flight may hold at most connHeaderFactor
// times MaxHeaderBytes of headers, counted as HTTP/2 counts a header
// list (RFC 9113 §6.5.2: name, value and 32 bytes per field); a request
// beyond that is refused at once with 503 overloaded, which frees its
// headers, and the requests already in flight go on. The headers are also
// charged to the body memory (pipeline.HoldHeaders), so that all
// connections together hold no more than --max-body-memory, not
// --max-conns times the per-connection bound.
type heldKey struct{}

type heldHeaders struct{ n atomic.Int64 }

const connHeaderFactor = 4

// headerListSize is the RFC 9113 size of r's header list, pseudo-header
// fields included.
func headerListSize(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.RequestURI) + len(r.Host) + len("https") + 4*32)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 32)
		}
	}
	return n
}

// interceptedConn is an app's connection whose TLS Pare terminates, with
// the vendor it is a tunnel to.
type interceptedConn struct {
	net.Conn
	r      io.Reader // bytes the CONNECT request's reader had buffered, then the conn
	target target
}

func (c *interceptedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// serveHTTP handles one request inside an intercepted connection.
func (it *interceptor) serveHTTP(w http.ResponseWriter, r *http.Request) {
	t, ok := r.Context().Value(tunnelKey{}).(target)
	if !ok {
		http.Error(w, "no tunnel", http.StatusInternalServerError)
		return
	}
	via := "connect"
	if t.transparent {
		via = "transparent"
	}
	if held, ok := r.Context().Value(heldKey{}).(*heldHeaders); ok {
		size := headerListSize(r)
		limit := int64(connHeaderFactor * it.maxHeaderBytes())
		if now := held.n.Add(size); now > limit {
			held.n.Add(-size)
			x := it.p.pl.Begin(&pipeline.Request{Via: via, Method: r.Method, Scheme: "https", Host: t.host, Port: t.port, Header: r.Header})
			defer x.End()
			writeRefusal(w, x.Refuse(&engine.Error{Code: engine.CodeOverloaded,
				Reason: fmt.Sprintf("this connection's requests in flight hold %d bytes of headers, over its %d (%d× max_header_bytes): wait for their answers before sending more", now-size, limit, connHeaderFactor)}))
			return
		}
		defer held.n.Add(-size)
		release, ok := it.p.pl.HoldHeaders(size)
		if !ok {
			x := it.p.pl.Begin(&pipeline.Request{Via: via, Method: r.Method, Scheme: "https", Host: t.host, Port: t.port, Header: r.Header})
			defer x.End()
			writeRefusal(w, x.Refuse(&engine.Error{Code: engine.CodeOverloaded,
				Reason: "the sidecar's body memory (--max-body-memory), which also holds the headers of intercepted requests in flight, is in use by other requests; retry"}))
			return
		}
		defer release()
	}
	// The tunnel names the vendor. A Host header naming another host
	// would make the app believe it talks to one vendor while the policy
	// decides for another: refused.
	if h := hostOnly(r.Host); h != "" && h != t.host {
		x := it.p.pl.Begin(&pipeline.Request{Via: via, Method: r.Method, Scheme: "https", Host: t.host, Port: t.port, Header: r.Header})
		defer x.End()
		writeRefusal(w, x.Refuse(&engine.Error{Code: engine.CodeBadRequest,
			Reason: fmt.Sprintf("the Host header names %s inside a tunnel to %s", h, t.host)}))
		return
	}
	it.p.serve(w, r, via, t)
}

func (it *interceptor) maxHeaderBytes() int {
	if n := it.p.cfg.Limits.MaxHeaderBytes; n > 0 {
		return n
	}
	return http.DefaultMaxHeaderBytes
}

func hostOnly(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// connect handles a CONNECT request on the egress listener.
func (p *Proxy) connect(w http.ResponseWriter, r *http.Request) {
	var t target
	if err := t.setHost(r.Host); err != nil || t.port == 0 {
		reason := "CONNECT needs host:port"
		if err != nil {
			reason = err.Error()
		}
		x := p.pl.Begin(&pipeline.Request{Via: "connect", Method: "CONNECT", Header: r.Header})
		defer x.End()
		writeRefusal(w, x.Refuse(&engine.Error{Code: engine.CodeBadRequest, Reason: reason}))
		return
	}
	t.scheme = "https"
	if rf := p.checkTunnel(r.Context(), "connect", t); rf != nil {
		if rf.Code == engine.CodeUnknownVendor && p.passthrough[t.host] {
			// A pass-through host is tunnelled only when no contract
			// names it: a vendor host is always intercepted.
			p.passThrough(w, r, t)
			return
		}
		p.tunnelMetrics().tunnels.WithLabelValues("connect", "refused").Inc()
		writeRefusal(w, p.pl.RefuseTunnel("connect", t.host, t.port, rf))
		return
	}
	conn, buffered, err := hijack(w)
	if err != nil {
		p.pl.Logger().Warn("connect: hijack failed", "host", t.host, "err", err)
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	p.it.m.tunnels.WithLabelValues("connect", "intercepted").Inc()
	go p.it.handshake(&interceptedConn{Conn: conn, r: buffered, target: t}, "connect")
}

// checkTunnel says why a tunnel to t must not be intercepted: no contract
// names the host, drop-in mode is off, or the CA cannot vouch for the host.
// The caller records the refusal (pipeline.RefuseTunnel).
func (p *Proxy) checkTunnel(ctx context.Context, via string, t target) *engine.Error {
	if _, err := p.pl.TunnelVendor(ctx, t.host, t.port); err != nil {
		var e *engine.Error
		if !errors.As(err, &e) {
			e = &engine.Error{Code: engine.CodeEvalError, Reason: "the tunnel could not be decided", Err: err}
		}
		return e
	}
	if p.it == nil {
		return &engine.Error{Code: engine.CodeDenied,
			Reason: "drop-in mode (HTTPS_PROXY) is not enabled on this sidecar: send plain HTTP (HTTP_PROXY) and Pare originates TLS to the vendor"}
	}
	if !p.it.ca.Permits(t.host) {
		return &engine.Error{Code: engine.CodeDenied,
			Reason: fmt.Sprintf("%s is a vendor host outside the drop-in CA's name constraints: re-create the CA (proxy ca init --force) and have apps trust the new one", t.host)}
	}
	return nil
}

// handshake terminates the app's TLS with a certificate for the tunnel's
// host and hands the connection to the interceptor's HTTP server. A
// failed handshake (the app does not trust the CA, or sent something
// other than TLS) ends the connection: nothing was decided or sent.
func (it *interceptor) handshake(ic *interceptedConn, mode string) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if sni := strings.TrimSuffix(strings.ToLower(hello.ServerName), "."); sni != "" && sni != ic.target.host {
				return nil, fmt.Errorf("the TLS server name %q is not the tunnel's host %q", sni, ic.target.host)
			}
			return it.leaf(ic.target.host)
		},
	}
	it.serveTLS(ic, cfg, mode)
}

func (it *interceptor) leaf(host string) (*tls.Certificate, error) {
	start := time.Now()
	c, err := it.ca.Leaf(host)
	if d := time.Since(start); d > 50*time.Microsecond { // a cache hit is far below: count mints only
		it.m.mints.Observe(d.Seconds())
	}
	return c, err
}

func (it *interceptor) serveTLS(ic *interceptedConn, cfg *tls.Config, mode string) {
	tc := tls.Server(ic, cfg)
	timeout := it.p.cfg.Limits.HandshakeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		it.m.handshakes.WithLabelValues(mode).Inc()
		it.log.Warn("tunnel: TLS handshake failed; nothing was sent", "mode", mode, "host", ic.target.host, "err", err)
		tc.Close()
		return
	}
	if !it.ln.put(tc) {
		tc.Close()
	}
}

// passThrough tunnels to a configured pass-through host without looking
// inside: logged and counted, never for a host a contract names (those are
// always intercepted — see Config.Passthrough).
func (p *Proxy) passThrough(w http.ResponseWriter, r *http.Request, t target) {
	m := p.tunnelMetrics()
	addr := net.JoinHostPort(t.host, strconv.Itoa(t.port))
	up, err := p.dialer.DialContext(r.Context(), "tcp", addr)
	if err != nil {
		m.tunnels.WithLabelValues("connect", "refused").Inc()
		x := p.pl.Begin(&pipeline.Request{Via: "connect", Method: "CONNECT", Scheme: "https", Host: t.host, Port: t.port, Path: "/"})
		defer x.End()
		writeRefusal(w, x.Refuse(&engine.Error{Code: engine.CodeUpstreamError, Reason: fmt.Sprintf("pass-through host %s could not be reached", t.host), Err: err}))
		return
	}
	conn, buffered, err := hijack(w)
	if err != nil {
		up.Close()
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		conn.Close()
		up.Close()
		return
	}
	m.tunnels.WithLabelValues("connect", "passthrough").Inc()
	start := time.Now()
	var wg sync.WaitGroup
	var sent, received int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		sent, _ = io.Copy(up, buffered)
		closeWrite(up)
	}()
	go func() {
		defer wg.Done()
		received, _ = io.Copy(conn, up)
		closeWrite(conn)
	}()
	wg.Wait()
	conn.Close()
	up.Close()
	p.pl.Logger().Info("tunnel: pass-through", "host", t.host, "port", t.port,
		"bytes_sent", sent, "bytes_received", received, "duration_ms", time.Since(start).Milliseconds())
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func (p *Proxy) tunnelMetrics() *TunnelMetrics {
	if p.it != nil {
		return p.it.m
	}
	if p.cfg.Tunnels != nil {
		return p.cfg.Tunnels
	}
	return NewTunnelMetrics(nil)
}

// hijack takes the app's connection over from the HTTP server, with
// deadlines cleared (the egress server's would cut a long tunnel) and the
// bytes its reader already buffered (a client may send its ClientHello
// without waiting for the 200).
func hijack(w http.ResponseWriter) (net.Conn, io.Reader, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	var r io.Reader = conn
	if brw != nil && brw.Reader.Buffered() > 0 {
		r = io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), conn)
	}
	return conn, r, nil
}

// connListener hands intercepted connections to an http.Server.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// ServeTransparent accepts connections redirected to ln (by iptables in
// the pod, as Istio's init container does) and intercepts each like a
// tunnel to the host its TLS server name (SNI) names. A connection without
// SNI, or for a host no contract names, fails its handshake and is
// recorded as refused. It returns when ln is closed.
func (p *Proxy) ServeTransparent(ln net.Listener) error {
	if p.it == nil {
		return errors.New("proxy: transparent mode needs the drop-in CA")
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		ic := &interceptedConn{Conn: c, r: c}
		go p.it.serveTLS(ic, p.transparentTLS(ic), "transparent")
	}
}

// transparentTLS chooses the certificate — and the vendor — from the SNI.
func (p *Proxy) transparentTLS(ic *interceptedConn) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			host := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
			t := target{scheme: "https", host: host, transparent: true}
			if host == "" {
				p.it.m.tunnels.WithLabelValues("transparent", "refused").Inc()
				p.pl.RefuseTunnel("transparent", "", 0, &engine.Error{Code: engine.CodeUnknownVendor,
					Reason: "a redirected TLS connection without a server name (SNI): the vendor cannot be known"})
				return nil, errors.New("no TLS server name (SNI): the vendor cannot be known")
			}
			if e := p.checkTunnel(hello.Context(), "transparent", t); e != nil {
				p.it.m.tunnels.WithLabelValues("transparent", "refused").Inc()
				p.pl.RefuseTunnel("transparent", host, 0, e)
				return nil, fmt.Errorf("%s: %s", e.Code, e.Reason)
			}
			p.it.m.tunnels.WithLabelValues("transparent", "intercepted").Inc()
			ic.target = t
			return p.it.leaf(host)
		},
	}
}
