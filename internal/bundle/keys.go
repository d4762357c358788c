package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"
)

// SigningKey is a private key in PEM with the JWT algorithm it signs with and
// the key id its signatures carry.
type SigningKey struct {
	pem   string
	alg   string
	keyID string
}

// Algorithm is the JWT algorithm (RS256, ES256, ES384 or ES512).
func (k *SigningKey) Algorithm() string { return k.alg }

// KeyID is the key id put in the signature's "kid" header: see KeyID.
func (k *SigningKey) KeyID() string { return k.keyID }

// ParseSigningKey reads a PEM private key (PKCS#1, PKCS#8 or SEC 1; RSA or
// ECDSA). The algorithm follows from the key, so that a sidecar holding the
// public key needs no setting that could disagree with the signer's.
func ParseSigningKey(pemBytes []byte) (*SigningKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("signing key: no PEM block found")
	}
	var (
		priv any
		err  error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("signing key: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key: %T is not a signing key", priv)
	}
	alg, err := algorithmFor(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	id, err := KeyID(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	// OPA's signer re-parses the PEM; hand it exactly the block we checked.
	return &SigningKey{pem: string(pem.EncodeToMemory(block)), alg: alg, keyID: id}, nil
}

// KeyID names a public key by its content: "sha256:" and the first 16 bytes
// (hex) of the SHA-256 of its PKIX encoding. Signer and verifier derive it
// from the key itself, so several verification keys (during a key rotation)
// need no naming scheme, and a signature names the key it needs.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:16]), nil
}

func algorithmFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
		return "", fmt.Errorf("ECDSA curve %s: want P-256, P-384 or P-521", k.Curve.Params().Name)
	}
	return "", fmt.Errorf("%T keys are not supported: want RSA or ECDSA", pub)
}

// PublicKey is a verification key read from a PEM file.
type PublicKey struct {
	Name string // where it came from, for errors
	PEM  []byte
}

// NewVerificationConfig returns OPA's verification configuration for the
// public keys: a bundle must carry a signature by one of them, chosen by the
// signature's key id. Each PEM holds one public key ("PUBLIC KEY" or "RSA
// PUBLIC KEY"); a private key or an HMAC secret is refused, because a secret
// present on every sidecar could sign bundles as well as check them.
func NewVerificationConfig(pubs ...PublicKey) (*opabundle.VerificationConfig, error) {
	if len(pubs) == 0 {
		return nil, errors.New("bundle verification: no public key configured (bundles must be signed)")
	}
	m := make(map[string]*keys.Config, len(pubs))
	for _, p := range pubs {
		block, rest := pem.Decode(p.PEM)
		if block == nil {
			return nil, fmt.Errorf("verification key %s: no PEM block found", p.Name)
		}
		if next, _ := pem.Decode(rest); next != nil {
			return nil, fmt.Errorf("verification key %s: more than one PEM block (give one key per file)", p.Name)
		}
		var (
			pub any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			return nil, fmt.Errorf("verification key %s: PEM block %q is not a public key", p.Name, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("verification key %s: %w", p.Name, err)
		}
		alg, err := algorithmFor(pub)
		if err != nil {
			return nil, fmt.Errorf("verification key %s: %w", p.Name, err)
		}
		id, err := KeyID(pub)
		if err != nil {
			return nil, fmt.Errorf("verification key %s: %w", p.Name, err)
		}
		if _, dup := m[id]; dup {
			return nil, fmt.Errorf("verification key %s: the same key is configured twice", p.Name)
		}
		m[id] = &keys.Config{Key: string(pem.EncodeToMemory(block)), Algorithm: alg}
	}
	// No KeyID: the signature's kid picks the key, and an unknown kid fails.
	return opabundle.NewVerificationConfig(m, "", "", nil), nil
}

// VerificationConfigFromFiles reads one PEM public key from each file (see
// NewVerificationConfig).
func VerificationConfigFromFiles(paths ...string) (*opabundle.VerificationConfig, error) {
	pubs := make([]PublicKey, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("verification key: %w", err)
		}
		pubs = append(pubs, PublicKey{Name: p, PEM: b})
	}
	return NewVerificationConfig(pubs...)
}
