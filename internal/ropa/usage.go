package ropa

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/ledger"
)

// Usage is what the ledger recorded in [Since, Until), set against the contracts.
type Usage struct {
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	Disclosures int       `json:"disclosures"`
	Refused     int       `json:"refused"`
	// Vendors are the contracts' vendors, sorted, each with its routes.
	Vendors []VendorUsage `json:"vendors"`
	// Refusals count refusals by code (and vendor; "" for a host no contract covers), most
	// frequent first.
	Refusals []RefusalCount `json:"refusals"`
	// Uncontracted counts disclosures to vendors no loaded contract covers (a contract removed
	// since): sent under terms this record no longer shows.
	Uncontracted []Count `json:"uncontracted,omitempty"`
}

// VendorUsage is one vendor's traffic.
type VendorUsage struct {
	Vendor      string       `json:"vendor"`
	Recipient   string       `json:"recipient"`
	Disclosures int          `json:"disclosures"`
	Routes      []RouteUsage `json:"routes"`
	// HeadersNeverSent are headers the contract allows on every route that no disclosure carried.
	HeadersNeverSent []string `json:"headers_never_sent,omitempty"`
}

// RouteUsage is one route's traffic.
type RouteUsage struct {
	Route       string `json:"route"`
	Disclosures int    `json:"disclosures"`
	// NeverSent are the fields, transforms, query parameters and route headers the route allows
	// that no disclosure on it carried: candidates to remove from the contract (minimisation).
	NeverSent []string `json:"never_sent"`
}

// RefusalCount counts refusals of one code to one vendor.
type RefusalCount struct {
	Code   string `json:"code"`
	Vendor string `json:"vendor"`
	Count  int    `json:"count"`
}

// Count counts something by name.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// maxKeys bounds the distinct refusal codes and uncontracted vendors an Observer counts: a
// ledger is Pare's own writing, but the count must not grow with a damaged or hostile one.
// Past it, counts go to "(other)".
const maxKeys = 256

// Observer sums up ledger records one at a time, in memory bounded by the contracts (and
// maxKeys): feed it with ledger.Scan.
type Observer struct {
	k            *contract.Catalog
	since, until time.Time
	usage        Usage
	routes       map[string][]*routeSeen
	headers      map[string]map[string]bool // vendor → headers seen
	purposes     map[[2]string]int          // vendor, purpose → disclosures
	refusals     map[[2]string]int
	uncontracted map[string]int
}

type routeSeen struct {
	count int
	seen  map[string]bool
}

// NewObserver observes the records in [since, until) (zero: unbounded).
func NewObserver(k *contract.Catalog, since, until time.Time) *Observer {
	o := &Observer{k: k, since: since, until: until, routes: map[string][]*routeSeen{}, headers: map[string]map[string]bool{},
		purposes: map[[2]string]int{}, refusals: map[[2]string]int{}, uncontracted: map[string]int{}}
	o.usage.Since, o.usage.Until = since, until
	for _, v := range k.Vendors() {
		c := k.Contract(v)
		rs := make([]*routeSeen, len(c.Routes))
		for i := range rs {
			rs[i] = &routeSeen{seen: map[string]bool{}}
		}
		o.routes[v] = rs
		o.headers[v] = map[string]bool{}
	}
	return o
}

// Add observes one record; it keeps nothing of r.
func (o *Observer) Add(r *ledger.Record) error {
	if (!o.since.IsZero() && r.Time.Before(o.since)) || (!o.until.IsZero() && !r.Time.Before(o.until)) {
		return nil
	}
	switch r.Kind {
	case ledger.KindRefusal:
		o.usage.Refused++
		key := [2]string{r.Outcome, r.Vendor}
		if _, ok := o.refusals[key]; !ok && len(o.refusals) >= maxKeys {
			key = [2]string{"(other)", ""}
		}
		o.refusals[key]++
	case ledger.KindDisclosure:
		o.usage.Disclosures++
		rs, ok := o.routes[r.Vendor]
		if !ok {
			name := r.Vendor
			if _, ok := o.uncontracted[name]; !ok && len(o.uncontracted) >= maxKeys {
				name = "(other)"
			}
			o.uncontracted[name]++
			return nil
		}
		o.purposes[[2]string{r.Vendor, r.Purpose}]++
		i := o.k.Route(r.Vendor, r.Method, r.Path)
		c := o.k.Contract(r.Vendor)
		mark := func(p string) {
			key := o.k.Item(r.Vendor, p).Key
			if key == "" {
				return
			}
			if i >= 0 {
				rs[i].seen[key] = true
			}
			if h, ok := strings.CutPrefix(key, contract.HeaderPrefix); ok && slices.Contains(c.Headers, h) {
				o.headers[r.Vendor][key] = true
			}
		}
		for _, p := range r.FieldsSent {
			mark(p)
		}
		for _, p := range r.Transformed {
			mark(p)
		}
		for p := range r.Transforms {
			mark(p)
		}
		if i >= 0 {
			rs[i].count++
			if c.Routes[i].Body == contract.BodyOpaque {
				rs[i].seen[contract.BodyPrefix+c.Routes[i].Path] = true
			}
		}
	}
	return nil
}

// Usage returns what was observed.
func (o *Observer) Usage() *Usage {
	u := o.usage
	u.Vendors = []VendorUsage{}
	for _, v := range o.k.Vendors() {
		c := o.k.Contract(v)
		vu := VendorUsage{Vendor: v, Recipient: c.Name, Routes: []RouteUsage{}}
		for i, r := range c.Routes {
			seen := o.routes[v][i]
			ru := RouteUsage{Route: routeName(r), Disclosures: seen.count, NeverSent: []string{}}
			for _, k := range routeKeys(r) {
				if !seen.seen[k] {
					ru.NeverSent = append(ru.NeverSent, k)
				}
			}
			vu.Disclosures += seen.count
			vu.Routes = append(vu.Routes, ru)
		}
		for _, h := range c.Headers {
			if !o.headers[v][contract.HeaderPrefix+h] {
				vu.HeadersNeverSent = append(vu.HeadersNeverSent, h)
			}
		}
		u.Vendors = append(u.Vendors, vu)
	}
	u.Refusals = []RefusalCount{}
	for k, n := range o.refusals {
		u.Refusals = append(u.Refusals, RefusalCount{Code: k[0], Vendor: k[1], Count: n})
	}
	sort.Slice(u.Refusals, func(i, j int) bool {
		a, b := u.Refusals[i], u.Refusals[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		return a.Vendor < b.Vendor
	})
	for name, n := range o.uncontracted {
		u.Uncontracted = append(u.Uncontracted, Count{name, n})
	}
	sort.Slice(u.Uncontracted, func(i, j int) bool { return u.Uncontracted[i].Name < u.Uncontracted[j].Name })
	return &u
}

// AddUsage sets the observed usage into the record: per activity, its disclosures.
func (rec *Record) AddUsage(o *Observer) {
	rec.Usage = o.Usage()
	for i := range rec.Activities {
		a := &rec.Activities[i]
		a.Disclosures = o.purposes[[2]string{a.Vendor, a.Purpose}]
	}
}
