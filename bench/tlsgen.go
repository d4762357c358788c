package bench

import (
	"crypto/x509"
	"fmt"
	"os"

	"github.com/pare-dev/pare/internal/vendorstub"
)

// Vendor hosts of the workload; the stub's certificate names all of them.
var stubHosts = []string{"api.stripe.com", "webinarco.zendesk.com", "www.eventbriteapi.com", mailchimpHost, "localhost"}

// writeStubPKI writes the run's throw-away PKI for the vendor hosts: the
// same generator the demo's and the e2e tests' stubs use.
func writeStubPKI(dir string) (vendorstub.PKI, error) {
	return vendorstub.WritePKI(stubHosts, dir)
}

// caPool reads a PEM file into a certificate pool.
func caPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return p, nil
}
