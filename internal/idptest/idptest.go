// Package idptest is a stand-in for the company's identity provider in
// tests: an ECDSA P-256 key, its JWKS, and tokens (JWS compact, ES256)
// signed with it — with whatever claims and header a test needs, expired or
// malformed ones included. Standard library only, and independent of OPA's
// JWT code, which is what it tests.
package idptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Provider signs tokens for one issuer and audience.
type Provider struct {
	Key      *ecdsa.PrivateKey
	KID      string
	Issuer   string
	Audience string
	// TTL is the lifetime of Token's tokens (default 10 minutes).
	TTL time.Duration
}

// New returns a provider with a fresh key.
func New(kid, issuer, audience string) (*Provider, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Provider{Key: k, KID: kid, Issuer: issuer, Audience: audience, TTL: 10 * time.Minute}, nil
}

var b64 = base64.RawURLEncoding

// JWK is the provider's public key as a JWK.
func (p *Provider) JWK() map[string]any {
	pub, err := p.Key.PublicKey.ECDH()
	if err != nil {
		panic(err) // a P-256 key always converts
	}
	raw := pub.Bytes() // 0x04 || X || Y
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": p.KID, "alg": "ES256", "use": "sig",
		"x": b64.EncodeToString(raw[1:33]), "y": b64.EncodeToString(raw[33:])}
}

// JWKS is a key set of the providers' public keys.
func JWKS(ps ...*Provider) []byte {
	keys := make([]any, len(ps))
	for i, p := range ps {
		keys[i] = p.JWK()
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// Token is a token for sub with the provider's issuer and audience, issued
// now and valid for TTL; claims override or add claims, a nil value
// removes one.
func (p *Provider) Token(sub string, claims map[string]any) string {
	now := time.Now()
	c := map[string]any{"sub": sub, "iss": p.Issuer, "aud": p.Audience, "iat": now.Unix(), "exp": now.Add(p.TTL).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return p.Sign(map[string]any{"alg": "ES256", "typ": "JWT", "kid": p.KID}, c)
}

// Sign signs claims under header with the provider's key (ES256, whatever
// the header says).
func (p *Provider) Sign(header, claims map[string]any) string {
	h, err := json.Marshal(header)
	if err != nil {
		panic(fmt.Sprintf("idptest: header: %v", err))
	}
	c, err := json.Marshal(claims)
	if err != nil {
		panic(fmt.Sprintf("idptest: claims: %v", err))
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, p.Key, sum[:])
	if err != nil {
		panic(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}
