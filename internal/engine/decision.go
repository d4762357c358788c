package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

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
	Allow  bool   `json:"allow"`
	Vendor string `json:"vendor"`
	Reason string `json:"reason"`
	Code   Code   `json:"code,omitempty"`
	// Route is the path glob of the contract route that matched ("" when
	// none did): what a ledger records instead of a concrete path.
	Route      string            `json:"route"`
	Fields     []string          `json:"fields"`
	Transforms map[string]string `json:"transforms"`
	Headers    []string          `json:"headers"`
	Query      []string          `json:"query"`
	Body       BodyMode          `json:"body"`
	Cards      string            `json:"cards"`
	// CardsCode is the refusal code when the card guard finds a card number
	// it blocks: card_number (the default: the vendor may not receive card
	// data), or source_not_allowed (the vendor may, but need-to-know does
	// not let this service send it).
	CardsCode Code `json:"cards_code,omitempty"`
	TLS       bool `json:"tls"`
	Port      int  `json:"port"`
	DryRun    bool `json:"dry_run"`
	// Identities are the people of a legal request as the policy verified
	// them (the subjects of the identity provider's tokens), nil when the
	// policy does not say: what a ledger records instead of the tokens.
	Identities *Identities `json:"identities,omitempty"`

	Revision string `json:"revision"`

	size    int64 // decisionSize, for the cache's accounting
	mask    *filters.Mask
	opts    filters.Options
	headers []string // Headers, lower-cased
}

// CardGuard is what the card guard does with a card number in anything
// that leaves under d.
func (d *Decision) CardGuard() filters.CardGuard { return d.opts.Cards }

// CardRefusal is the refusal of a request in which the card guard found a
// card number it blocks; where says where ("the URL path", "header
// x-note", ...).
func (d *Decision) CardRefusal(where string, err error) *Error {
	if d.CardsCode == CodeSourceNotAllowed {
		return refuse(CodeSourceNotAllowed, err,
			"a card number was found in %s; need-to-know does not let this service send card data to %s", where, d.Vendor)
	}
	return refuse(CodeCardNumber, err, "a card number was found in %s; %s is not allowed to receive card data", where, d.Vendor)
}

// Refusal returns the decision as an *Error when it does not allow the request.
func (d *Decision) Refusal() *Error {
	if d.Allow {
		return nil
	}
	return &Error{Code: d.Code, Reason: d.Reason}
}

// Identities are the verified requester and approver of a legal request;
// "" for one the policy could not verify.
type Identities struct {
	Requester string `json:"requester"`
	Approver  string `json:"approver"`
}

// maxIdentity bounds a verified identity: a token's subject is an id or an
// address, and it goes into every ledger record of the request.
const maxIdentity = 256

var decisionKeys = map[string]bool{
	"allow": true, "vendor": true, "reason": true, "code": true, "route": true, "fields": true,
	"transforms": true, "headers": true, "query": true, "body": true, "cards": true,
	"cards_code": true, "tls": true, "port": true, "dry_run": true, "identities": true,
}

// parseDecision validates what the policy returned, read straight from the
// AST value the evaluator produced. Anything unexpected is an error, never a
// partial decision: a misspelled key that was silently ignored would be a
// leak. keyFor gives a vendor's HMAC key; masks, when not nil, supplies
// compiled masks (Policy.masks).
func parseDecision(v ast.Value, keyFor func(vendor string) []byte, masks *maskCache) (*Decision, error) {
	m, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision is %s, want an object", typeName(v))
	}
	var problems []string
	bad := func(f string, args ...any) { problems = append(problems, fmt.Sprintf(f, args...)) }
	var (
		d                       = &Decision{Body: BodyFilter, TLS: true}
		code, body              string
		seenAllow               bool
		fields, headers, querys ast.Value
		transforms, port        ast.Value
		identities              ast.Value
	)
	getBool := func(k string, x ast.Value, dst *bool) {
		if b, ok := x.(ast.Boolean); ok {
			*dst = bool(b)
		} else {
			bad("%s is %s, want a boolean", k, typeName(x))
		}
	}
	getString := func(k string, x ast.Value, dst *string) {
		if s, ok := x.(ast.String); ok {
			*dst = string(s)
		} else {
			bad("%s is %s, want a string", k, typeName(x))
		}
	}
	m.Foreach(func(kt, vt *ast.Term) {
		ks, ok := kt.Value.(ast.String)
		if !ok || !decisionKeys[string(ks)] {
			bad("unknown key %s", kt.Value.String())
			return
		}
		x := vt.Value
		switch k := string(ks); k {
		case "allow":
			seenAllow = true
			getBool(k, x, &d.Allow)
		case "vendor":
			getString(k, x, &d.Vendor)
		case "reason":
			getString(k, x, &d.Reason)
		case "code":
			getString(k, x, &code)
		case "route":
			getString(k, x, &d.Route)
		case "fields":
			fields = x
		case "headers":
			headers = x
		case "query":
			querys = x
		case "body":
			getString(k, x, &body)
		case "cards":
			getString(k, x, &d.Cards)
		case "cards_code":
			var c string
			getString(k, x, &c)
			d.CardsCode = Code(c)
		case "tls":
			getBool(k, x, &d.TLS)
		case "dry_run":
			getBool(k, x, &d.DryRun)
		case "transforms":
			transforms = x
		case "port":
			port = x
		case "identities":
			identities = x
		}
	})
	getStrings := func(k string, x ast.Value) []string {
		if x == nil {
			return nil
		}
		arr, ok := x.(*ast.Array)
		if !ok {
			bad("%s is %s, want an array of strings", k, typeName(x))
			return nil
		}
		out := make([]string, 0, arr.Len())
		for i := range arr.Len() {
			e := arr.Elem(i).Value
			s, ok := e.(ast.String)
			if !ok {
				bad("%s[%d] is %s, want a string", k, i, typeName(e))
				continue
			}
			out = append(out, string(s))
		}
		return out
	}
	if !seenAllow {
		bad("allow is missing")
	}
	d.Fields = getStrings("fields", fields)
	d.Headers = getStrings("headers", headers)
	d.Query = getStrings("query", querys)
	if transforms != nil {
		tm, ok := transforms.(ast.Object)
		if !ok {
			bad("transforms is %s, want an object", typeName(transforms))
		} else {
			d.Transforms = make(map[string]string, tm.Len())
			tm.Foreach(func(pt, tt *ast.Term) {
				p, ok := pt.Value.(ast.String)
				if !ok {
					bad("transforms key %s is %s, want a string", pt.Value.String(), typeName(pt.Value))
					return
				}
				t, ok := tt.Value.(ast.String)
				if !ok {
					bad("transforms[%q] is %s, want a string", string(p), typeName(tt.Value))
					return
				}
				d.Transforms[string(p)] = string(t)
			})
		}
	}
	if port != nil {
		n, ok := port.(ast.Number)
		p, isInt := n.Int()
		if !ok || !isInt || p < 1 || p > 65535 {
			bad("port is %v, want an integer 1-65535", port)
		}
		d.Port = p
	}
	if identities != nil {
		d.Identities = parseIdentities(identities, bad)
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("malformed decision: %s", strings.Join(problems, "; "))
	}

	switch d.CardsCode {
	case "":
		d.CardsCode = CodeCardNumber
	case CodeCardNumber, CodeSourceNotAllowed:
	default:
		return nil, fmt.Errorf("malformed decision: cards_code %q, want card_number or source_not_allowed", d.CardsCode)
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
	mask, err := masks.compile(d.Fields, d.Transforms)
	if err != nil {
		return nil, fmt.Errorf("malformed decision: %w", err)
	}
	d.mask = mask
	d.opts = filters.Options{HMACKey: keyFor(d.Vendor), Cards: cards}
	d.headers = make([]string, len(d.Headers))
	for i, h := range d.Headers {
		d.headers[i] = strings.ToLower(h)
	}
	return d, nil
}

// parseIdentities reads the decision's identities: an object with the
// strings requester and approver, each at most maxIdentity bytes.
func parseIdentities(v ast.Value, bad func(string, ...any)) *Identities {
	obj, ok := v.(ast.Object)
	if !ok {
		bad("identities is %s, want an object", typeName(v))
		return nil
	}
	id := &Identities{}
	obj.Foreach(func(kt, vt *ast.Term) {
		k, _ := kt.Value.(ast.String)
		var dst *string
		switch k {
		case "requester":
			dst = &id.Requester
		case "approver":
			dst = &id.Approver
		default:
			bad("identities has unknown key %s", kt.Value.String())
			return
		}
		s, ok := vt.Value.(ast.String)
		switch {
		case !ok:
			bad("identities.%s is %s, want a string", string(k), typeName(vt.Value))
		case len(s) > maxIdentity:
			bad("identities.%s is %d bytes long, at most %d allowed", string(k), len(s), maxIdentity)
		default:
			*dst = string(s)
		}
	})
	return id
}

// vendorKey derives the vendor's own HMAC key, so that two vendors receive
// different pseudonyms for the same value and cannot join on them.
func vendorKey(master []byte, vendor string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("pare/hmac/v1/"))
	m.Write([]byte(vendor))
	return m.Sum(nil)
}

func typeName(v ast.Value) string {
	switch v.(type) {
	case nil, ast.Null:
		return "null"
	case ast.Boolean:
		return "a boolean"
	case ast.String:
		return "a string"
	case ast.Number:
		return "a number"
	case *ast.Array:
		return "an array"
	case ast.Object:
		return "an object"
	case ast.Set:
		return "a set"
	}
	return fmt.Sprintf("%T", v)
}
