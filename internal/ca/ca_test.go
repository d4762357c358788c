package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/cputime"
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

// TestKeyMode: a supplied key readable by anyone but its owner is refused,
// except group read on a key owned by root — what Kubernetes makes of a
// Secret mounted for a non-root container with fsGroup (mode|0440, owner
// root), the only way such a container can read it.
func TestKeyMode(t *testing.T) {
	src := t.TempDir()
	if err := Generate(src, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(filepath.Join(src, CertFile))
	keyPEM, _ := os.ReadFile(filepath.Join(src, KeyFile))
	root := os.Getuid() == 0
	tests := []struct {
		mode      os.FileMode
		rootOwned bool
		ok        bool
	}{
		{0o600, false, true},
		{0o400, false, true},
		{0o640, false, false}, // the process's own user left it group-readable
		{0o644, false, false},
		{0o600, true, true},
		{0o640, true, true}, // a Secret with defaultMode 0600 and fsGroup
		{0o440, true, true}, // ... with defaultMode 0400
		{0o660, true, false},
		{0o650, true, false},
		{0o644, true, false},
		{0o604, true, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v root-owned=%v", tt.mode, tt.rootOwned), func(t *testing.T) {
			if tt.rootOwned != root && !root {
				t.Skip("needs root to own the file as root")
			}
			dir := t.TempDir()
			cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
			if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(key, keyPEM, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(key, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			if root && !tt.rootOwned {
				if err := os.Chown(key, 65532, 65532); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Open(Options{CertFile: cert, KeyFile: key})
			if tt.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "readable by others")) {
				t.Errorf("accepted, or refused for another reason: %v", err)
			}
		})
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
	defer cputime.Report(b)()
	for b.Loop() {
		if _, err := c.mint("api.stripe.com", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
