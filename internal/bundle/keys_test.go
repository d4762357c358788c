package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// testKey is a key pair in PEM, as an operator would keep it in two files.
type testKey struct {
	priv, pub []byte
	signing   *SigningKey
}

func newECKey(t testing.TB) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pemPair(t, k, &k.PublicKey)
}

func pemPair(t testing.TB, priv any, pub any) testKey {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	tk := testKey{
		priv: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pub:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	}
	tk.signing, err = ParseSigningKey(tk.priv)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestParseSigningKey(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	ecDER, _ := x509.MarshalECPrivateKey(p384)
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	weakDER := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weakRSA)})
	p224DER, _ := x509.MarshalECPrivateKey(p224)
	pub := newECKey(t).pub

	tests := []struct {
		name    string
		pem     []byte
		alg     string
		wantErr string
	}{
		{"rsa pkcs1", pkcs1, "RS256", ""},
		{"ec p384 sec1", sec1, "ES384", ""},
		{"ec p256 pkcs8", newECKey(t).priv, "ES256", ""},
		{"rsa 1024 refused", weakDER, "", "at least 2048"},
		{"p224 refused", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p224DER}), "", "P-224"},
		{"public key is not a signing key", pub, "", "not a private key"},
		{"not PEM", []byte("secret"), "", "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseSigningKey(tt.pem)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != tt.alg || !strings.HasPrefix(k.KeyID(), "sha256:") || len(k.KeyID()) != 39 {
				t.Fatalf("alg %s kid %s, want %s and sha256:<32 hex>", k.Algorithm(), k.KeyID(), tt.alg)
			}
		})
	}
}

func TestNewVerificationConfig(t *testing.T) {
	a, b := newECKey(t), newECKey(t)
	vc, err := NewVerificationConfig(PublicKey{"a.pem", a.pub}, PublicKey{"b.pem", b.pub})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []testKey{a, b} {
		if _, err := vc.GetPublicKey(k.signing.KeyID()); err != nil {
			t.Errorf("key %s not configured: %v", k.signing.KeyID(), err)
		}
	}
	bad := []struct {
		name string
		keys []PublicKey
		want string
	}{
		{"none", nil, "no public key"},
		{"private key", []PublicKey{{"k.pem", a.priv}}, "k.pem: PEM block \"PRIVATE KEY\" is not a public key"},
		{"hmac secret", []PublicKey{{"k", []byte("shared-secret")}}, "k: no PEM block"},
		{"two blocks", []PublicKey{{"k.pem", append(append([]byte{}, a.pub...), b.pub...)}}, "more than one PEM block"},
		{"twice", []PublicKey{{"a.pem", a.pub}, {"a2.pem", a.pub}}, "a2.pem: the same key is configured twice"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerificationConfig(tt.keys...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
