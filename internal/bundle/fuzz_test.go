package bundle

import (
	"bytes"
	"io/fs"
	"os"
	"testing"
	"testing/fstest"
)

// fuzzKey signs the seed bundles under testdata/fuzz/FuzzRead, so that the
// fuzzer starts from bundles that verify and mutates them from there.
const fuzzKeyFile = "testdata/fuzz-key.pem"

// FuzzRead feeds arbitrary bytes to Read: gzip, tar, the manifest and the
// signatures' JSON and JWT are all parsed from them. It must never panic,
// and whatever it accepts must be a set of plain paths.
func FuzzRead(f *testing.F) {
	priv, err := os.ReadFile(fuzzKeyFile)
	if err != nil {
		f.Fatal(err)
	}
	key, err := ParseSigningKey(priv)
	if err != nil {
		f.Fatal(err)
	}
	pubPEM, err := os.ReadFile(fuzzKeyFile + ".pub")
	if err != nil {
		f.Fatal(err)
	}
	vc, err := NewVerificationConfig(PublicKey{Name: "fuzz", PEM: pubPEM})
	if err != nil {
		f.Fatal(err)
	}
	small := fstest.MapFS{
		"egress.rego":           {Data: []byte("package egress\n\ndecision := {\"allow\": false}\n")},
		"contracts/stripe.yaml": {Data: []byte("stripe:\n  name: Stripe\n")},
	}
	var buf bytes.Buffer
	if err := Write(&buf, small, []string{"egress.rego", "contracts/stripe.yaml"}, WriteOptions{Key: key, Revision: "r"}); err != nil {
		f.Fatal(err)
	}
	if _, err := Read(buf.Bytes(), vc, 1<<20); err != nil {
		f.Fatalf("the seed bundle does not verify: %v", err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Read(raw, vc, 1<<20)
		if err != nil {
			return
		}
		for _, name := range c.Names {
			if !fs.ValidPath(name) {
				t.Fatalf("accepted invalid path %q", name)
			}
			if _, err := fs.ReadFile(c.Files, name); err != nil {
				t.Fatalf("%s listed but unreadable: %v", name, err)
			}
		}
	})
}
