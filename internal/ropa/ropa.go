// Package ropa builds the record of processing activities a controller keeps under GDPR Art.
// 30(1) from Pare's vendor contracts — recipients, purposes, lawful bases, categories of data,
// transfers outside the EEA with their safeguards, retention, and the technical measures Pare
// itself enforces — and, given the disclosure ledger, sets beside it what was actually sent in a
// period: fields a contract allows that never left (candidates to remove), routes and vendors
// unused, refusals by code.
package ropa

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/ledger"
)

// Record is the record of processing activities.
type Record struct {
	Company   string    `json:"company"`
	Contact   string    `json:"privacy_contact"`
	Generated time.Time `json:"generated,omitzero"`
	// Activities are one per vendor and purpose, sorted by vendor then purpose.
	Activities []Activity `json:"activities"`
	// Undeclared lists the vendors whose contracts do not say what their data is: the record
	// cannot be complete for them.
	Undeclared []string `json:"undeclared,omitempty"`
	// Usage is what the ledger says was sent; nil when no ledger was given.
	Usage *Usage `json:"usage,omitempty"`
}

// Activity is one processing activity: personal data sent to one recipient for one purpose.
type Activity struct {
	Vendor       string `json:"vendor"`
	Recipient    string `json:"recipient"`
	Reference    string `json:"contract"`
	Role         string `json:"recipient_category"`
	Purpose      string `json:"purpose"`
	PurposeWords string `json:"purpose_words"`
	Basis        string `json:"lawful_basis,omitempty"`
	BasisArticle string `json:"lawful_basis_article,omitempty"`
	// ConsentChecked says the policy sends this purpose only with the person's granted consent.
	ConsentChecked bool `json:"consent_checked"`
	// Categories are the data categories the purpose's routes send, in words; Data the
	// personal data itself, in the contract's labels.
	Categories []string `json:"data_categories"`
	Data       []string `json:"personal_data"`
	Country    string   `json:"country,omitempty"`
	// ThirdCountry: the recipient is outside the EEA, and Transfer names the safeguard.
	ThirdCountry    bool   `json:"third_country"`
	Transfer        string `json:"transfer,omitempty"`
	TransferArticle string `json:"transfer_article,omitempty"`
	Retention       string `json:"retention,omitempty"`
	// Measures are the technical measures Pare enforces on every request (Art. 30(1)(g)).
	Measures []string `json:"measures"`
	// Disclosures counts what the ledger recorded for this vendor and purpose in the period
	// (only with a ledger).
	Disclosures int `json:"disclosures,omitempty"`
}

// Options say who keeps the record.
type Options struct {
	Company, Contact string
	Generated        time.Time
}

// Build builds the record from the contracts. Without privacy keys a contract still gives its
// recipient, purposes and measures; it is listed in Undeclared.
func Build(k *contract.Catalog, o Options) *Record {
	rec := &Record{Company: o.Company, Contact: o.Contact, Generated: o.Generated, Activities: []Activity{}}
	for _, v := range k.Vendors() {
		c := k.Contract(v)
		if !c.Declared() {
			rec.Undeclared = append(rec.Undeclared, v)
		}
		for _, pu := range c.Purposes {
			rec.Activities = append(rec.Activities, activity(k, c, pu))
		}
	}
	return rec
}

var roleWords = map[string]string{
	"payment_processor":  "payment processor",
	"hosting":            "hosting provider",
	"event_registration": "event registration service",
	"support":            "customer support platform",
	"marketing":          "marketing partner",
	"group_company":      "company of our group",
	"legal":              "courts and authorities",
}

func activity(k *contract.Catalog, c *contract.Contract, purpose string) Activity {
	a := Activity{Vendor: c.ID, Recipient: c.Name, Reference: c.Reference, Role: roleWords[c.Role],
		Purpose: purpose, PurposeWords: contract.PurposeWords(purpose), Retention: c.Retention}
	if a.Role == "" {
		a.Role = c.Role
	}
	if b, ok := contract.BasisOf(c.LegalBasis[purpose]); ok {
		a.Basis, a.BasisArticle = b.Words, b.Article
	}
	a.ConsentChecked = c.LegalBasis[purpose] == "consent" || purpose == "marketing"
	if c.Country != "" {
		a.Country = contract.CountryName(c.Country)
		a.ThirdCountry = !contract.InEEA(c.Country)
	}
	if t, ok := contract.TransferOf(c.Transfer); ok {
		a.Transfer, a.TransferArticle = t.Words, t.Article
	}

	// The data of the routes that serve the purpose.
	cats := map[string]bool{}
	data := map[string]bool{}
	pseudonymised := false
	for _, key := range keysFor(c, purpose) {
		it := k.Item(c.ID, key)
		if !it.Personal() {
			continue
		}
		for _, cat := range it.Categories {
			cats[cat] = true
		}
		w := it.Label
		if w == "" {
			w = ledger.Describe(key)
		}
		if t, ok := transformOf(c, purpose, key); ok {
			w += " (" + ledger.DescribeTransform(t) + ")"
			pseudonymised = pseudonymised || t == "hmac"
		}
		data[w] = true
	}
	for _, cat := range contract.Categories {
		if cats[cat.ID] {
			a.Categories = append(a.Categories, cat.Words)
		}
	}
	for w := range data {
		a.Data = append(a.Data, w)
	}
	sort.Strings(a.Data)

	// What Pare enforces, from the keys the policy reads.
	if c.Plaintext {
		a.Measures = append(a.Measures, "plain HTTP allowed by the contract")
	} else {
		a.Measures = append(a.Measures, "TLS 1.2 or later, certificate and name verified")
	}
	a.Measures = append(a.Measures, "only the fields the contract lists leave")
	switch cards := c.Cards; cards {
	case contract.CardsAllow:
		a.Measures = append(a.Measures, "card numbers only to this payment processor, over TLS")
	case contract.CardsRedact:
		a.Measures = append(a.Measures, "card numbers in any value redacted")
	default:
		a.Measures = append(a.Measures, "a request carrying a card number is refused")
	}
	if pseudonymised {
		a.Measures = append(a.Measures, "identifiers pseudonymised with a key of the recipient's own")
	}
	if len(c.NeedToKnow) > 0 {
		var svcs []string
		for _, r := range c.NeedToKnow {
			svcs = append(svcs, r.Services...)
		}
		slices.Sort(svcs)
		a.Measures = append(a.Measures, "need-to-know: some fields only from "+strings.Join(slices.Compact(svcs), ", "))
	}
	if a.ConsentChecked || c.Marketing {
		a.Measures = append(a.Measures, "sent only with the person's granted consent; Global Privacy Control refuses it")
	}
	if purpose == "legal" || c.Role == "legal" {
		a.Measures = append(a.Measures, "needs a legal basis reference and a second person's approval")
	}
	a.Measures = append(a.Measures, "every disclosure recorded before it leaves")
	return a
}

// routeServes reports whether route r serves purpose (a route without purposes serves the
// contract's).
func routeServes(c *contract.Contract, r contract.Route, purpose string) bool {
	if len(r.Purposes) == 0 {
		return slices.Contains(c.Purposes, purpose)
	}
	return slices.Contains(r.Purposes, purpose)
}

// keysFor lists what the routes serving purpose send (Contract.Sends, restricted to them).
func keysFor(c *contract.Contract, purpose string) []string {
	set := map[string]bool{}
	for _, h := range c.Headers {
		set[contract.HeaderPrefix+h] = true
	}
	for _, r := range c.Routes {
		if !routeServes(c, r, purpose) {
			continue
		}
		for _, k := range routeKeys(r) {
			set[k] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// routeKeys lists what one route may send besides the contract's headers.
func routeKeys(r contract.Route) []string {
	var out []string
	out = append(out, r.Fields...)
	for k := range r.Transforms {
		out = append(out, k)
	}
	for _, q := range r.Query {
		out = append(out, contract.QueryPrefix+q)
	}
	for _, h := range r.Headers {
		out = append(out, contract.HeaderPrefix+h)
	}
	if r.Body == contract.BodyOpaque {
		out = append(out, contract.BodyPrefix+r.Path)
	}
	sort.Strings(out)
	return out
}

func transformOf(c *contract.Contract, purpose, key string) (string, bool) {
	for _, r := range c.Routes {
		if t, ok := r.Transforms[key]; ok && routeServes(c, r, purpose) {
			return t, true
		}
	}
	return "", false
}

// routeName names a route for people reading the record: its methods and path.
func routeName(r contract.Route) string {
	return fmt.Sprintf("%s %s", strings.Join(r.Methods, ","), r.Path)
}
