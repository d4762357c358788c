package pipeline

import (
	"strings"
	"testing"

	"github.com/pare-dev/pare/filters"
)

// TestGuardPathDigests: a hex digest in a path segment (Mailchimp's member
// hash) is not a card number, even when a Luhn-valid run with a scheme's
// prefix hides in it; a card number anywhere else in the path still is.
func TestGuardPathDigests(t *testing.T) {
	for _, tc := range []struct {
		path string
		card bool
	}{
		// Met by the bench's realistic mix: "348568583812752" is an Amex
		// window of the digest's last digit run.
		{"/3.0/lists/l0/members/0a94c8a214124fae3485685838127521", false},
		{"/3.0/lists/l0/members/0a94c8a214124fae3485685838127521/notes", false},
		{"/v1/objects/da39a3ee5e6b4b0d3255bfef95601890afd80709", false},                       // SHA-1
		{"/v1/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false}, // SHA-256
		{"/3.0/lists/l0/members/4111111111111111", true},                                      // a card number
		{"/3.0/lists/l0/members/41111111111111114111111111111111", true},                      // 32 digits, no letter: not a digest
		{"/3.0/lists/l0/members/0A94C8A214124FAE3485685838127521", true},                      // upper case: not the digests vendors use
		{"/3.0/lists/l0/members/0a94c8a214124fae3485685838127521a", true},                     // 33 characters
		{"/3.0/lists/4111 1111 1111 1111/members/0a94c8a214124fae3485685838127521", true},     // a card beside a digest
		{"/3.0/lists/4111/1111/1111/1111/0a94c8a214124fae3485685838127521", true},             // across segments
		{"/3.0/lists/l0/members/0a94c8a214124fae3485685838127521/4111-1111-1111-1111", true},  // after one
	} {
		if got := hasCardOutsideDigests(tc.path); got != tc.card {
			t.Errorf("%s: card number found %v, want %v", tc.path, got, tc.card)
		}
	}
}

// The same for header values: S3-style uploads carry the body's SHA-256
// in x-amz-content-sha256, an ETag is an MD5 in quotes.
func TestGuardHeaderDigests(t *testing.T) {
	sha := "abcdef4111111111111111" + strings.Repeat("ab", 21) // 64 hex characters, a Luhn-valid Visa run inside
	for _, tc := range []struct {
		value string
		card  bool
	}{
		{sha, false},
		{`"0a94c8a214124fae3485685838127521"`, false},
		{`W/"0a94c8a214124fae3485685838127521"`, false},
		{"/members/0a94c8a214124fae3485685838127521.json", false},
		{"4111 1111 1111 1111", true},
		{sha + " 4111-1111-1111-1111", true},
		{sha + "0", true},                          // 65 characters: not a digest
		{strings.ToUpper(sha), true},               // upper case: not the digests vendors send
		{"x" + sha, true},                          // a longer token
		{"41111111111111114111111111111111", true}, // 32 digits, no letter
	} {
		if got := hasCardOutsideDigests(tc.value); got != tc.card {
			t.Errorf("%q: card number found %v, want %v", tc.value, got, tc.card)
		}
	}
}

// FuzzDigestExemption: leaving digests out never finds a card number the
// detector does not find in the whole text, and changes nothing for text
// without a digest token; the text it scans instead is never longer.
func FuzzDigestExemption(f *testing.F) {
	for _, s := range []string{
		"/3.0/lists/l0/members/0a94c8a214124fae3485685838127521",
		"abcdef4111111111111111" + strings.Repeat("ab", 21),
		`W/"0a94c8a214124fae3485685838127521"`,
		"4111 1111 1111 1111",
		"/4111/1111/1111/1111/0a94c8a214124fae3485685838127521",
		"０a94c8a214124fae3485685838127521４１１１",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw, _ := filters.CardIndexString(s)
		got := hasCardOutsideDigests(s)
		if got && raw < 0 {
			t.Fatalf("%q: a card number outside digests, none in the whole text", s)
		}
		w := withoutDigests(s)
		if len(w) > len(s) {
			t.Fatalf("%q: the text scanned instead is longer: %q", s, w)
		}
		if w == s && got != (raw >= 0) {
			t.Fatalf("%q: no digest, yet the answers differ", s)
		}
	})
}
