package pipeline

import (
	"regexp"
	"strings"
	"testing"
)

// compactJWT is the shape tokenShape checks, written the other way: three
// base64url parts separated by dots (RFC 7515 compact serialisation).
var compactJWT = regexp.MustCompile(`^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$`)

// FuzzTokenShape: tokenShape accepts exactly the compact JWTs of at most
// maxToken bytes; nothing else (spaces, a fourth part, padding, other
// bytes) reaches the policy's signature check.
func FuzzTokenShape(f *testing.F) {
	for _, s := range []string{"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "a.b", "a.b.c.d", "a.b.c=", "Alice", "..", " a.b.c"} {
		f.Add(s)
	}
	f.Add(strings.Repeat("a", maxToken-4) + ".b.c") // the longest accepted
	f.Add(strings.Repeat("a", maxToken-3) + ".b.c")
	f.Fuzz(func(t *testing.T, s string) {
		err := tokenShape(s)
		if want := len(s) <= maxToken && compactJWT.MatchString(s); (err == nil) != want {
			t.Fatalf("tokenShape(%q) = %v, want accepted %v", s, err, want)
		}
	})
}
