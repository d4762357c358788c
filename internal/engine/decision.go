package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/pare-dev/pare/filters"
)

// BodyMode says what happens to a request body.
type BodyMode string

const (
	BodyFilter BodyMode = "filter" // parse and mask (default)
	BodyOpaque BodyMode = "opaque" // forward unchanged: an explicit per-route permission
	BodyNone   BodyMode = "none"   // drop the body
)

// Decision is a validated data.egress.decision plus what is compiled from it
// (the field mask). Decisions are shared between requests through the cache:
// never modify one.
type Decision struct {
	Allow      bool              `json:"allow"`
	Vendor     string            `json:"vendor"`
	Reason     string            `json:"reason"`
	Code       Code              `json:"code,omitempty"`
	Fields     []string          `json:"fields"`
	Transforms map[string]string `json:"transforms"`
	Headers    []string          `json:"headers"`
	Query      []string          `json:"query"`
	Body       BodyMode          `json:"body"`
	Cards      string            `json:"cards"`
	TLS        bool              `json:"tls"`
	Port       int               `json:"port"`
	DryRun     bool              `json:"dry_run"`

	Revision string `json:"revision"`

	mask    *filters.Mask
	opts    filters.Options
	headers []string // Headers, lower-cased
}

// Refusal returns the decision as an *Error when it does not allow the request.
func (d *Decision) Refusal() *Error {
	if d.Allow {
		return nil
	}
	return &Error{Code: d.Code, Reason: d.Reason}
}

var decisionKeys = map[string]bool{
	"allow": true, "vendor": true, "reason": true, "code": true, "fields": true,
	"transforms": true, "headers": true, "query": true, "body": true, "cards": true,
	"tls": true, "port": true, "dry_run": true,
}

// parseDecision validates what the policy returned. Anything unexpected is an
// error, never a partial decision: a misspelled key that was silently
// ignored would be a leak.
func parseDecision(v any, hmacMaster []byte) (*Decision, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decision is %s, want an object", typeName(v))
	}
	var problems []string
	bad := func(f string, args ...any) { problems = append(problems, fmt.Sprintf(f, args...)) }
	for k := range m {
		if !decisionKeys[k] {
			bad("unknown key %q", k)
		}
	}
	d := &Decision{Body: BodyFilter, TLS: true}
	getBool := func(k string, dst *bool) {
		if x, ok := m[k]; ok {
			if b, ok := x.(bool); ok {
				*dst = b
			} else {
				bad("%s is %s, want a boolean", k, typeName(x))
			}
		}
	}
	getString := func(k string, dst *string) {
		if x, ok := m[k]; ok {
			if s, ok := x.(string); ok {
				*dst = s
			} else {
				bad("%s is %s, want a string", k, typeName(x))
			}
		}
	}
	getStrings := func(k string) []string {
		x, ok := m[k]
		if !ok {
			return nil
		}
		arr, ok := x.([]any)
		if !ok {
			bad("%s is %s, want an array of strings", k, typeName(x))
			return nil
		}
		out := make([]string, 0, len(arr))
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				bad("%s[%d] is %s, want a string", k, i, typeName(e))
				continue
			}
			out = append(out, s)
		}
		return out
	}
	if _, ok := m["allow"]; !ok {
		bad("allow is missing")
	}
	getBool("allow", &d.Allow)
	getString("vendor", &d.Vendor)
	getString("reason", &d.Reason)
	var code string
	getString("code", &code)
	d.Fields = getStrings("fields")
	d.Headers = getStrings("headers")
	d.Query = getStrings("query")
	var body string
	getString("body", &body)
	getString("cards", &d.Cards)
	getBool("tls", &d.TLS)
	getBool("dry_run", &d.DryRun)
	if x, ok := m["transforms"]; ok {
		tm, ok := x.(map[string]any)
		if !ok {
			bad("transforms is %s, want an object", typeName(x))
		}
		d.Transforms = make(map[string]string, len(tm))
		for p, t := range tm {
			s, ok := t.(string)
			if !ok {
				bad("transforms[%q] is %s, want a string", p, typeName(t))
				continue
			}
			d.Transforms[p] = s
		}
	}
	if x, ok := m["port"]; ok {
		n, ok := x.(json.Number)
		port, err := n.Int64()
		if !ok || err != nil || port < 1 || port > 65535 {
			bad("port is %v, want an integer 1-65535", x)
		}
		d.Port = int(port)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("malformed decision: %s", strings.Join(problems, "; "))
	}

	switch BodyMode(body) {
	case "", BodyFilter:
		d.Body = BodyFilter
	case BodyOpaque, BodyNone:
		d.Body = BodyMode(body)
	default:
		return nil, fmt.Errorf("malformed decision: body %q, want filter, opaque or none", body)
	}
	if d.Port == 0 {
		d.Port = 443
		if !d.TLS {
			d.Port = 80
		}
	}
	if !d.Allow {
		d.Code = Code(code)
		if d.Code == "" || !policyCodes[d.Code] {
			d.Code = CodeDenied
		}
		if d.Reason == "" {
			d.Reason = "denied by policy"
		}
		return d, nil
	}
	if d.Vendor == "" {
		return nil, fmt.Errorf("malformed decision: allow without a vendor")
	}
	cards, err := filters.ParseCardGuard(d.Cards)
	if err != nil {
		return nil, fmt.Errorf("malformed decision: cards: %w", err)
	}
	// Card numbers leave only over TLS, whatever a decision says.
	if cards == filters.CardsAllow && !d.TLS {
		cards = filters.CardsBlock
	}
	mask, err := filters.Compile(d.Fields, d.Transforms)
	if err != nil {
		return nil, fmt.Errorf("malformed decision: %w", err)
	}
	d.mask = mask
	d.opts = filters.Options{HMACKey: vendorKey(hmacMaster, d.Vendor), Cards: cards}
	d.headers = make([]string, len(d.Headers))
	for i, h := range d.Headers {
		d.headers[i] = strings.ToLower(h)
	}
	return d, nil
}

// vendorKey derives the vendor's own HMAC key, so that two vendors receive
// different pseudonyms for the same value and cannot join on them.
func vendorKey(master []byte, vendor string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("pare/hmac/v1/"))
	m.Write([]byte(vendor))
	return m.Sum(nil)
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
