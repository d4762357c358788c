package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var hosts = []string{"api.stripe.com", "*.zendesk.com", "us21.api.mailchimp.com"}

func open(t *testing.T, dir string, now time.Time) *CA {
	t.Helper()
	c, err := Open(Options{StateDir: dir, Hosts: hosts, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verify(c *CA, host string, now time.Time) error {
	leaf, err := c.Leaf(host)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())
	_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: now})
	return err
}

func TestGenerateAndMint(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c := open(t, dir, now)
	if !c.Generated {
		t.Fatal("first Open did not generate the CA")
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	for _, h := range []string{"api.stripe.com", "webinarco.zendesk.com", "us21.api.mailchimp.com"} {
		if err := verify(c, h, now); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	// Reopening loads the same CA.
	c2 := open(t, dir, now)
	if c2.Generated || string(c2.CertPEM()) != string(c.CertPEM()) {
		t.Fatal("second Open did not load the CA the first one generated")
	}
	// Cached: the same certificate, until a quarter of its life is left.
	a, _ := c.Leaf("api.stripe.com")
	b, _ := c.Leaf("api.stripe.com")
	if a != b {
		t.Error("the leaf was minted twice")
	}
	c.now = func() time.Time { return now.Add(DefaultLeafLifetime * 7 / 8) }
	if d, _ := c.Leaf("api.stripe.com"); d == a {
		t.Error("a leaf near its expiry was served from the cache")
	}
}

// A stolen CA key cannot vouch for hosts outside the contracts: Pare refuses
// to mint them, and a certificate minted with the key anyway fails
// verification because of the name constraints.
func TestNameConstraints(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c := open(t, dir, now)
	if _, err := c.Leaf("bank.example"); err == nil || !strings.Contains(err.Error(), "name constraints") {
		t.Fatalf("Leaf(bank.example) = %v, want a name-constraint refusal", err)
	}
	// Forge with the key directly, as a thief would.
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "bank.example"},
		DNSNames: []string{"bank.example"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &c.leafKey.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())
	if _, err := forged.Verify(x509.VerifyOptions{DNSName: "bank.example", Roots: roots, CurrentTime: now}); err == nil {
		t.Fatal("a certificate for a host outside the constraints verified")
	}
	for _, h := range []string{"api.stripe.com", "eu.zendesk.com"} {
		if !c.Permits(h) {
			t.Errorf("Permits(%s) = false", h)
		}
	}
	if c.Permits("stripe.com") || c.Permits("zendesk.com.evil.example") {
		t.Error("Permits accepts a host outside the constraints")
	}
}

func TestConstraints(t *testing.T) {
	got := Constraints([]string{"API.Stripe.com.", "*.zendesk.com", "api.stripe.com", "*."})
	want := []string{".zendesk.com", "api.stripe.com"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Constraints = %v, want %v", got, want)
	}
}

func TestSuppliedCA(t *testing.T) {
	gen := t.TempDir()
	if err := Generate(gen, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	c, err := Open(Options{CertFile: filepath.Join(gen, CertFile), KeyFile: filepath.Join(gen, KeyFile), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Generated {
		t.Fatal("a supplied CA was reported as generated")
	}
	if !c.Permits("anything.example") {
		t.Fatal("an unconstrained CA refuses a host")
	}
	if err := verify(c, "anything.example", time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, hosts, time.Now()); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	if _, err := Open(Options{StateDir: dir}); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("loose key mode: %v", err)
	}
	os.Chmod(filepath.Join(dir, KeyFile), 0o600)
	os.Remove(filepath.Join(dir, CertFile))
	if _, err := Open(Options{StateDir: dir}); err == nil || !strings.Contains(err.Error(), "must both exist") {
		t.Errorf("key without certificate: %v", err)
	}
	if _, err := Open(Options{CertFile: "x"}); err == nil {
		t.Error("--ca-cert without --ca-key accepted")
	}
	leafOnly := t.TempDir()
	os.WriteFile(filepath.Join(leafOnly, "junk.crt"), []byte("not pem"), 0o644)
	os.WriteFile(filepath.Join(leafOnly, "junk.key"), []byte("not pem"), 0o600)
	if _, err := Open(Options{CertFile: filepath.Join(leafOnly, "junk.crt"), KeyFile: filepath.Join(leafOnly, "junk.key")}); err == nil {
		t.Error("garbage CA files accepted")
	}
}

func TestConcurrentMintOnce(t *testing.T) {
	c := open(t, t.TempDir(), time.Now())
	var wg sync.WaitGroup
	certs := make(chan any, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.Leaf("api.stripe.com")
			if err != nil {
				t.Error(err)
			}
			certs <- l
		}()
	}
	wg.Wait()
	close(certs)
	var first any
	for l := range certs {
		if first == nil {
			first = l
		} else if l != first {
			t.Fatal("concurrent first uses minted more than one certificate")
		}
	}
}

// BenchmarkMint is the first tunnel to a host's extra work: one leaf
// certificate signed by the CA (ECDSA P-256) and parsed back. cpu-ns/op is
// the process's CPU per mint, which waiting for a core on a shared machine
// does not inflate.
func BenchmarkMint(b *testing.B) {
	c, err := Open(Options{StateDir: b.TempDir(), Hosts: hosts})
	if err != nil {
		b.Fatal(err)
	}
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := c.mint("api.stripe.com", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
