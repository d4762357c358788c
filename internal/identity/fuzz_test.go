package identity

import (
	"encoding/json"
	"testing"

	"github.com/pare-dev/pare/internal/idptest"
)

// FuzzCheckJWKS: whatever the document (it comes from a URL), checkJWKS
// does not panic, and what it accepts is, read independently with
// encoding/json, one or more public keys of an asymmetric algorithm: no
// "oct" key and no private member ("d", "p", "q", "k").
func FuzzCheckJWKS(f *testing.F) {
	idp, err := idptest.New("k1", "https://idp.example", "pare-legal")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(idptest.JWKS(idp))
	f.Add([]byte(`{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`))
	f.Add([]byte(`{"kty": "EC", "crv": "P-256", "x": "01m8hPxKfuXwI33xIYvvGOlUZDmnWvK_2p3ANWFTz4Y", "y": "TEnGtIBv-KZtbU-SOQwIaZJPC2U6EvECvVG9o_Qp31Q"}`))
	f.Add([]byte(`{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		n, err := checkJWKS(doc)
		if err != nil {
			return
		}
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		if json.Unmarshal(doc, &set) != nil {
			t.Fatalf("accepted %d keys in a document encoding/json refuses: %q", n, doc)
		}
		keys := set.Keys
		if keys == nil {
			var one map[string]any
			if json.Unmarshal(doc, &one) != nil {
				t.Fatalf("accepted %q", doc)
			}
			keys = []map[string]any{one}
		}
		if n < 1 || n != len(keys) {
			t.Fatalf("accepted %d keys, the document holds %d: %q", n, len(keys), doc)
		}
		for _, k := range keys {
			if k["kty"] == "oct" {
				t.Fatalf("accepted a symmetric key: %q", doc)
			}
			for _, m := range []string{"d", "p", "q", "k"} {
				if _, ok := k[m]; ok {
					t.Fatalf("accepted a key with private member %q: %q", m, doc)
				}
			}
		}
	})
}
