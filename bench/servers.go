package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"
)

// ReceivedHeader is the stub's response header holding how many body bytes
// the vendor received: the harness reports it to show what left the proxy.
const ReceivedHeader = "X-Stub-Received"

// ServerOptions configure the helper servers the harness runs as child
// processes (cmd/bench stub|revproxy|opaproxy).
type ServerOptions struct {
	Listen string // address to listen on, e.g. 127.0.0.1:0
	Cert   string // stub: certificate and key PEM files
	Key    string
	Stub   string // proxies: address every vendor host is dialled at
	CA     string // proxies: PEM file of the CA the stub's certificate chains to
	OPA    string // opaproxy: OPA server base URL
}

// RunStub serves the vendor stub over TLS (HTTP/1.1 and HTTP/2): it reads
// each request body fully and answers 200 with a small JSON body. It writes
// "listening ADDR" to announce once it accepts connections and returns when
// ctx ends.
func RunStub(ctx context.Context, o ServerOptions, announce io.Writer) error {
	cert, err := tls.LoadX509KeyPair(o.Cert, o.Key)
	if err != nil {
		return fmt.Errorf("stub: %w", err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "stub: reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(ReceivedHeader, strconv.FormatInt(n, 10))
		fmt.Fprintf(w, `{"id":"stub_ok","object":"bench","received":%d}`+"\n", n)
	})
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return serve(ctx, srv, o.Listen, announce, true)
}

// RunReverseProxy serves row 2: a bare httputil.ReverseProxy, plain HTTP in
// (absolute-form or Host-routed), TLS out to the vendor host, dialled at the
// stub. No policy, no body handling: the cost of any Go proxy hop. It also
// serves row 7, the floor of HTTPS_PROXY: CONNECT to any host is a blind
// tunnel to the stub (see connectTunnel).
func RunReverseProxy(ctx context.Context, o ServerOptions, announce io.Writer) error {
	tr, err := vendorTransport(o.Stub, o.CA)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = hostname(pr.In.Host)
			pr.Out.Host = ""
		},
		Transport: tr,
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			connectTunnel(w, o.Stub)
			return
		}
		rp.ServeHTTP(w, r)
	})
	return serve(ctx, proxyServer(h), o.Listen, announce, false)
}

// connectTunnel answers a CONNECT with a blind tunnel to the stub, as any
// forward proxy does for HTTPS_PROXY: 200, then bytes both ways unread
// (TCP to TCP, which Go copies with splice(2) on Linux). It sees none of
// the TLS inside: what Pare's drop-in mode costs above it is terminating
// that TLS, the pipeline and originating TLS again.
func connectTunnel(w http.ResponseWriter, stub string) {
	up, err := net.DialTimeout("tcp", stub, 5*time.Second)
	if err != nil {
		fail(w, http.StatusBadGateway, "vendor_unreachable", err.Error())
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		fail(w, http.StatusInternalServerError, "no_hijack", "the connection cannot be taken over")
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	defer conn.Close()
	defer up.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		return
	}
	// Bytes the server's reader took past the CONNECT request go first.
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(conn, up)
		closeWrite(conn)
		close(done)
	}()
	_, _ = io.Copy(up, conn)
	closeWrite(up)
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// opaInput is what the OPA-pattern proxy posts to OPA for each request.
type opaInput struct {
	Method  string          `json:"method"`
	Host    string          `json:"host"`
	Path    string          `json:"path"`
	Purpose string          `json:"purpose"`
	Body    json.RawMessage `json:"body"`
}

// opaMaxBody bounds what the OPA-pattern proxy buffers.
const opaMaxBody = 64 << 20

// RunOPAProxy serves row 4, the usual way teams minimise payloads today: a
// small proxy that buffers each JSON body, posts it to an OPA server
// (POST /v1/data/bench/result, see opapattern.rego) and forwards the filtered
// body OPA returns over TLS to the vendor. It gives the pattern its best
// shot: the body is embedded in OPA's input as raw JSON (validated, never
// decoded into Go values), OPA's answer is forwarded as is, both connection
// pools are keep-alive and responses are not compressed.
func RunOPAProxy(ctx context.Context, o ServerOptions, announce io.Writer) error {
	tr, err := vendorTransport(o.Stub, o.CA)
	if err != nil {
		return err
	}
	opaTr := http.DefaultTransport.(*http.Transport).Clone()
	opaTr.Proxy = nil
	opaTr.MaxIdleConns = 1024
	opaTr.MaxIdleConnsPerHost = 256
	opaTr.DisableCompression = true
	p := &opaProxy{vendor: tr, opa: &http.Client{Transport: opaTr, Timeout: 2 * time.Minute}, opaURL: o.OPA + "/v1/data/bench/result"}
	return serve(ctx, proxyServer(p), o.Listen, announce, false)
}

type opaProxy struct {
	vendor http.RoundTripper
	opa    *http.Client
	opaURL string
}

func (p *opaProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, opaMaxBody+1))
	if err != nil {
		fail(w, http.StatusBadRequest, "read_error", err.Error())
		return
	}
	if len(body) > opaMaxBody {
		fail(w, http.StatusRequestEntityTooLarge, "too_large", "body too large")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "JSON only")
		return
	}
	host := hostname(r.Host)
	in, err := json.Marshal(struct {
		Input opaInput `json:"input"`
	}{opaInput{Method: r.Method, Host: host, Path: r.URL.Path, Purpose: r.Header.Get("X-Data-Purpose"), Body: body}})
	if err != nil {
		fail(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.opaURL, bytes.NewReader(in))
	if err != nil {
		fail(w, http.StatusInternalServerError, "opa_error", err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.opa.Do(req)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "opa_unavailable", err.Error())
		return
	}
	var out struct {
		Result *struct {
			Allow  bool            `json:"allow"`
			Reason string          `json:"reason"`
			Body   json.RawMessage `json:"body"`
		} `json:"result"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil || resp.StatusCode != http.StatusOK:
		fail(w, http.StatusServiceUnavailable, "opa_error", fmt.Sprintf("OPA answered %d (%v)", resp.StatusCode, err))
		return
	case out.Result == nil || !out.Result.Allow:
		reason := "no decision"
		if out.Result != nil {
			reason = out.Result.Reason
		}
		fail(w, http.StatusForbidden, "denied", reason)
		return
	}
	up, err := http.NewRequestWithContext(r.Context(), r.Method, "https://"+host+r.URL.Path, bytes.NewReader(out.Result.Body))
	if err != nil {
		fail(w, http.StatusBadGateway, "bad_upstream_request", err.Error())
		return
	}
	for _, k := range []string{"Content-Type", "Authorization", "Accept"} {
		if v := r.Header.Get(k); v != "" {
			up.Header.Set(k, v)
		}
	}
	vresp, err := p.vendor.RoundTrip(up)
	if err != nil {
		fail(w, http.StatusBadGateway, "vendor_unreachable", err.Error())
		return
	}
	defer vresp.Body.Close()
	for k, vs := range vresp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(vresp.StatusCode)
	_, _ = io.Copy(w, vresp.Body)
}

func fail(w http.ResponseWriter, status int, code, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "reason": reason})
}

// vendorTransport is http.DefaultTransport's configuration (HTTP/2 when the
// vendor offers it, keep-alive) with every vendor host dialled at stub and the
// bench CA trusted: what a Go proxy uses towards a vendor.
func vendorTransport(stub, caFile string) (*http.Transport, error) {
	if stub == "" || caFile == "" {
		return nil, errors.New("--stub and --ca are required")
	}
	pool, err := caPool(caFile)
	if err != nil {
		return nil, err
	}
	return mustVendorTransport(stub, pool), nil
}

// mustVendorTransport is vendorTransport with the CA already read.
func mustVendorTransport(stub string, pool *x509.CertPool) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, stub)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.ForceAttemptHTTP2 = true
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.DisableCompression = true
	return tr
}

func proxyServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}

// serve listens on addr, announces the bound address and serves until ctx ends.
func serve(ctx context.Context, srv *http.Server, addr string, announce io.Writer, useTLS bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(announce, "listening %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if useTLS {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// hostname strips a port from a Host header value.
func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
