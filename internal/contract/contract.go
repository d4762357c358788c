// Package contract is the Go schema of a vendor contract: the YAML data files under
// policies/contracts/ that the Rego policy (package egress) reads as data.contracts.<vendor>.
//
// OPA itself would load a contract with a misspelled key and simply never look at it; for a
// field-stripping proxy that is a silent data leak ("field" instead of "fields" sends nothing,
// "need_to_kno" drops a guard). So every contract is also decoded here strictly -- unknown keys are
// errors -- and validated as a whole, with every problem reported at once as file:line.
//
// The schema is documented for policy authors in policies/README.md; keep the two in step.
package contract

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Roles a contract may classify its vendor as. The role drives rules: only a payment processor
// may receive card data, a legal contract serves purpose legal only.
var Roles = []string{
	"payment_processor",
	"hosting",
	"event_registration",
	"support",
	"marketing",
	"group_company",
	"legal",
}

// Body modes of a route (the decision's "body" key).
const (
	BodyFilter = "filter" // parse the body and keep only the route's fields (the default)
	BodyOpaque = "opaque" // forward an unparseable body unchanged: an explicit permission
	BodyNone   = "none"   // drop the body
)

// Card guard settings (the decision's "cards" key).
const (
	CardsBlock  = "block"  // refuse a request whose outgoing values hold a card number (default)
	CardsRedact = "redact" // replace card numbers in outgoing values
	CardsAllow  = "allow"  // do not scan: payment processors over TLS only
)

// Need-to-know violation handling.
const (
	ViolationDeny  = "deny"  // refuse the request (code source_not_allowed); the default
	ViolationStrip = "strip" // remove the guarded fields from the decision
)

// Other-purpose handling: what a purpose outside the contract's purposes needs.
const (
	OtherPurposesConsent = "consent" // the subject's granted consent for that purpose (default)
	OtherPurposesDeny    = "deny"    // nothing: refused (code purpose_not_allowed)
)

// Contract is one vendor's contract: the value under the single top-level key (the vendor id) of
// policies/contracts/<vendor>.yaml. Zero values are the defaults the policy applies.
type Contract struct {
	// ID is the vendor id: the file's top-level key and base name, and the decision's "vendor".
	ID string `yaml:"-"`
	// File is the file the contract came from, as shown in errors.
	File string `yaml:"-"`

	// Name is the vendor's display name, used in reasons ("Stripe").
	Name string `yaml:"name"`
	// Reference is the signed contract's reference, used in reasons ("PSP-2024-03").
	Reference string `yaml:"reference"`
	// Role classifies the vendor; one of Roles.
	Role string `yaml:"role"`
	// Hosts are the exact, lower-case host names the vendor is reached at. A leading "*." matches
	// exactly one more label. An exact host wins over a wildcard.
	Hosts []string `yaml:"hosts"`
	// Purposes are the purposes the vendor serves under the contract.
	Purposes []string `yaml:"purposes"`
	// OtherPurposes says what a purpose outside Purposes needs: "consent" (default) or "deny".
	OtherPurposes string `yaml:"other_purposes,omitempty"`
	// Marketing marks a marketing recipient: every request needs granted "marketing" consent and
	// is refused under Global Privacy Control (except opt_out routes).
	Marketing bool `yaml:"marketing,omitempty"`
	// Cards is the card guard for the vendor's routes: "block" (default), "redact" or "allow"
	// (payment processors only).
	Cards string `yaml:"cards,omitempty"`
	// Plaintext allows plain HTTP. False (the default) means TLS is required.
	Plaintext bool `yaml:"plaintext,omitempty"`
	// Port is the only port the vendor may be reached at; 0 means 443 (80 with Plaintext).
	Port int `yaml:"port,omitempty"`
	// Headers are request header names that may leave on every route.
	Headers []string `yaml:"headers,omitempty"`
	// DryRun puts the contract's decisions in dry-run mode.
	DryRun bool `yaml:"dry_run,omitempty"`
	// NeedToKnow restricts which source services may send which fields.
	NeedToKnow []NeedToKnow `yaml:"need_to_know,omitempty"`
	// Routes are the requests the vendor may receive; the first match wins.
	Routes []Route `yaml:"routes"`

	// What the data is, for the privacy office's documents (privacy.go). The policy never reads
	// these keys; validation holds them to what the keys above let out.

	// Labels say in plain words what a key the contract sends is ("merge_fields/FNAME": "first
	// name"). Keys are those of Sends: field paths, "query:q", "header:h", "body:/glob".
	Labels map[string]string `yaml:"labels,omitempty"`
	// Categories file every key the contract sends that carries personal data under a data
	// category (category id → keys).
	Categories map[string][]string `yaml:"categories,omitempty"`
	// NotPersonal lists the keys the contract sends that carry no personal data (the API key,
	// content type, pagination).
	NotPersonal []string `yaml:"not_personal,omitempty"`
	// LegalBasis gives each purpose its lawful basis (GDPR Art. 6(1)): purpose → basis id.
	LegalBasis map[string]string `yaml:"legal_basis,omitempty"`
	// Country is where the vendor processes the data, ISO 3166-1 alpha-2 ("US").
	Country string `yaml:"country,omitempty"`
	// Transfer is the safeguard of a transfer outside the EEA: adequacy, scc, bcr, derogation.
	Transfer string `yaml:"transfer,omitempty"`
	// Retention says how long the vendor keeps the data, in words.
	Retention string `yaml:"retention,omitempty"`

	node *yaml.Node // the contract's mapping node, for line numbers; nil if built in code
}

// NeedToKnow is a need-to-know rule: Fields (which must appear literally in some route's fields or
// transforms) may be sent only by Services; another service gets them stripped or is refused.
type NeedToKnow struct {
	Fields      []string `yaml:"fields"`
	Services    []string `yaml:"services"`
	OnViolation string   `yaml:"on_violation,omitempty"`
	// Cards: the services are also the only ones that may send the vendor a
	// card number anywhere in a request, not only in Fields.
	Cards bool `yaml:"cards,omitempty"`
}

// Route is one kind of request the vendor may receive.
type Route struct {
	// Methods are upper-case HTTP methods.
	Methods []string `yaml:"methods"`
	// Path is a glob over the request path: "*" matches one segment, "**" any number, "{a,b}"
	// alternatives (OPA's glob.match with "/" as the delimiter).
	Path string `yaml:"path"`
	// Body is "filter" (default), "opaque" or "none".
	Body string `yaml:"body,omitempty"`
	// Fields are the body paths that may leave ("a/b", "*" for any key or index).
	Fields []string `yaml:"fields,omitempty"`
	// Transforms map body paths to a transform (hmac, last4, redact, year, truncate:N).
	Transforms map[string]string `yaml:"transforms,omitempty"`
	// Query are the query parameter names that may leave.
	Query []string `yaml:"query,omitempty"`
	// Headers are header names that may leave on this route, besides the contract's.
	Headers []string `yaml:"headers,omitempty"`
	// Purposes narrow the contract's purposes for this route.
	Purposes []string `yaml:"purposes,omitempty"`
	// Cards overrides the contract's card guard for this route.
	Cards string `yaml:"cards,omitempty"`
	// OptOut marks a route that carries a subject's withdrawal (unsubscribe, erasure) to a
	// marketing recipient: it is exempt from the marketing consent and GPC gates.
	OptOut bool `yaml:"opt_out,omitempty"`
}

// Error is one problem with a contract file, at a line (0 when unknown).
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}
