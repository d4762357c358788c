package engine

import (
	"bytes"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/pare-dev/pare/filters"
)

// FuzzParseDecision: whatever a policy returns, parseDecision yields a
// complete decision or an error — never a panic, never an allowed decision
// without a vendor and a compiled mask.
func FuzzParseDecision(f *testing.F) {
	f.Add(`{"allow": true, "vendor": "v", "fields": ["a", "b/*/c"], "transforms": {"d": "hmac"}, "headers": ["X"], "query": ["q"], "cards": "redact", "port": 8443}`)
	f.Add(`{"allow": false, "code": "consent_required", "reason": "r"}`)
	f.Add(`{"allow": true, "vendor": "v", "fieldz": []}`)
	f.Add(`{"allow": true, "vendor": "v", "port": 1e9, "body": "opaque", "tls": false, "cards": "allow"}`)
	f.Add(`[1, 2]`)
	f.Fuzz(func(t *testing.T, s string) {
		var v any
		if err := util.NewJSONDecoder(bytes.NewReader([]byte(s))).Decode(&v); err != nil {
			return
		}
		val, err := ast.InterfaceToValue(v)
		if err != nil {
			return
		}
		d, err := parseDecision(val, func(string) []byte { return []byte("key") }, nil)
		if err != nil {
			return
		}
		if d.Allow && (d.Vendor == "" || d.mask == nil) {
			t.Fatalf("allowed decision without vendor or mask: %+v", d)
		}
		if !d.Allow && d.Code == "" {
			t.Fatalf("refusal without a code: %+v", d)
		}
		if d.Allow && !d.TLS && d.opts.Cards == filters.CardsAllow {
			t.Fatal("card numbers allowed without TLS")
		}
	})
}
