package bundle_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/pare-dev/pare/internal/bundle"
	"github.com/pare-dev/pare/internal/engine"
)

// CI builds and signs the policies; a sidecar verifies the bundle and
// compiles it exactly as it would the directory.
func Example() {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)

	// CI: proxy bundle build policies/ --signing-key ci.pem -o bundle.tar.gz
	key, err := bundle.ParseSigningKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		panic(err)
	}
	var raw bytes.Buffer
	built, _, err := bundle.Build(context.Background(), os.DirFS("../../policies"), &raw, bundle.WriteOptions{Key: key})
	if err != nil {
		panic(err)
	}

	// A sidecar: proxy serve --bundle URL --bundle-key ci.pub.pem
	vc, err := bundle.NewVerificationConfig(bundle.PublicKey{Name: "ci.pub.pem", PEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})})
	if err != nil {
		panic(err)
	}
	p, contents, err := bundle.LoadPolicy(context.Background(), raw.Bytes(), vc, 0, engine.LoadOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("same revision as the directory:", p.Revision == built.Revision && contents.Revision == built.Revision)
	fmt.Println("vendors:", len(p.Vendors))
	// Output:
	// same revision as the directory: true
	// vendors: 7
}
