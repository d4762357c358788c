// Package vendorstub runs local HTTPS servers that stand in for vendors: one
// certificate authority made at start, one leaf certificate naming every
// vendor host, and a record of every request received, byte for byte. The
// demo, the e2e tests and the benchmarks point the proxy at it with
// --resolve and --upstream-ca, so the proxy's real TLS verification runs.
package vendorstub

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Received is one request as the vendor saw it.
type Received struct {
	Method   string
	Host     string
	Path     string
	RawQuery string
	// RequestURI is the request target as it arrived, still
	// percent-encoded: what the vendor's own router reads.
	RequestURI string
	Header     http.Header
	Body       []byte
	TLS        bool
	// Aborted says the body ended in an error: the sender broke the
	// upload off (as Pare does when its card guard finds a number in a
	// streamed body), so Body is only what arrived before.
	Aborted bool
}

// Stub is a running vendor stand-in.
type Stub struct {
	Addr   string // host:port it listens on (127.0.0.1)
	CAFile string // PEM of the CA that signed its certificate

	// Respond, when set, answers instead of the default 200 JSON. It runs
	// after the request was recorded.
	Respond func(w http.ResponseWriter, r *http.Request, body []byte)

	srv      *http.Server
	mu       sync.Mutex
	received []Received
	inflight atomic.Int64
}

// Start starts a TLS stub whose certificate is valid for hosts, writing its
// CA certificate to dir/ca.pem.
func Start(hosts []string, dir string) (*Stub, error) {
	cert, caPEM, err := certificates(hosts)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "vendor-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		return nil, fmt.Errorf("vendor stub: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("vendor stub: %w", err)
	}
	s := &Stub{Addr: ln.Addr().String(), CAFile: caFile}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

func (s *Stub) serve(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	body, err := io.ReadAll(r.Body)
	s.mu.Lock()
	s.received = append(s.received, Received{
		Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI,
		Header: r.Header.Clone(), Body: body, TLS: r.TLS != nil, Aborted: err != nil,
	})
	respond := s.Respond
	s.mu.Unlock()
	if respond != nil {
		respond(w, r, body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"ok\":true,\"received_bytes\":%d}\n", len(body))
}

// Settle waits until no request is being read or answered, up to
// timeout. A streamed upload the sender breaks off is recorded only when
// the stub's read fails, which can come after the sender has answered its
// own client: tests settle before they look, so that a late record is
// neither missed by a check nor counted against the next request.
func (s *Stub) Settle(timeout time.Duration) bool {
	// Idle must hold for a moment: a request whose headers are still on
	// the way has not started its handler yet.
	const quiet = 50 * time.Millisecond
	deadline := time.Now().Add(timeout)
	idleSince := time.Time{}
	for {
		now := time.Now()
		if s.inflight.Load() > 0 {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = now
		} else if now.Sub(idleSince) >= quiet {
			return true
		}
		if now.After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Received returns what the stub has received so far.
func (s *Stub) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Reset forgets what was received.
func (s *Stub) Reset() {
	s.mu.Lock()
	s.received = nil
	s.mu.Unlock()
}

// SetRespond replaces the response function (nil: the default).
func (s *Stub) SetRespond(f func(w http.ResponseWriter, r *http.Request, body []byte)) {
	s.mu.Lock()
	s.Respond = f
	s.mu.Unlock()
}

// Close stops the stub.
func (s *Stub) Close() error { return s.srv.Close() }

// PKI is a throwaway CA and a leaf certificate, signed by it, for a set of
// vendor hosts (and 127.0.0.1), as PEM files.
type PKI struct {
	CA, Cert, Key string
}

// WritePKI writes a throwaway PKI for hosts into dir, for stubs that run in
// a process of their own (the benchmark's).
func WritePKI(hosts []string, dir string) (PKI, error) {
	f := PKI{CA: filepath.Join(dir, "vendor-ca.pem"), Cert: filepath.Join(dir, "vendor-cert.pem"), Key: filepath.Join(dir, "vendor-key.pem")}
	cert, caPEM, err := certificates(hosts)
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path string
		pem  []byte
	}{
		{f.CA, caPEM},
		{f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})},
		{f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})},
	} {
		if err := os.WriteFile(w.path, w.pem, 0o600); err != nil {
			return f, fmt.Errorf("vendor stub PKI: %w", err)
		}
	}
	return f, nil
}

// certificates makes a throwaway CA and a leaf for hosts (and 127.0.0.1).
func certificates(hosts []string) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Pare vendor stub CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "vendor stub"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     hosts,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
