// Package ca owns Pare's local certificate authority for drop-in mode: the
// CA an app trusts so that Pare can terminate the TLS of its HTTPS_PROXY
// tunnels (and of transparently redirected connections) and minimise what
// is inside. It creates the CA on first start in a state directory (key
// mode 0600) or loads one the company supplies, and mints short-lived leaf
// certificates for vendor hosts on demand, cached until shortly before they
// expire.
//
// A generated CA is name-constrained (X.509 NameConstraints, RFC 5280
// 4.2.1.10) to the vendor hosts the contracts named when it was created:
// whoever steals its key can mint certificates for those vendors only, not
// for the company's bank or mail provider, because clients that verify name
// constraints (Go, OpenSSL 1.1+, browsers, Node, Python) reject the rest. The
// price: a vendor added later is outside the constraints, and its tunnels
// are refused until the CA is re-created (`proxy ca init --force`) and the
// apps trust the new one — or the CA is created unconstrained.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// File names inside the state directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// Defaults.
const (
	// DefaultLeafLifetime is how long a minted certificate is valid. Short:
	// a leaf key is kept in memory only, and nothing revokes it.
	DefaultLeafLifetime = 24 * time.Hour
	caLifetime          = 5 * 365 * 24 * time.Hour
)

// Options say where the CA comes from.
type Options struct {
	// StateDir holds ca.crt and ca.key; a CA is generated there when both
	// are missing. Ignored when CertFile and KeyFile are set.
	StateDir string
	// CertFile and KeyFile name a CA the company supplies (PEM). It is used
	// as it is: constrain it before handing it to Pare if it is not
	// dedicated to it.
	CertFile, KeyFile string
	// Hosts are the vendor hosts a generated CA is constrained to (exact
	// names and "*.suffix" wildcards, as in contracts). Empty: unconstrained.
	Hosts []string
	// LeafLifetime: 0 means DefaultLeafLifetime.
	LeafLifetime time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// CA mints leaf certificates. Safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	certPEM  []byte
	key      crypto.Signer
	lifetime time.Duration
	now      func() time.Time
	// Generated says whether the CA was created by this call to Open.
	Generated bool

	leafKey *ecdsa.PrivateKey // one key for every leaf: minting is then a signature, not a key generation
	mu      sync.Mutex
	cache   map[string]*tls.Certificate
	group   singleflight.Group
}

// Open loads the CA, or generates it in opt.StateDir when there is none.
func Open(opt Options) (*CA, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.LeafLifetime <= 0 {
		opt.LeafLifetime = DefaultLeafLifetime
	}
	certFile, keyFile := opt.CertFile, opt.KeyFile
	generated := false
	switch {
	case certFile != "" || keyFile != "":
		if certFile == "" || keyFile == "" {
			return nil, errors.New("ca: --ca-cert and --ca-key go together")
		}
	case opt.StateDir == "":
		return nil, errors.New("ca: no state directory and no --ca-cert/--ca-key")
	default:
		certFile, keyFile = filepath.Join(opt.StateDir, CertFile), filepath.Join(opt.StateDir, KeyFile)
		_, errC := os.Stat(certFile)
		_, errK := os.Stat(keyFile)
		switch {
		case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
			if err := Generate(opt.StateDir, opt.Hosts, opt.Now()); err != nil {
				return nil, err
			}
			generated = true
		case errC != nil || errK != nil:
			return nil, fmt.Errorf("ca: %s and %s must both exist (or neither, to generate them): %w", certFile, keyFile, errors.Join(errC, errK))
		}
	}
	c, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.lifetime, c.now, c.Generated = opt.LeafLifetime, opt.Now, generated
	return c, nil
}

// Generate writes a new CA to dir (ca.crt 0644, ca.key 0600), constrained to
// hosts when there are any. Existing files are replaced.
func Generate(dir string, hosts []string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ca: state directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca: generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Pare"}, CommonName: "Pare drop-in CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	if len(hosts) > 0 {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = Constraints(hosts)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("ca: create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: encode key: %w", err)
	}
	// Key first, atomically: a crash leaves no certificate without its key.
	if err := writeAtomic(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// Constraints turns contract hosts into permitted DNS subtrees: an exact
// host permits itself (and names below it — X.509 subtrees cannot say
// "exactly this name"), "*.example.com" permits the names below
// example.com (".example.com"). Sorted, without duplicates.
func Constraints(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			h = "." + rest
		}
		if h != "" && h != "." && !strings.Contains(h, "*") {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func writeAtomic(name string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

func load(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if st, err := os.Stat(keyFile); err == nil {
		if err := checkKeyMode(keyFile, st); err != nil {
			return nil, err
		}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %s, %s: %w", certFile, keyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: %s is not a CA certificate (basic constraints CA and key usage certSign are needed)", certFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s: the key cannot sign", keyFile)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate leaf key: %w", err)
	}
	first, _ := pem.Decode(certPEM)
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(first), key: signer, leafKey: leafKey,
		cache: map[string]*tls.Certificate{}}, nil
}

// CertPEM is the CA certificate apps must trust.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Certificate is the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Permits reports whether the CA's name constraints allow a certificate for
// host: a leaf outside them would be rejected by every client that checks.
func (c *CA) Permits(host string) bool {
	if len(c.cert.PermittedDNSDomains) == 0 {
		return true
	}
	for _, d := range c.cert.PermittedDNSDomains {
		if strings.HasPrefix(d, ".") {
			if strings.HasSuffix(host, d) {
				return true
			}
		} else if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// Leaf returns a certificate for host, minted on first use and cached until
// a quarter of its lifetime remains. Concurrent first uses mint once.
func (c *CA) Leaf(host string) (*tls.Certificate, error) {
	now := c.now()
	c.mu.Lock()
	cert, ok := c.cache[host]
	c.mu.Unlock()
	if ok && now.Before(cert.Leaf.NotAfter.Add(-c.lifetime/4)) {
		return cert, nil
	}
	v, err, _ := c.group.Do(host, func() (any, error) {
		cert, err := c.mint(host, now)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if len(c.cache) >= maxCached {
			clear(c.cache) // hosts come from contracts: this only trims stale names
		}
		c.cache[host] = cert
		c.mu.Unlock()
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tls.Certificate), nil
}

// maxCached bounds the leaf cache; contracts name far fewer hosts.
const maxCached = 4096

func (c *CA) mint(host string, now time.Time) (*tls.Certificate, error) {
	if !c.Permits(host) {
		return nil, fmt.Errorf("ca: %s is outside the CA's name constraints %v: re-create the CA (proxy ca init --force) for new vendors", host, c.cert.PermittedDNSDomains)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-5 * time.Minute), // clock skew between Pare and the app
		NotAfter:     now.Add(c.lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &c.leafKey.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: mint %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: mint %s: %w", host, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: c.leafKey, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
