// Package datamap draws where personal data goes: services on the left, vendors on the right,
// one band per service, vendor and purpose, as wide as the disclosures the ledger recorded, with
// the data categories each carries; flows the contracts allow but the ledger never saw are drawn
// as dashed lines from "any service". The picture is an SVG inside a self-contained HTML page,
// with the same flows as a table, for the privacy office's wall and for audits.
package datamap

import (
	"slices"
	"sort"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/ledger"
)

// Map is what the picture shows.
type Map struct {
	Company   string    `json:"company"`
	Generated time.Time `json:"generated,omitzero"`
	// Since and Until bound the traffic; Observed is false when no ledger was read.
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Observed bool      `json:"observed"`
	Flows    []Flow    `json:"flows"`
	Vendors  []Vendor  `json:"vendors"`
}

// Flow is personal data going from a service to a vendor for a purpose.
type Flow struct {
	// Service is the sending service as the sidecar names itself; "" for a flow the contracts
	// allow that the ledger did not see (any service may send it).
	Service string `json:"service"`
	Vendor  string `json:"vendor"`
	// Recipient is the vendor's name in its contract (the id when there is none).
	Recipient string `json:"recipient"`
	Purpose   string `json:"purpose"`
	// Categories are the data categories that left (observed) or may leave (allowed), in words.
	Categories []string `json:"categories"`
	Count      int      `json:"disclosures"`
	// Contracted says the vendor's contract lists the purpose (otherwise it left with the
	// person's consent for it, or under a contract since removed).
	Contracted bool `json:"contracted"`
}

// Vendor is a recipient as the map labels it.
type Vendor struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Country    string   `json:"country,omitempty"`
	Transfer   string   `json:"transfer,omitempty"` // short: "adequacy", "SCCs", ...
	Categories []string `json:"categories"`         // what the contract may send, in words
	Count      int      `json:"disclosures"`
}

// maxFlows bounds the flows an Observer keeps: the purpose comes from the app's request header,
// so distinct flows are not bounded by the contracts alone. Past it, flows are counted under
// "(other)".
const maxFlows = 512

// Observer sums up ledger records into flows, one record at a time.
type Observer struct {
	k            *contract.Catalog
	since, until time.Time
	flows        map[[3]string]*flowAcc
}

type flowAcc struct {
	count int
	cats  map[string]bool
}

// NewObserver observes the disclosures in [since, until) (zero: unbounded).
func NewObserver(k *contract.Catalog, since, until time.Time) *Observer {
	return &Observer{k: k, since: since, until: until, flows: map[[3]string]*flowAcc{}}
}

// Add observes one record; it keeps nothing of r. Only disclosures are flows.
func (o *Observer) Add(r *ledger.Record) error {
	if r.Kind != ledger.KindDisclosure ||
		(!o.since.IsZero() && r.Time.Before(o.since)) || (!o.until.IsZero() && !r.Time.Before(o.until)) {
		return nil
	}
	svc := r.Service
	if svc == "" {
		svc = "(unnamed service)"
	}
	key := [3]string{svc, r.Vendor, r.Purpose}
	f := o.flows[key]
	if f == nil {
		if len(o.flows) >= maxFlows {
			key = [3]string{"(other)", "(other)", "(other)"}
			if f = o.flows[key]; f == nil {
				f = &flowAcc{cats: map[string]bool{}}
				o.flows[key] = f
			}
		} else {
			f = &flowAcc{cats: map[string]bool{}}
			o.flows[key] = f
		}
	}
	f.count++
	if key[0] == "(other)" {
		return nil
	}
	seen := func(p string) {
		for _, c := range o.k.Item(r.Vendor, p).Categories {
			f.cats[c] = true
		}
	}
	for _, p := range o.k.Sent(r.Vendor, r.Method, r.Path, r.FieldsSent) {
		seen(p)
	}
	for _, p := range r.Transformed {
		seen(p)
	}
	for p := range r.Transforms {
		seen(p)
	}
	return nil
}

var transferShort = map[string]string{"adequacy": "adequacy decision", "scc": "SCCs", "bcr": "BCRs", "derogation": "Art. 49 derogation"}

var roleWords = map[string]string{
	"payment_processor": "payment processor", "hosting": "hosting", "event_registration": "event registration",
	"support": "customer support", "marketing": "marketing", "group_company": "group company", "legal": "courts and authorities",
}

// Build draws the contracts, and the observed traffic when o is not nil.
func Build(k *contract.Catalog, o *Observer, company string, generated time.Time) *Map {
	m := &Map{Company: company, Generated: generated, Flows: []Flow{}, Vendors: []Vendor{}}
	seen := map[[2]string]bool{} // vendor, purpose with an observed flow
	counts := map[string]int{}
	if o != nil {
		m.Observed, m.Since, m.Until = true, o.since, o.until
		for key, f := range o.flows {
			c := k.Contract(key[1])
			fl := Flow{Service: key[0], Vendor: key[1], Purpose: key[2], Count: f.count, Categories: categoryWords(f.cats),
				Contracted: c != nil && slices.Contains(c.Purposes, key[2])}
			m.Flows = append(m.Flows, fl)
			seen[[2]string{key[1], key[2]}] = true
			counts[key[1]] += f.count
		}
	}
	for _, v := range k.Vendors() {
		c := k.Contract(v)
		all := map[string]bool{}
		for _, pu := range c.Purposes {
			cats := map[string]bool{}
			for _, key := range k.Sends(v) {
				it := k.Item(v, key)
				if it.Personal() && servesKey(c, pu, key) {
					for _, cat := range it.Categories {
						cats[cat], all[cat] = true, true
					}
				}
			}
			if !seen[[2]string{v, pu}] {
				m.Flows = append(m.Flows, Flow{Vendor: v, Purpose: pu, Categories: categoryWords(cats), Contracted: true})
			}
		}
		vd := Vendor{ID: v, Name: c.Name, Role: roleWords[c.Role], Categories: categoryWords(all), Count: counts[v]}
		if c.Country != "" {
			vd.Country = contract.CountryName(c.Country)
			vd.Transfer = transferShort[c.Transfer]
		}
		m.Vendors = append(m.Vendors, vd)
	}
	// Vendors the ledger names that no contract covers any more still appear.
	for v, n := range counts {
		if k.Contract(v) == nil {
			m.Vendors = append(m.Vendors, Vendor{ID: v, Name: v, Role: "no contract loaded", Categories: []string{}, Count: n})
		}
	}
	sort.Slice(m.Vendors, func(i, j int) bool { return m.Vendors[i].ID < m.Vendors[j].ID })
	for i := range m.Flows {
		m.Flows[i].Recipient = m.Flows[i].Vendor
		if c := k.Contract(m.Flows[i].Vendor); c != nil {
			m.Flows[i].Recipient = c.Name
		}
	}
	sort.Slice(m.Flows, func(i, j int) bool {
		a, b := m.Flows[i], m.Flows[j]
		if (a.Service == "") != (b.Service == "") {
			return b.Service == "" // observed flows first
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Vendor != b.Vendor {
			return a.Vendor < b.Vendor
		}
		return a.Purpose < b.Purpose
	})
	return m
}

// servesKey reports whether some route serving purpose sends key (contract headers go on every
// route).
func servesKey(c *contract.Contract, purpose, key string) bool {
	for _, r := range c.Routes {
		if len(r.Purposes) > 0 && !slices.Contains(r.Purposes, purpose) {
			continue
		}
		probe := &contract.Contract{Headers: c.Headers, Routes: []contract.Route{r}}
		if slices.Contains(probe.Sends(), key) {
			return true
		}
	}
	return false
}

func categoryWords(set map[string]bool) []string {
	out := []string{}
	for _, c := range contract.Categories {
		if set[c.ID] {
			out = append(out, c.Words)
		}
	}
	return out
}
